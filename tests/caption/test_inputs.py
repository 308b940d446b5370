import cv2
import numpy as np
import pytest

from panda_spark.caption.inputs import is_degenerate, teacher_inputs, teacher_version
from panda_spark.video.frames import MissingFrames
from panda_spark.config import TeacherSettings


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((8, 8, 3), value, np.uint8))[1].tobytes()


FRAMES = [{"frame_idx": i, "role": "uniform", "jpeg": jpeg(10 * i)} for i in range(8)] + [
    {"frame_idx": 8, "role": "keyframe", "jpeg": jpeg(200)}]
CUES = [{"start_s": 0.0, "end_s": 2.0, "text": "hello <i>there</i>"}, {"start_s": 5.0, "end_s": 6.0, "text": "later"}]


def teacher(**kw):
    return TeacherSettings(name="t", model="m", adapter=kw.pop("adapter", "blip2"), **kw)


def make(t, frames=FRAMES, title="Pasta  night", description="A quick dinner"):
    return teacher_inputs("c1", frames, CUES, 0.0, 3.0, title, description, t, 50, 50)


def test_frame_teachers_get_the_keyframe_and_the_plain_prompt():
    got = make(teacher(inputs=["frame"]))
    assert len(got.frames) == 1 and int(got.frames[0].mean()) in range(198, 203)
    assert got.prompt == "Please faithfully summarize the video in one sentence."
    assert got.inputs_used == ["frame"]


def test_video_teachers_get_uniform_frames_resampled_to_their_count():
    got = make(teacher(inputs=["video"], num_frames=4, adapter="git-video"))
    assert [round(f.mean() / 10) for f in got.frames] == [0, 2, 5, 7]


def test_text_inputs_put_the_clip_subtitles_and_metadata_in_the_paper_prompt():
    got = make(teacher(inputs=["video", "subtitles", "metadata"], adapter="qwen2-vl"))
    assert 'The subtitles of the video: "hello there".' in got.prompt  # only the cue inside 0–3 s
    assert '["Pasta night", "A quick dinner"]' in got.prompt
    assert got.inputs_used == ["video", "subtitles", "metadata"]
    text_only = make(teacher(inputs=["subtitles", "metadata"], adapter="text-llm"), title=None, description=None)
    assert text_only.frames == [] and text_only.inputs_used == ["subtitles"]


def test_a_clip_without_its_frames_is_an_input_error():
    with pytest.raises(MissingFrames):
        make(teacher(inputs=["frame"]), frames=FRAMES[:8])
    with pytest.raises(MissingFrames):
        make(teacher(inputs=["video"], adapter="git-video"), frames=FRAMES[8:])


def test_teacher_version_changes_with_what_shapes_the_caption():
    base = teacher_version(teacher())
    assert base.startswith("m@default#")
    assert teacher_version(teacher()) == base
    assert teacher_version(teacher(max_new_tokens=41)) != base
    assert teacher_version(teacher(prompt="Describe: {subtitles}")) != base
    assert teacher_version(teacher(batch_size=2)) == base  # throughput settings do not


@pytest.mark.parametrize("caption, flagged", [
    ("", True), ("the the the the", True), ("1 2 3", True), ("A cat sleeps on a rug.", False), ("ok ok", False)])
def test_degenerate_generations_are_flagged(caption, flagged):
    assert is_degenerate(caption) is flagged

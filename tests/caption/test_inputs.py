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


# ---- teachers that take other teachers' captions (VideoChat-Text)

def teachers_conf(*entries: str) -> list:
    from panda_spark.config import load_config

    return load_config(None, [f"caption.teachers=[{', '.join(entries)}]"]).caption.teachers


BLIP = "{name: blip, model: b, adapter: blip2, inputs: [frame]}"
GIT = "{name: git, model: g, adapter: git-video, inputs: [video]}"


def test_teachers_run_after_the_teachers_whose_captions_they_take():
    from panda_spark.config import teacher_order

    teachers = teachers_conf("{name: chat, model: c, adapter: text-llm, inputs: ['captions:blip', 'captions:git']}",
                             "{name: summary, model: s, adapter: text-llm, inputs: ['captions:chat']}", GIT, BLIP)
    assert [t.name for t in teacher_order(teachers)] == ["git", "blip", "chat", "summary"]
    assert teachers[0].upstream == ["blip", "git"]
    plain = teachers_conf(BLIP, GIT)
    assert [t.name for t in teacher_order(plain)] == ["blip", "git"]  # conf order when nothing depends


@pytest.mark.parametrize("entries, message", [
    (["{name: chat, model: c, adapter: text-llm, inputs: ['captions:blip2']}", BLIP],
     "conf key 'caption.teachers[0].inputs': expected captions:<name> with <name> one of ['blip', 'chat'], "
     "got captions:blip2"),
    (["{name: a, model: c, adapter: text-llm, inputs: ['captions:b']}",
      "{name: b, model: c, adapter: text-llm, inputs: ['captions:a', subtitles]}"],
     "conf key 'caption.teachers[0].inputs': expected captions:<name> inputs without a cycle, got a -> b -> a"),
    (["{name: z, model: c, adapter: text-llm, inputs: ['captions:x']}", BLIP,  # z waits on the cycle, not in it
      "{name: x, model: c, adapter: text-llm, inputs: ['captions:blip', 'captions:y']}",
      "{name: y, model: c, adapter: text-llm, inputs: ['captions:x']}"],
     "conf key 'caption.teachers[2].inputs': expected captions:<name> inputs without a cycle, got x -> y -> x"),
    (["{name: a, model: c, adapter: text-llm, inputs: ['captions:a']}"],
     "conf key 'caption.teachers[0].inputs': expected captions:<name> inputs without a cycle, got a -> a"),
    ([BLIP, "{name: chat, model: c, adapter: text-llm, inputs: ['captions:blip'], prompt: 'Say {caption:git}'}", GIT],
     "conf key 'caption.teachers[1].prompt': expected {caption:<name>} only for the teacher's own captions:<name> "
     "inputs ['blip'], got {caption:git}"),
])
def test_unknown_or_cyclic_caption_inputs_are_config_errors(entries, message):
    from panda_spark.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        teachers_conf(*entries)
    assert str(err.value) == message


def test_a_dependent_version_holds_its_upstream_versions():
    from panda_spark.caption.inputs import teacher_versions
    from panda_spark.config import load_config

    # the default teachers that take no captions keep the versions their stored captions carry
    defaults = teacher_versions(load_config(None).caption.teachers)
    assert defaults["blip2-tiny"] == "tiny:blip2@default#bef7aa50ba7a"
    assert defaults["qwen2-vl-tiny"] == "tiny:qwen2-vl@default#a27449f93d03"
    chat = "{name: chat, model: c, adapter: text-llm, inputs: ['captions:blip', subtitles]}"
    before = teacher_versions(teachers_conf(BLIP, chat, GIT))
    after = teacher_versions(teachers_conf(BLIP.replace("inputs: [frame]", "inputs: [frame], max_new_tokens: 9"),
                                           chat, GIT))
    assert after["blip"] != before["blip"] and after["chat"] != before["chat"]  # re-captioned upstream: pending
    assert after["git"] == before["git"]
    assert before["chat"].startswith("c@default#")


def test_the_upstream_captions_go_into_the_prompt():
    chat = teacher(adapter="text-llm", inputs=["captions:blip", "subtitles", "metadata"])
    got = teacher_inputs("c1", FRAMES, CUES, 0.0, 3.0, "Pasta", None, chat, 50, 50,
                         captions={"blip": 'a man says "hi" {loudly}', "other": "ignored"})
    assert got.prompt == (
        "You are given some information about a video and will be asked to summarize the video. "
        "A description of what the video shows: \"a man says \u201dhi\u201d {loudly}\". "
        "The subtitles of the video: \"hello there\". Some descriptions of the video: [\"Pasta\", \"\"]. "
        "Please faithfully summarize the video in one sentence.")
    assert got.frames == [] and got.inputs_used == ["subtitles", "metadata", "captions:blip"]
    # a template of its own names the captions one by one; they count as text even without subtitles
    both = teacher(adapter="text-llm", inputs=["captions:blip", "captions:git"],
                   prompt="Frame: {caption:blip}. Clip: {caption:git}. All: {captions}. Subtitles: {subtitles}.")
    got = teacher_inputs("c1", FRAMES, [], 0.0, 3.0, None, None, both, 50, 50,
                         captions={"git": "a dog runs", "blip": "a dog"})
    assert got.prompt == "Frame: a dog. Clip: a dog runs. All: a dog; a dog runs. Subtitles: ."


def test_a_clip_without_an_upstream_caption_is_an_input_error():
    from panda_spark.caption.inputs import MissingUpstreamCaption

    chat = teacher(adapter="text-llm", inputs=["captions:blip", "captions:git"])
    for captions in (None, {"blip": "a dog"}, {"blip": "a dog", "git": None}):
        with pytest.raises(MissingUpstreamCaption, match="no caption of teacher '(blip|git)'"):
            teacher_inputs("c1", FRAMES, CUES, 0.0, 3.0, None, None, chat, 50, 50, captions=captions)

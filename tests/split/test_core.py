import cv2
import numpy as np
import pytest

from panda_spark.demo.synthetic import render_demo_sources
from panda_spark.split.core import SplitParams, split_video, timecode
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.stitching import stitch_params


RELEASED = SplitParams("released_code", stitch=stitch_params("released_code"))  # no trim, no 60 s cut


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return render_demo_sources(tmp_path_factory.mktemp("demo"))[0]


@pytest.mark.parametrize("frame, fps, expected", [
    (0, 25, "0:00:00.000"), (233, 25, "0:00:09.320"), (280, 29.97, "0:00:09.342"), (108015, 30, "1:00:00.500"),
])
def test_timecodes_are_truncated_milliseconds(frame, fps, expected):
    assert timecode(frame, fps) == expected


def test_city_splits_at_cuts_and_drops_the_crossfade_and_the_still(city):
    result = split_video(city.video_id, str(city.path), ColorLayoutEmbedder(), RELEASED)
    shots = [(s["start_frame"], s["end_frame"]) for s in result.shots]
    assert {200, 550, 700} <= {start for start, _ in shots}  # the hard cuts
    clips = [(c["start_frame"], c["end_frame"]) for c in result.clips]
    assert clips == [(0, 200), (200, 325), (450, 550), (700, 900)]
    # nothing of the cross-fade (375..399, in the transition shot 325..450) or the still (550..699)
    assert not any(s < 450 and e > 325 for s, e in clips) and not any(s < 700 and e > 550 for s, e in clips)
    first = result.clips[0]
    assert (first["start_timecode"], first["end_timecode"]) == ("0:00:00.000", "0:00:08.000")
    assert len(first["shot_ids"]) == 2 and len(first["embedding"]) == ColorLayoutEmbedder().dim


def test_each_clip_gets_eight_uniform_frames_and_one_keyframe_inside_it(city):
    result = split_video(city.video_id, str(city.path), ColorLayoutEmbedder(), RELEASED)
    by_clip = {c["clip_id"]: c for c in result.clips}
    assert len(result.clip_frames) == 9 * len(result.clips)
    for row in result.clip_frames:
        clip = by_clip[row["clip_id"]]
        assert clip["start_frame"] <= row["frame_number"] < clip["end_frame"]
        image = cv2.imdecode(np.frombuffer(row["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (row["height"], row["width"], 3) == (224, 398, 3)
    roles = [r["role"] for r in result.clip_frames[:9]]
    assert roles == ["uniform"] * 8 + ["keyframe"]
    uniform = [r["frame_number"] for r in result.clip_frames[:8]]
    assert uniform == sorted(uniform) and len(set(uniform)) == 8
    keyframe = result.clip_frames[8]["frame_number"]
    assert 0.3 * 200 - 2 <= keyframe <= 0.7 * 200 + 2  # nearest 4-fps sample to a point in 30–70%


def test_ids_are_deterministic_and_the_panda70m_preset_trims(city):
    a = split_video(city.video_id, str(city.path), ColorLayoutEmbedder(), RELEASED)
    b = split_video(city.video_id, str(city.path), ColorLayoutEmbedder(), RELEASED)
    assert [c["clip_id"] for c in a.clips] == [c["clip_id"] for c in b.clips]
    panda = split_video(city.video_id, str(city.path), ColorLayoutEmbedder(), SplitParams())  # the default
    assert [(c["start_frame"], c["end_frame"]) for c in panda.clips][0] == (20, 180)  # 10% off both ends
    assert panda.clips[0]["params_hash"] != a.clips[0]["params_hash"]

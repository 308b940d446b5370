"""Published-timestamp cutting: the clips of a detected split, given back as the published CSV
would hold them (timecodes truncated to the millisecond), get the same frame ranges and the same
frames; VFR, a clip past the file's end and held samples."""
import math
from fractions import Fraction

import numpy as np
import pytest

from panda_spark.dataset.panda70m import parse_timestamp
from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.published import PublishedClip, cut_published, published_hash
from panda_spark.split.stitching import stitch_params
from tests.video.media import moving_scene, write_video

RELEASED = SplitParams("released_code", stitch=stitch_params("released_code"))


def _published(result) -> list[PublishedClip]:
    """The detected clips as a Panda-70M CSV row gives them back: times from the timecodes."""
    return [PublishedClip(c["clip_id"], parse_timestamp(c["start_timecode"]) / 1e6,
                          parse_timestamp(c["end_timecode"]) / 1e6) for c in result.clips]


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory):
    frames = (moving_scene(75, 72, 128, (200, 40, 40), 1) + moving_scene(90, 72, 128, (40, 60, 200), 2)
              + moving_scene(80, 72, 128, (40, 200, 60), 3))
    return write_video(tmp_path_factory.mktemp("pub") / "three.mp4", frames, range(len(frames)), Fraction(1, 30))


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    gaps = np.random.default_rng(11).choice([1, 1, 2, 3], size=139)
    pts = [0, *np.cumsum(gaps).tolist()]
    frames = moving_scene(70, 72, 128, (200, 40, 40), 4) + moving_scene(70, 72, 128, (40, 60, 200), 5)
    return write_video(tmp_path_factory.mktemp("pubvfr") / "vfr.mp4", frames, pts, Fraction(1, 30))


@pytest.mark.parametrize("video", ["three_shots", "vfr"])
def test_published_times_of_detected_clips_give_their_frame_ranges_and_frames(video, request):
    path = str(request.getfixturevalue(video))
    detected = split_video("v", path, ColorLayoutEmbedder(), RELEASED)
    assert len(detected.clips) >= 2
    cut = cut_published("v", path, _published(detected), RELEASED)
    assert cut.ranges == {c["clip_id"]: (c["start_frame"], c["end_frame"]) for c in detected.clips}
    key = lambda f: (f["clip_id"], f["frame_idx"])  # noqa: E731
    assert sorted(cut.clip_frames, key=key) == sorted(detected.clip_frames, key=key)
    assert cut.out_of_range == []


def test_a_clip_past_the_end_of_the_file_has_no_range_and_one_reaching_it_ends_with_the_file(three_shots):
    clips = [PublishedClip("a", 0.0, 2.0), PublishedClip("late", 8.5, 12.0), PublishedClip("tail", 7.0, 9.9)]
    cut = cut_published("v", str(three_shots), clips, RELEASED)
    assert cut.duration_s == pytest.approx(245 / 30)
    assert cut.ranges == {"a": (0, 60), "tail": (210, 245)}
    assert cut.out_of_range == ["late"]
    assert {f["clip_id"] for f in cut.clip_frames} == {"a", "tail"}
    assert [f["role"] for f in cut.clip_frames if f["clip_id"] == "a"] == ["uniform"] * 8 + ["keyframe"]
    assert all(0 <= f["frame_number"] < 60 for f in cut.clip_frames if f["clip_id"] == "a")


def test_samples_are_held_only_near_clips_not_yet_picked(three_shots):
    # two short clips far apart: the samples of the gap between them are never kept
    clips = [PublishedClip("a", 0.5, 1.5), PublishedClip("b", 6.5, 7.5)]
    cut = cut_published("v", str(three_shots), clips, RELEASED)
    period = 8 / 30  # a sample every 8 frames at 30 fps and 4 samples/s: 31 in the video
    assert cut.peak_samples <= math.ceil((1.0 + 2 * period) / period)  # one clip and a sample either side
    assert set(cut.ranges) == {"a", "b"}


def test_the_hash_follows_the_sampling_not_the_detection():
    base = published_hash(RELEASED)
    assert published_hash(SplitParams("panda70m", stitch=stitch_params("panda70m"))) == base
    assert published_hash(SplitParams(uniform_frames=4)) != base
    assert published_hash(SplitParams(materialize_clips=True)) != base

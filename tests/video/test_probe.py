import os
from pathlib import Path

import pytest

from panda_spark.demo import bad_inputs
from panda_spark.demo.synthetic import render_demo_sources
from panda_spark.errors import CorruptVideo, NotAVideo, TruncatedVideo, ZeroFrames
from panda_spark.video.probe import probe_video
from tests.conftest import shared_data


def probe(path: Path):
    with open(path, "rb") as fh:
        return probe_video(fh, os.path.getsize(path))


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory):
    return render_demo_sources(tmp_path_factory.mktemp("demo"))


def test_probe_of_synthetic_videos_equals_how_they_were_rendered(demo_videos):
    for video in demo_videos:
        p = probe(video.path)
        assert (p.frame_count, p.width, p.height, p.has_audio) == (
            video.frame_count, video.width, video.height, video.has_audio)
        assert p.fps_rational == f"{video.fps}/1"
        assert p.fps == p.avg_fps == video.fps
        assert p.duration_s == pytest.approx(video.frame_count / video.fps, abs=0.05)
        assert (p.codec, p.pix_fmt) == ("h264", "yuv420p")


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda good, d: bad_inputs.truncated_copy(good, d / "truncated.mp4"), TruncatedVideo),
        (lambda good, d: bad_inputs.corrupt_copy(good, d / "corrupt.mp4"), CorruptVideo),
        (lambda good, d: bad_inputs.zero_frame_video(d / "zero.mp4"), ZeroFrames),
        (lambda good, d: bad_inputs.text_file(d / "list.mp4"), NotAVideo),
        (lambda good, d: bad_inputs.malformed_vtt(d / "subs.vtt"), NotAVideo),
    ],
)
def test_bad_files_raise_their_error_class(make, error, demo_videos, tmp_path):
    with pytest.raises(error) as err:
        probe(make(demo_videos[0].path, tmp_path))
    assert err.value.error_class == error.__name__
    assert err.value.message


def test_empty_file_is_not_a_video(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(NotAVideo):
        probe(tmp_path / "empty.mp4")


def test_shared_videos_probe_as_documented():
    aerial = probe(shared_data("videos", "aerial_city.mp4"))
    assert (aerial.fps_rational, aerial.frame_count, aerial.width, aerial.height) == ("30000/1001", 632, 640, 360)
    assert aerial.duration_s == pytest.approx(21.0, abs=0.1)
    slides = probe(shared_data("videos", "slides_1080p.mp4"))
    assert (slides.fps_rational, slides.frame_count, slides.width, slides.height) == ("30/1", 3678, 1920, 1080)
    assert slides.duration_s == pytest.approx(122.6, abs=0.1)

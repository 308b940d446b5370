"""Times from presentation timestamps, rotation applied, and videos without clips saying why — on
variable-frame-rate, rotated, one-frame and 4K files written here with PyAV."""
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.scan import ScanParams, ScanStream, scan_video
from panda_spark.split.stitching import shot_embedding_frames, stitch_params
from panda_spark.video.clip_writer import write_clips
from tests.video.media import moving_scene, write_video

TICK = Fraction(1, 30)  # time base of the VFR files; nominal rate 30 fps

RELEASED = SplitParams("released_code", stitch=stitch_params("released_code"))  # whole events: no trim


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    """Two 51-frame shots (a hard cut at frame 51), frames 1–4 ticks apart: 102 frames over 8 s,
    where frame ÷ 30 fps would say 3.4 s (and drop both shots as shorter than 2 s)."""
    gaps = np.random.default_rng(7).choice([1, 1, 2, 3, 4], size=101)
    pts = [0, *np.cumsum(gaps).tolist()]
    frames = moving_scene(51, 72, 128, (200, 40, 40), 1) + moving_scene(51, 72, 128, (40, 60, 200), 2)
    path = write_video(tmp_path_factory.mktemp("vfr") / "vfr.mp4", frames, pts, TICK)
    return path, [p / 30 for p in pts]


def test_vfr_shot_and_clip_times_are_the_frames_timestamps(vfr):
    path, times = vfr
    assert times[-1] > 8.0 and 102 / 30 < 3.5
    result = split_video("vfr", str(path), ColorLayoutEmbedder(), RELEASED)
    end = times[-1] + 1 / 30  # the last frame's pts plus its duration
    assert [(s["start_frame"], s["end_frame"]) for s in result.shots] == [(0, 51), (51, 102)]
    bounds = [0, times[51], times[51], end]
    assert [x for s in result.shots for x in (s["start_s"], s["end_s"])] == pytest.approx(bounds)
    assert [(c["start_frame"], c["end_frame"]) for c in result.clips] == [(0, 51), (51, 102)]
    assert [x for c in result.clips for x in (c["start_s"], c["end_s"])] == pytest.approx(bounds)
    truncated_ms = [f"0:00:0{int(t * 1000) / 1000:.3f}" for t in (times[51], end)]
    assert [result.clips[1]["start_timecode"], result.clips[1]["end_timecode"]] == truncated_ms
    assert result.no_clips is None


def test_vfr_frames_are_sampled_every_period_and_picked_by_time(vfr):
    path, times = vfr
    period = round(30 / 4) / 30  # sample_fps 4 at the nominal rate: every 8 frame periods
    expected = [i for i, t in enumerate(times) if i == 0 or int(t / period + 1e-9) > int(times[i - 1] / period + 1e-9)]
    assert sorted(scan_video(str(path), ScanParams()).samples) == expected
    result = split_video("vfr", str(path), ColorLayoutEmbedder(), RELEASED)
    largest_gap = max(b - a for a, b in zip(times, times[1:]))
    for clip in result.clips:
        frames = [f for f in result.clip_frames if f["clip_id"] == clip["clip_id"] and f["role"] == "uniform"]
        length = clip["end_s"] - clip["start_s"]
        for k, frame in enumerate(frames):  # nearest sample to k+0.5 eighths of the clip's time
            target = clip["start_s"] + length * (k + 0.5) / 8
            assert abs(times[frame["frame_number"]] - target) <= (period + largest_gap) / 2 + 1e-9


def test_vfr_long_take_is_cut_every_5_seconds_of_timestamps(tmp_path):
    """A 20 s take of ~100 frames: 150 frames (5 s × 30 fps) would never be reached."""
    gaps = np.random.default_rng(3).choice([4, 5, 6, 7, 8], size=99)
    pts = [0, *np.cumsum(gaps).tolist()]
    times = [p / 30 for p in pts]
    path = write_video(tmp_path / "take.mp4", moving_scene(100, 72, 128, (90, 160, 60), 3), pts, TICK)
    scan = scan_video(str(path), ScanParams())
    starts = [s.start_frame for s in scan.shots]
    expected, start = [0], 0
    while times[-1] + 1 / 30 - times[start] > 7:  # force_cuts: the last frame at most 5 s after the piece's start
        start = max(i for i, t in enumerate(times) if t <= times[start] + 5)
        expected.append(start)
    assert starts == expected and len(starts) == 4
    assert all(s.forced for s in scan.shots[1:])
    wanted = {i for s in scan.shots for i in shot_embedding_frames(s.start_frame, s.end_frame)}
    assert wanted == set(scan.embed_frames)  # each piece's 5% and 95% frames were kept


def test_clip_mp4_keeps_the_source_timestamps_from_zero(vfr, tmp_path):
    path, times = vfr
    out = {"a": str(tmp_path / "a.mp4"), "b": str(tmp_path / "b.mp4")}
    write_clips(str(path), {"a": (0, 51), "b": (60, 102)}, out)
    for clip, (start, end) in (("a", (0, 51)), ("b", (60, 102))):
        with av.open(out[clip]) as container:
            got = [f.time for f in container.decode(video=0)]
        assert got == pytest.approx([t - times[start] for t in times[start:end]], abs=1e-3)


def rotated_source(tmp_path, rotation=90):
    """64×32 stored frames whose top-left quadrant is white, tagged to turn `rotation`° clockwise."""
    image = np.zeros((32, 64, 3), np.uint8)
    image[:16, :32] = 255
    frames = [np.clip(image.astype(int) + i, 0, 255).astype(np.uint8) for i in range(12)]
    return write_video(tmp_path / "rotated.mp4", frames, range(12), Fraction(1, 25), rate=25, rotation=rotation)


def white_quadrant(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    means = {(r, c): image[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2].mean()
             for r in (0, 1) for c in (0, 1)}
    top, left = max(means, key=means.get)
    return ("top" if top == 0 else "bottom") + "-" + ("left" if left == 0 else "right")


def test_a_rotated_video_is_decoded_upright_everywhere(tmp_path):
    path = rotated_source(tmp_path)
    with av.open(str(path)) as container:  # the display matrix was written and reads back
        assert next(container.decode(video=0)).rotation == -90
    stream = ScanStream(str(path), ScanParams())
    assert (stream.rotation, stream.width, stream.height, stream.sample_size) == (90, 32, 64, (224, 448))
    scan = scan_video(str(path), ScanParams())
    sample = cv2.imdecode(np.frombuffer(scan.samples[0], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert sample.shape == (448, 224) and white_quadrant(sample) == "top-right"  # turned 90° clockwise
    assert white_quadrant(scan.embed_frames[0]) == "top-right"
    out = str(tmp_path / "clip.mp4")
    write_clips(str(path), {"c": (0, 12)}, {"c": out})
    with av.open(out) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height, frame.rotation) == (32, 64, 0)
    assert white_quadrant(frame.to_ndarray(format="rgb24")) == "top-right"


def test_a_one_frame_video_yields_no_clip_and_says_why(tmp_path):
    path = write_video(tmp_path / "one.mp4", moving_scene(1, 72, 128, (200, 40, 40), 1), [0], Fraction(1, 25), 25)
    result = split_video("one", str(path), ColorLayoutEmbedder(), SplitParams())
    assert (len(result.shots), result.clips) == (1, [])
    assert result.shots[0]["end_s"] == pytest.approx(0.04)
    assert result.no_clips == "no clips from 1 shot: 0 transitions, 1 shorter than min_len 2.5 s, 0 still, 0 redundant"


def test_4k_decodes_and_a_too_short_4k_video_says_why(tmp_path):
    frames = moving_scene(10, 2160, 3840, (30, 120, 200), 4)
    path = write_video(tmp_path / "uhd.mp4", frames, range(10), Fraction(1, 25), 25)
    result = split_video("uhd", str(path), ColorLayoutEmbedder(), SplitParams())
    assert [(s["start_frame"], s["end_frame"], s["end_s"]) for s in result.shots] == [(0, 10, 0.4)]
    assert result.no_clips == "no clips from 1 shot: 0 transitions, 1 shorter than min_len 2.5 s, 0 still, 0 redundant"
    scan = scan_video(str(path), ScanParams())
    assert (scan.width, scan.height, scan.sample_size, scan.frame_count) == (3840, 2160, (398, 224), 10)
    sample = cv2.imdecode(np.frombuffer(scan.samples[0], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.abs(sample[5, 5].astype(int) - (30, 120, 200)).max() < 12  # the background colour survived

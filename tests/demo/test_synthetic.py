"""Tests for the deterministic synthetic demo sources."""
from __future__ import annotations

import csv
import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from panda_spark.demo.synthetic import SyntheticVideo, render_demo_sources, write_manifest


def _hsv_opencv(rgb_u8: np.ndarray) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) -> HSV float32 (N, 3, H, W) as OpenCV computes it:
    H in [0, 180), S and V in [0, 255]. Planar maths (fast; reductions over a length-3
    last axis are slow in numpy)."""
    r, g, b = np.moveaxis(rgb_u8, -1, 0).astype(np.float32)
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    safe = np.maximum(diff, 1e-6)
    h = 60.0 * np.where(v == r, (g - b) / safe,
                        np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h[h < 0] += 360.0
    h[diff == 0] = 0.0
    s = 255.0 * diff / np.maximum(v, 1.0)
    return np.stack([np.round(h / 2.0) % 180, np.round(s), v], axis=1)


def content_deltas(frames_rgb: np.ndarray) -> np.ndarray:
    """PySceneDetect ContentDetector-style score between consecutive frames.

    ``frames_rgb``: (N, H, W, 3) uint8. Returns mean(|dH| + |dS| + |dV|) / 3 for each
    consecutive pair (shape (N-1,)); ``result[i - 1]`` compares frame i-1 with frame i.
    Works in chunks to keep memory small.
    """
    n = len(frames_rgb)
    out = np.empty(max(n - 1, 0), dtype=np.float64)
    prev = None
    chunk = 64
    for a in range(0, n, chunk):
        hsv = _hsv_opencv(frames_rgb[a:a + chunk])
        if prev is not None:
            hsv = np.concatenate([prev[None], hsv])
        d = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2, 3))
        start = a - 1 if prev is not None else 0
        out[start:start + len(d)] = d
        prev = hsv[-1]
    return out


def test_content_deltas_helper():
    black = np.zeros((1, 4, 4, 3), np.uint8)
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255  # H=0, S=255, V=255
    blue = np.zeros((1, 4, 4, 3), np.uint8)
    blue[..., 2] = 255  # H=120 (OpenCV), S=255, V=255
    d = content_deltas(np.concatenate([black, black, red, blue] + [blue] * 70))
    assert d.shape == (73,)
    np.testing.assert_allclose(d[:3], [0.0, 510 / 3, 40.0])
    assert not d[3:].any()


def _decode_rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, list[SyntheticVideo]]:
    out = tmp_path_factory.mktemp("demo_a")
    return out, render_demo_sources(out, seed=0)


@pytest.fixture(scope="module")
def by_id(rendered) -> dict[str, SyntheticVideo]:
    return {v.video_id: v for v in rendered[1]}


def test_declared_sources(rendered, by_id):
    out, videos = rendered
    assert [v.video_id for v in videos] == ["demo_city", "demo_kitchen", "-demo_dash"]
    city, kitchen, dash = by_id["demo_city"], by_id["demo_kitchen"], by_id["-demo_dash"]

    assert (city.fps, city.frame_count, city.width, city.height) == (25, 900, 320, 180)
    assert city.category == "Travel" and city.has_audio
    assert city.hard_cuts == (200, 550, 700)
    assert city.crossfades == ((375, 399),)
    assert city.stills == ((550, 699),)

    assert (kitchen.fps, kitchen.frame_count, kitchen.width, kitchen.height) == (30, 840, 320, 180)
    assert kitchen.category == "Cooking" and not kitchen.has_audio
    assert kitchen.hard_cuts == (150, 270, 690)
    assert kitchen.crossfades == () and kitchen.stills == ()
    # a continuous take of >= 12 s (hard cut to hard cut)
    assert max(np.diff((0,) + kitchen.hard_cuts + (kitchen.frame_count,))) >= 12 * kitchen.fps

    assert (dash.fps, dash.frame_count, dash.width, dash.height) == (24, 480, 256, 144)
    assert dash.category == "Education" and not dash.has_audio
    assert dash.hard_cuts == (168, 336)

    for v in videos:
        assert v.path == out / "videos" / f"{v.video_id}.mp4"
        assert v.path.is_file()
        ext = ".srt" if v.video_id == "-demo_dash" else ".vtt"
        assert v.subtitles_path == out / "subtitles" / f"{v.video_id}{ext}"


def test_decodes_to_exact_frame_count(rendered):
    for v in rendered[1]:
        with av.open(str(v.path)) as c:
            vs = c.streams.video[0]
            assert vs.codec_context.name == "h264"
            assert vs.average_rate == Fraction(v.fps, 1)
            n = 0
            for frame in c.decode(video=0):
                assert (frame.width, frame.height) == (v.width, v.height)
                assert frame.format.name == "yuv420p"
                assert frame.pts * frame.time_base == Fraction(n, v.fps)
                n += 1
        assert n == v.frame_count, v.video_id


def test_decord_frame_count(rendered):
    decord = pytest.importorskip("decord")
    for v in rendered[1]:
        vr = decord.VideoReader(str(v.path))
        assert len(vr) == v.frame_count, v.video_id
        assert round(vr.get_avg_fps()) == v.fps


def test_audio_only_for_city(rendered):
    for v in rendered[1]:
        with av.open(str(v.path)) as c:
            audio = list(c.streams.audio)
            if v.video_id == "demo_city":
                assert len(audio) == 1 and v.has_audio
                a = audio[0]
                assert a.codec_context.name == "aac"
                assert a.rate in (44100, 48000)
                samples = sum(f.samples for f in c.decode(audio=0))
                # same duration as the video, within one AAC frame
                assert abs(samples / a.rate - v.frame_count / v.fps) < 1024 / a.rate + 1e-6
            else:
                assert audio == [] and not v.has_audio


def test_same_seed_is_byte_identical(rendered, tmp_path):
    out_a, videos_a = rendered
    videos_b = render_demo_sources(tmp_path / "demo_b", seed=0)
    assert [v.video_id for v in videos_b] == [v.video_id for v in videos_a]
    for a, b in zip(videos_a, videos_b):
        assert _sha256(a.path) == _sha256(b.path), a.video_id
        assert _sha256(a.subtitles_path) == _sha256(b.subtitles_path), a.video_id
        assert a.hard_cuts == b.hard_cuts and a.crossfades == b.crossfades


def test_content_deltas(rendered):
    for v in rendered[1]:
        frames = _decode_rgb(v.path)
        assert frames.shape == (v.frame_count, v.height, v.width, 3)
        deltas = content_deltas(frames)  # deltas[i-1] is between frame i-1 and frame i
        cut_scores = [float(deltas[c - 1]) for c in v.hard_cuts]
        assert all(s > 40 for s in cut_scores), (v.video_id, cut_scores)
        excluded = {c for c in v.hard_cuts}
        for first, last in v.crossfades:
            excluded.update(range(first, last + 2))  # every pair touching a blended frame
        inside = [i for i in range(1, v.frame_count) if i not in excluded]
        worst = max(float(deltas[i - 1]) for i in inside)
        assert worst < 10, (v.video_id, worst)
        # cuts stand far above anything inside a scene
        assert min(cut_scores) > 4 * worst
        for first, last in v.stills:
            # frozen: identical source frames, so the decoded ones differ only by codec
            # refinement (x264 keeps polishing a static picture over the P-frames)
            still = frames[first:last + 1].astype(np.int16)
            assert np.abs(still - still[0]).mean(axis=(1, 2, 3)).max() < 1.5, v.video_id
            assert deltas[first:last].max() < 0.5, v.video_id
            assert last - first + 1 >= 5 * v.fps


def test_subtitles(rendered):
    for v in rendered[1]:
        text = v.subtitles_path.read_text(encoding="utf-8")
        scene_starts = (0,) + v.hard_cuts + tuple(f for f, _ in v.crossfades)
        duration = v.frame_count / v.fps
        if v.subtitles_path.suffix == ".vtt":
            assert text.startswith("WEBVTT\n")
            arrows = [ln for ln in text.splitlines() if " --> " in ln]
            sep = "."
        else:
            assert text.startswith("1\n00:00:")
            arrows = [ln for ln in text.splitlines() if " --> " in ln]
            sep = ","
        assert len(arrows) >= len(scene_starts)

        def secs(ts: str) -> float:
            hh, mm, rest = ts.split(":")
            ss, ms = rest.split(sep)
            return int(hh) * 3600 + int(mm) * 60 + int(ss) + int(ms) / 1000

        spans = [tuple(secs(x) for x in ln.split(" --> ")) for ln in arrows]
        assert all(0 <= a < b <= duration for a, b in spans)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        # no cue straddles a hard cut
        for c in v.hard_cuts:
            t = c / v.fps
            assert not any(a < t < b for a, b in spans), (v.video_id, t)


def test_manifest_round_trip(rendered, tmp_path):
    out, videos = rendered
    manifest = write_manifest(videos, out / "manifest.csv")
    assert manifest == out / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["video_id", "path", "url", "title", "description",
                                     "subtitles", "category"]
        rows = list(reader)
    assert [r["video_id"] for r in rows] == [v.video_id for v in videos]
    assert rows[0]["path"] == "videos/demo_city.mp4"
    assert rows[2]["subtitles"] == "subtitles/-demo_dash.srt"
    for row, v in zip(rows, videos):
        assert not Path(row["path"]).is_absolute()
        assert (manifest.parent / row["path"]).resolve() == v.path.resolve()
        assert (manifest.parent / row["subtitles"]).resolve() == v.subtitles_path.resolve()
        assert row["url"] == f"https://example.invalid/watch?v={v.video_id}"
        assert (row["title"], row["description"], row["category"]) == (
            v.title, v.description, v.category)
    quoted = [r["description"] for r in rows if '"' in r["description"] and "," in r["description"]]
    assert quoted, "one description must exercise CSV quoting"

    # a manifest elsewhere gets ../ paths; a missing subtitle gives an empty cell
    import dataclasses
    no_subs = [dataclasses.replace(videos[1], subtitles_path=None)]
    other = write_manifest(no_subs, tmp_path / "sub" / "m.csv")
    with open(other, newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["subtitles"] == ""
    assert (other.parent / row["path"]).resolve() == videos[1].path.resolve()

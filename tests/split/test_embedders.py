"""ColorLayoutEmbedder: shape and norm, and distances that fit Panda-70M's stitching thresholds
(still < 0.15, join <= 0.6, transition > 1.0) on synthetic and real frames."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from panda_spark.split.embedders import ColorLayoutEmbedder, ImageEmbedder

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "panda70m_samples"


def sunset(size: int = 224) -> np.ndarray:
    """Red-orange sky darkening to purple at the top, a yellow sun, a dark ground strip."""
    y = np.linspace(0.0, 1.0, size)[:, None, None]
    top, bottom = np.array([70, 20, 90]), np.array([250, 90, 30])
    img = np.broadcast_to(top + (bottom - top) * y, (size, size, 3)).copy()
    yy, xx = np.mgrid[:size, :size]
    img[(yy - 0.7 * size) ** 2 + (xx - 0.5 * size) ** 2 < (0.1 * size) ** 2] = [255, 210, 80]
    img[int(0.8 * size):] = [40, 15, 20]
    return img.astype(np.uint8)


def teal_texture(size: int = 224) -> np.ndarray:
    """Blue-green stripes and checks with random texture."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    stripes = 0.5 + 0.5 * np.sin(xx / 5.0 + yy / 9.0)
    checks = ((xx // 16 + yy // 16) % 2)
    noise = np.random.default_rng(7).normal(0, 12, (size, size))
    g = 120 + 80 * stripes + 20 * checks + noise
    b = 150 + 60 * checks + 30 * stripes + noise
    r = 20 + 20 * stripes
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


@pytest.fixture(scope="module")
def embedder() -> ColorLayoutEmbedder:
    return ColorLayoutEmbedder()


def test_protocol_shape_dtype_and_unit_norm(embedder):
    assert isinstance(embedder, ImageEmbedder)
    assert embedder.name == "color-layout-v1"
    frames = np.stack([sunset(), teal_texture(), np.zeros((224, 224, 3), np.uint8), np.full((224, 224, 3), 255, np.uint8)])
    out = embedder.embed(frames)
    assert out.shape == (4, embedder.dim) and out.shape[1] == 111
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    empty = embedder.embed(np.zeros((0, 224, 224, 3), np.uint8))
    assert empty.shape == (0, 111) and empty.dtype == np.float32


def test_rejects_bad_input(embedder):
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((224, 224, 3), np.uint8))
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((1, 224, 224, 3), np.float32))


def test_identical_frames_zero_distance_and_deterministic(embedder):
    frames = np.stack([sunset(), sunset(), teal_texture()])
    out = embedder.embed(frames)
    assert dist(out[0], out[1]) == 0.0
    again = ColorLayoutEmbedder().embed(frames.copy())
    assert np.array_equal(out, again)


def test_rows_independent_of_batch(embedder):
    frames = np.stack([sunset(), teal_texture(), sunset()[::-1]])
    together = embedder.embed(frames)
    alone = np.concatenate([embedder.embed(f[None]) for f in frames])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    small_batches = ColorLayoutEmbedder(batch_size=2).embed(frames)
    np.testing.assert_allclose(together, small_batches, atol=1e-6)


def test_other_frame_sizes(embedder):
    import cv2

    frames = np.stack([sunset(), teal_texture()])
    small = np.stack([cv2.resize(f, (150, 100), interpolation=cv2.INTER_AREA) for f in frames])  # not /32
    out, ref = embedder.embed(small), embedder.embed(frames)
    assert out.shape == (2, 111)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert dist(out[0], ref[0]) < 0.15 and dist(out[1], ref[1]) < 0.15  # same picture, other size


@pytest.mark.parametrize("make", [sunset, teal_texture, lambda: np.full((224, 224, 3), 128, np.uint8)])
def test_mild_noise_is_still(embedder, make):
    frame = make()
    noisy = np.clip(frame + np.random.default_rng(0).normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
    out = embedder.embed(np.stack([frame, noisy]))
    assert dist(out[0], out[1]) < 0.15


def test_different_scenes_far_apart(embedder):
    out = embedder.embed(np.stack([sunset(), teal_texture()]))
    assert dist(out[0], out[1]) > 0.6
    assert dist(out[0], out[1]) > 1.0  # unrelated scenes: past the transition threshold too


def test_small_shift_stays_joined(embedder):
    frame = teal_texture(256)
    out = embedder.embed(np.stack([frame[:224, :224], frame[8:232, 12:236]]))  # a small camera pan
    assert dist(out[0], out[1]) <= 0.6


def test_real_clip_junctions_are_boundaries(embedder):
    if not SAMPLES.exists():
        pytest.skip(f"{SAMPLES} not present (shared test data lives beside the repository)")
    import cv2
    import decord

    rows = list(csv.DictReader(open(SAMPLES / "manifest.csv")))
    firsts, lasts = [], []
    for row in rows:
        vr = decord.VideoReader(str(SAMPLES / "clips" / row["file"]))
        first, last = vr.get_batch([0, len(vr) - 1]).asnumpy()
        firsts.append(cv2.resize(first, (224, 224), interpolation=cv2.INTER_AREA))
        lasts.append(cv2.resize(last, (224, 224), interpolation=cv2.INTER_AREA))
    e_first, e_last = embedder.embed(np.stack(firsts)), embedder.embed(np.stack(lasts))
    pairs = [(a, a + 1) for a in range(len(rows) - 1) if rows[a]["category"] != rows[a + 1]["category"]]
    assert len(pairs) >= 5
    d = np.array([dist(e_last[a], e_first[b]) for a, b in pairs])
    assert (d > 0.6).mean() >= 0.9, np.round(d, 3)
    # every ordered pair of clips from different source videos, not just the consecutive ones
    video = [row["file"].split(".")[0] for row in rows]
    all_d = np.linalg.norm(e_last[:, None] - e_first[None, :], axis=2)
    other = np.array([[video[a] != video[b] for b in range(len(rows))] for a in range(len(rows))])
    assert (all_d[other] > 0.6).mean() >= 0.9

"""Image embedders for shot stitching: frames → L2-normalised vectors. No Spark, no learned weights.

Panda-70M stitches shots with ImageBind embeddings and three L2-distance thresholds (transition
> 1.0 within a shot, join <= 0.6 across a junction, still < 0.15 across an event). An
`ImageEmbedder` here is anything with a `name` (it goes into the split version hash) and an
`embed(frames)` returning unit rows, so those same thresholds apply.

`ColorLayoutEmbedder` is a hand-designed, CPU-only stand-in ("color-layout-v1"). Each frame is
area-averaged to 32×32 and converted to CIE Lab, then described by blocks of features:

- colour layout: mean Lab over a 1×1, 2×2 and 4×4 grid (a spatial pyramid);
- colour statistics: the Lab standard deviation of the frame, a 12-bin hue histogram (Lab hue
  angle, weighted by chroma) and an 8-bin lightness histogram (both soft-binned);
- texture: mean gradient magnitude of L over the frame and over a 4×4 grid, and an 8-bin
  gradient-orientation histogram (magnitude-weighted, divided by mean magnitude + a floor so a flat
  frame's near-zero gradients stay near zero).

Each block is centred and scaled by fixed constants (so two unrelated frames point in unrelated
directions instead of all lying in the positive orthant), weighted, divided by the square root of
its size (a block's weight, not its length, sets its share), concatenated (111 dimensions) and
L2-normalised. The constants and weights come from `bench/embedder_calibration.py` on the 40
Panda-70M sample clips: frames 1.5 s apart within a shot are <= 0.6 apart for 93 % of windows
(median 0.23, 0.5 % > 1.0), last/first frames of clips from different videos are > 0.6 apart for
99.7 % of pairs (median 1.34), and sigma-2 noise moves a frame by <= 0.02 (still is < 0.15).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class ImageEmbedder(Protocol):
    name: str  # identifies the embedder and its version; goes into the split version string

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB → (N, D) float32, each row L2-normalised."""
        ...


_SIZE = 32  # frames are area-averaged to _SIZE × _SIZE before any feature
_HUE_BINS = 12
_LIGHT_BINS = 8
_ORIENT_BINS = 8

# Centre and scale per block (per Lab channel for the Lab blocks), close to the mean and standard
# deviation of each block over the sample clips' frames (bench/embedder_calibration.py prints them).
_LAB_CENTRE = np.array([45.0, 2.5, 5.0], np.float32)  # L, a, b of the grid means
_LAB_SCALE = np.array([18.0, 8.0, 11.0], np.float32)
_LABSTD_CENTRE = np.array([18.0, 5.5, 9.0], np.float32)  # per-frame std of L, a, b
_LABSTD_SCALE = np.array([5.5, 4.0, 4.7], np.float32)
_HUE_CENTRE, _HUE_SCALE = 0.05, 0.13  # hue histogram, chroma-weighted: sums to mean chroma / 20
_LIGHT_CENTRE, _LIGHT_SCALE = 1.0 / _LIGHT_BINS, 0.12  # lightness histogram, sums to 1
_EDGE_CENTRE, _EDGE_SCALE = 7.2, 3.0  # mean |∇L| (L units per pixel at 32×32)
_ORIENT_FLOOR = 2.0  # added to the mean |∇L| that normalises the orientation histogram
_ORIENT_CENTRE, _ORIENT_SCALE = 0.1, 0.05

# Block weights (bench/embedder_calibration.py: the trade-off between within-shot and
# cross-clip distances; colour statistics and orientation carry most, fine layout less).
WEIGHTS: dict[str, float] = {
    "lab1": 1.0,
    "lab2": 1.0,
    "lab4": 1.0,
    "labstd": 1.5,
    "hue": 1.5,
    "light": 1.0,
    "edge1": 0.5,
    "edge4": 0.5,
    "orient": 1.5,
}


def _downsample(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, _SIZE, _SIZE, 3) float32 in [0, 1], area-averaged."""
    n, h, w = frames.shape[:3]
    if h % _SIZE == 0 and w % _SIZE == 0:
        # frames stacked vertically make one tall image; with whole-pixel area cells no cell
        # straddles two frames, so one cv2 call downsamples the batch
        tall = np.ascontiguousarray(frames).reshape(n * h, w, 3)
        small = cv2.resize(tall, (_SIZE, n * _SIZE), interpolation=cv2.INTER_AREA)
    else:
        small = np.concatenate(
            [cv2.resize(np.ascontiguousarray(f), (_SIZE, _SIZE), interpolation=cv2.INTER_AREA) for f in frames]
        )
    return (small.astype(np.float32) * np.float32(1.0 / 255.0)).reshape(n, _SIZE, _SIZE, 3)


def _soft_hist(pos: np.ndarray, weights: np.ndarray, bins: int, circular: bool) -> np.ndarray:
    """Per-row histogram of (N, P) bin coordinates (bin centres at integers), each value split
    linearly between its two nearest bins; divided by P."""
    n, p = pos.shape
    if circular:
        lo_f = np.floor(pos)
        frac = pos - lo_f
        lo = lo_f.astype(np.int64) % bins
        hi = (lo + 1) % bins
    else:
        pos = np.clip(pos, 0, bins - 1)
        lo_f = np.minimum(np.floor(pos), bins - 2)
        frac = pos - lo_f
        lo = lo_f.astype(np.int64)
        hi = lo + 1
    offset = (np.arange(n, dtype=np.int64) * bins)[:, None]
    out = np.bincount((lo + offset).ravel(), (weights * (1 - frac)).ravel(), minlength=n * bins)
    out += np.bincount((hi + offset).ravel(), (weights * frac).ravel(), minlength=n * bins)
    return (out / p).reshape(n, bins)


def _grid_mean(x: np.ndarray, g: int) -> np.ndarray:
    """(N, S, S, ...) → (N, g·g·...) means over a g × g grid of cells."""
    n, s = x.shape[:2]
    c = s // g
    return x.reshape(n, g, c, g, c, *x.shape[3:]).mean(axis=(2, 4)).reshape(n, -1)


def raw_features(frames: np.ndarray) -> dict[str, np.ndarray]:
    """The uncentred feature blocks of `ColorLayoutEmbedder`, each (N, d) float."""
    n = len(frames)
    small = _downsample(frames)
    lab = cv2.cvtColor(small.reshape(n * _SIZE, _SIZE, 3), cv2.COLOR_RGB2Lab).reshape(n, _SIZE, _SIZE, 3)
    pixels = lab.reshape(n, -1, 3)
    light, a, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    out = {f"lab{g}": _grid_mean(lab, g) for g in (1, 2, 4)}
    out["labstd"] = pixels.std(axis=1)
    hue = (np.arctan2(b, a) * (_HUE_BINS / (2 * np.pi))) % _HUE_BINS
    chroma = np.sqrt(a * a + b * b) / 20.0
    out["hue"] = _soft_hist(hue, chroma, _HUE_BINS, circular=True)
    out["light"] = _soft_hist(light * ((_LIGHT_BINS - 1) / 100.0), np.ones_like(light), _LIGHT_BINS, circular=False)
    grid = lab[..., 0]
    gx = np.zeros_like(grid)
    gy = np.zeros_like(grid)
    gx[:, :, 1:-1] = (grid[:, :, 2:] - grid[:, :, :-2]) * 0.5
    gy[:, 1:-1, :] = (grid[:, 2:, :] - grid[:, :-2, :]) * 0.5
    mag = np.sqrt(gx * gx + gy * gy)
    out["edge1"] = _grid_mean(mag, 1)
    out["edge4"] = _grid_mean(mag, 4)
    angle = (np.arctan2(gy, gx) % np.pi) * (_ORIENT_BINS / np.pi)
    orient = _soft_hist(angle.reshape(n, -1), mag.reshape(n, -1), _ORIENT_BINS, circular=True)
    out["orient"] = orient / (out["edge1"] + _ORIENT_FLOOR)
    return out


_BLOCK_DIMS = {"lab1": 3, "lab2": 12, "lab4": 48, "labstd": 3, "hue": _HUE_BINS, "light": _LIGHT_BINS,
               "edge1": 1, "edge4": 16, "orient": _ORIENT_BINS}
_CENTRE_SCALE = {
    "lab1": (_LAB_CENTRE, _LAB_SCALE),
    "lab2": (np.tile(_LAB_CENTRE, 4), np.tile(_LAB_SCALE, 4)),
    "lab4": (np.tile(_LAB_CENTRE, 16), np.tile(_LAB_SCALE, 16)),
    "labstd": (_LABSTD_CENTRE, _LABSTD_SCALE),
    "hue": (_HUE_CENTRE, _HUE_SCALE),
    "light": (_LIGHT_CENTRE, _LIGHT_SCALE),
    "edge1": (_EDGE_CENTRE, _EDGE_SCALE),
    "edge4": (_EDGE_CENTRE, _EDGE_SCALE),
    "orient": (_ORIENT_CENTRE, _ORIENT_SCALE),
}


def combine(blocks: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Centre, scale and weight each block, concatenate, L2-normalise rows → float32."""
    parts = []
    for key, weight in weights.items():
        if weight:
            centre, scale = _CENTRE_SCALE[key]
            block = blocks[key]
            parts.append((block - centre) * (weight / np.sqrt(block.shape[1]) / np.asarray(scale, np.float32)))
    x = np.concatenate(parts, axis=1).astype(np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))


class ColorLayoutEmbedder:
    """Colour layout + colour statistics + texture layout, centred and L2-normalised (see module doc)."""

    name = "color-layout-v1"

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size  # bounds the float temporaries (~50 KiB per frame)

    @property
    def dim(self) -> int:
        return sum(_BLOCK_DIMS[key] for key, weight in WEIGHTS.items() if weight)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) RGB, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(
            [combine(raw_features(frames[i:i + self.batch_size]), WEIGHTS) for i in range(0, len(frames), self.batch_size)]
        )

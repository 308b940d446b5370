"""A hand-made selection task with a known answer: each clip is one solid colour (plus noise), its
candidates name four colours, and the annotated best caption names the clip's colour."""
from __future__ import annotations

import numpy as np

from panda_spark.select.finetune import LabeledClip

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 40)}


def color_frames(color: str, n: int, rng: np.random.Generator, size: int = 64) -> list[np.ndarray]:
    base = np.array(COLORS[color], np.int16)
    return [np.clip(base + rng.integers(-25, 26, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def color_clips(n: int, seed: int, num_frames: int = 2) -> list[LabeledClip]:
    rng = np.random.default_rng(seed)
    names = list(COLORS)
    clips = []
    for i in range(n):
        color = names[i % len(names)]
        order = list(rng.permutation(names))
        captions = [f"a {c} scene in the video" for c in order]
        clips.append(LabeledClip(f"clip-{seed}-{i}", color_frames(color, num_frames, rng), captions, order.index(color)))
    return clips

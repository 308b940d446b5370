"""Test media written with PyAV (there is no ffmpeg binary): frames with chosen timestamps and display
rotation, so variable-frame-rate and rotated files are made in the test that reads them."""
from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def write_video(path: Path, frames: Iterable[np.ndarray], pts: Iterable[int], time_base: Fraction,
                rate: int | Fraction = 30, rotation: int = 0) -> Path:
    """H.264 mp4 of RGB `frames`, frame i at `pts[i]` × `time_base` s; `rotation`: degrees the
    picture turns clockwise to be shown (the legacy `rotate` tag; written as the display matrix)."""
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes the counter-clockwise angle
        for image, t in zip(itertools.chain([first], frames), pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def moving_scene(count: int, height: int, width: int, hue_rgb: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """`count` frames of one shot: a coloured background with a bright square sliding across it and
    a little noise, so the shot neither stands still nor looks like a transition."""
    rng = np.random.default_rng(seed)
    side = max(2, height // 2)
    out = []
    for i in range(count):
        image = np.empty((height, width, 3), np.uint8)
        image[:] = hue_rgb
        x = int((width - side) * i / max(1, count - 1))
        image[height // 4: height // 4 + side, x:x + side] = 255
        out.append(np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8))
    return out

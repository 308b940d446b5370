"""Stored clip frames (`clip_frames` rows: frame_idx, role, jpeg) back to RGB arrays. No Spark.

The split stage keeps, per clip, `uniform` frames spread evenly over the clip and one `keyframe`
from 30–70% of it; a model that wants another count of uniform frames gets them resampled evenly.
"""
from __future__ import annotations

import cv2
import numpy as np

from panda_spark.errors import InputError


class MissingFrames(InputError):
    error_class = "MissingFrames"


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise MissingFrames("a stored clip frame is not a readable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 → JPEG bytes."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def keyframe(frames: list[dict]) -> np.ndarray:
    keyframes = [f for f in frames if f["role"] == "keyframe"]
    if not keyframes:
        raise MissingFrames("clip has no keyframe in clip_frames")
    return decode_jpeg(keyframes[0]["jpeg"])


def uniform_frames(frames: list[dict], count: int) -> list[np.ndarray]:
    """`count` of the clip's uniform frames, evenly spaced (repeating some when it has fewer)."""
    uniform = sorted((f for f in frames if f["role"] == "uniform"), key=lambda f: f["frame_idx"])
    if not uniform:
        raise MissingFrames("clip has no uniform frames in clip_frames")
    picks = np.linspace(0, len(uniform) - 1, count).round().astype(int)
    return [decode_jpeg(uniform[i]["jpeg"]) for i in picks]

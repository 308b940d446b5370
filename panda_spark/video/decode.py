"""Sequential decoding with PyAV: each source video is decoded once, front to back.

Frames come out as `av.VideoFrame`s (still in the codec's pixel format); `FrameResizer` turns the
ones a caller wants into RGB arrays of a given size inside libswscale. Resizing before the RGB
conversion is what makes analysis at 128×72 cheap: converting a 1080p frame to RGB first would
cost more than decoding it. One reformatter per output size keeps its scaler context warm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter


@dataclass(frozen=True)
class StreamInfo:
    fps: float
    frame_count: int  # as declared by the container (0 when unknown)
    width: int
    height: int


def open_stream(source: str | BinaryIO) -> tuple[av.container.InputContainer, av.VideoStream, StreamInfo]:
    container = av.open(source)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: the decoder is the bottleneck
    rate = stream.base_rate or stream.guessed_rate or stream.average_rate
    info = StreamInfo(float(rate) if rate else 0.0, stream.frames, stream.codec_context.width, stream.codec_context.height)
    return container, stream, info


def iter_frames(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    yield from container.decode(stream)


class FrameResizer:
    """Frame → RGB uint8 array of (width, height), reusing one scaler context."""

    def __init__(self, width: int, height: int, interpolation: str = "AREA"):
        self.width, self.height = width, height
        self._interpolation = Interpolation[interpolation]
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        out = self._reformatter.reformat(
            frame, width=self.width, height=self.height, format="rgb24", interpolation=self._interpolation
        )
        return out.to_ndarray()


def fit_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the shorter side `short_side`, aspect kept, both even."""
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def decode_failure(exc: Exception) -> tuple[str, str]:
    """(error_class, message) for the errors table when a video that probed fine at ingest fails
    to open or decode later (split, export)."""
    from panda_spark.errors import CorruptVideo, FileNotFound, InputError

    if isinstance(exc, InputError):
        return exc.error_class, exc.message
    if isinstance(exc, FileNotFoundError):
        return FileNotFound.error_class, f"video file is gone since ingest: {exc}"
    if isinstance(exc, av.FFmpegError):
        return CorruptVideo.error_class, f"decoding failed (changed since ingest?): {exc}"
    return type(exc).__name__, str(exc)[:2000]

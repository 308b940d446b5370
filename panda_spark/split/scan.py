"""One decode pass over a source video: content scores for every frame, plus every frame the later
steps need, so the video is never decoded again. No Spark.

While decoding it keeps, beside each frame's analysis-size HSV score:
- *embedding frames* (squashed to `embed_size`², as Panda-70M feeds its image encoder): every frame
  within `reach` frames of a possible shot boundary — a frame scoring at or above the threshold,
  the start, the end, or a forced-cut position 5 s, 10 s, … after the last detected cut. Panda
  embeds the frames at 5% and 95% of each shot, and shots are at most 7 s after forced cuts, so
  those frames always lie within `reach` = 5% of 7 s of a boundary: they are exact, not nearest.
  Once a cut is reported the shot before it is final: its two frames are kept, the rest dropped.
- *sample frames* every 1/`sample_fps` s (short side `sample_short_side`, JPEG), from which each
  clip's frames are picked once the clips are known.
Decoded frames stay in the codec's format until wanted; a short ring of them lets a boundary found
at frame i reach back to frames i-reach … i.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import BinaryIO

import cv2
import numpy as np

from panda_spark.split.detector import CutFilter, Shot, force_cuts, frame_score
from panda_spark.split.stitching import shot_embedding_frames
from panda_spark.video.decode import FrameResizer, fit_size, iter_frames, open_stream


@dataclass(frozen=True)
class ScanParams:
    threshold: float = 25.0
    min_scene_len: int = 15
    analysis_width: int = 128
    analysis_height: int = 72
    max_shot_s: float = 7.0
    forced_step_s: float = 5.0
    embed_size: int = 224
    sample_fps: float = 4.0
    sample_short_side: int = 224
    jpeg_quality: int = 90
    keep_frames: bool = True  # False: detect shots only (benchmarks)


@dataclass
class VideoScan:
    fps: float
    frame_count: int  # frames decoded
    width: int
    height: int
    scores: np.ndarray
    shots: list[Shot]  # detected cuts, then forced cuts
    embed_frames: dict[int, np.ndarray] = field(repr=False)  # each shot's 5%/95% frame → embed_size² RGB
    samples: dict[int, bytes] = field(repr=False)  # frame index → JPEG (short side sample_short_side)
    sample_size: tuple[int, int] = (0, 0)  # (width, height) of the sample JPEGs


def scan_video(source: str | BinaryIO, params: ScanParams) -> VideoScan:
    container, stream, info = open_stream(source)
    with container:
        fps = info.fps
        reach = math.ceil(0.05 * params.max_shot_s * fps) + 1
        step = max(1, int(params.forced_step_s * fps))
        sample_every = max(1, round(fps / params.sample_fps))
        analysis = FrameResizer(params.analysis_width, params.analysis_height, "FAST_BILINEAR")
        embed = FrameResizer(params.embed_size, params.embed_size)
        sample_w, sample_h = fit_size(info.width, info.height, params.sample_short_side)
        sample = FrameResizer(sample_w, sample_h)
        jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]

        cut_filter = CutFilter(params.threshold, params.min_scene_len)
        scores: list[float] = []
        shots: list[Shot] = []
        embed_frames: dict[int, np.ndarray] = {}  # frames of resolved shots
        pending: dict[int, np.ndarray] = {}  # frames near possible boundaries of the open shot
        samples: dict[int, bytes] = {}
        recent: deque = deque(maxlen=reach + 1)  # (index, av.VideoFrame)
        wanted_until = reach  # the first shot's 5% frame
        shot_start, next_forced = 0, step
        previous_hsv = None

        def resolve(end: int) -> None:
            """The open shot ends at `end`: fix its forced cuts, keep only its pieces' frames."""
            nonlocal shot_start
            pieces = force_cuts([Shot(shot_start, end, False, scores[shot_start] if shot_start else 0.0)], fps,
                                params.max_shot_s, params.forced_step_s)
            for piece in pieces:
                for wanted in shot_embedding_frames(piece.start_frame, piece.end_frame):
                    if wanted in pending:
                        embed_frames[wanted] = pending[wanted]
            for index in [i for i in pending if i < end]:
                del pending[index]
            shots.extend(pieces)
            shot_start = end

        for index, frame in enumerate(iter_frames(container, stream)):
            hsv = cv2.cvtColor(analysis(frame), cv2.COLOR_RGB2HSV)
            score = 0.0 if previous_hsv is None else frame_score(previous_hsv, hsv)
            previous_hsv = hsv
            scores.append(score)
            if params.keep_frames:
                recent.append((index, frame))
                if score >= params.threshold:  # a possible cut: keep the frames around it
                    wanted_until = max(wanted_until, index + reach)
                    for earlier, earlier_frame in recent:
                        if earlier not in pending:
                            pending[earlier] = embed(earlier_frame)
                if index >= next_forced - reach:  # approaching a possible forced cut
                    wanted_until = max(wanted_until, next_forced + reach)
                    if index >= next_forced:
                        next_forced += step
                if index <= wanted_until and index not in pending:
                    pending[index] = embed(frame)
                if index % sample_every == 0:
                    samples[index] = cv2.imencode(".jpg", sample(frame)[:, :, ::-1], jpeg_params)[1].tobytes()
            cut = cut_filter.push(score)
            if cut is not None:
                resolve(cut)
                next_forced = cut + step

        for earlier, earlier_frame in recent:  # the last shot's 95% frame lies near the end
            if earlier not in pending:
                pending[earlier] = embed(earlier_frame)
        if scores:
            resolve(len(scores))
    return VideoScan(fps, len(scores), info.width, info.height, np.asarray(scores), shots, embed_frames, samples,
                     (sample_w, sample_h))

"""One decode pass over a source video: content scores for every frame, plus every frame the later
steps need, so the video is never decoded again. No Spark.

While decoding it keeps, beside each frame's analysis-size HSV score:
- *embedding frames* (squashed to `embed_size`², as Panda-70M feeds its image encoder): every frame
  within `reach` frames of a possible shot boundary — a frame scoring at or above the threshold,
  the start, the end, or a possible forced cut 5 s, 10 s, … after the last detected cut. Panda
  embeds the frames at 5% and 95% of each shot, and shots are at most 7 s after forced cuts, so
  those frames always lie within `reach` = 5% of 7 s of a boundary: they are exact, not nearest.
  Once a cut is reported the shot before it is final: its two frames are kept, the rest dropped.
  A long take's forced pieces are final before that, as soon as no cut can come early enough to
  change them.
- *sample frames* every 1/`sample_fps` s (short side `sample_short_side`, JPEG), from which each
  clip's frames are picked once the clips are known.
- each frame's presentation time (`FrameClock`): every length and time is measured on it, so a
  variable-frame-rate video's forced cuts, samples and clip times follow its timestamps. Frame
  indices stay the unit of shots (as PySceneDetect counts them), and of `reach`, taken at the
  nominal rate: exact while no stretch of the video runs faster than that.
Decoded frames stay in the codec's format until wanted; a short ring of them lets a boundary found
at frame i reach back to frames i-reach … i. Frames come out upright (the display rotation applied).

`ScanStream` hands both out as the pass goes — each sample as its frame is decoded, each shot with
its two frames once the shot is final — so a caller keeps only what it can still use (the split
core does); `scan_video` keeps everything.
"""
from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import av
import cv2
import numpy as np

from panda_spark.split.detector import CutFilter, Shot, force_cuts, forced_cut, frame_score, scenedetect_size
from panda_spark.split.stitching import shot_embedding_frames
from panda_spark.video.decode import FrameClock, FrameResizer, fit_size, open_stream


@dataclass(frozen=True)
class ScanParams:
    threshold: float = 25.0
    min_scene_len: int = 15
    flash_filter: str = "suppress"  # ContentDetector's min_scene_len filter: suppress | merge (detector.py)
    analysis_size: str = "auto"  # auto: PySceneDetect's frames; fixed: analysis_width×analysis_height (fast)
    analysis_width: int = 128
    analysis_height: int = 72
    max_shot_s: float = 7.0
    forced_step_s: float = 5.0
    embed_size: int = 224
    sample_fps: float = 4.0
    sample_short_side: int = 224
    jpeg_quality: int = 90
    keep_frames: bool = True  # False: detect shots only (benchmarks)


def analysis_resizer(params: ScanParams, width: int, height: int) -> Callable[[av.VideoFrame], np.ndarray]:
    """Decoded frame → the RGB array whose HSV the content score compares.

    "fixed": `analysis_width`×`analysis_height` inside libswscale, before the RGB conversion (cheap).
    "auto": the frame PySceneDetect scores — converted to RGB at full size, then resized to
    `scenedetect_size` with cv2.INTER_LINEAR — so scores equal scenedetect's (measured: mean
    |Δscore| 0.000 at 640×360; a swscale resize to that size is off by 0.1–0.5). The full-size RGB
    conversion costs the 1080p scan ~1.4× the CPU of "fixed" (slides_1080p: 12.5 vs 8.9 s).
    """
    if params.analysis_size == "fixed":
        return FrameResizer(params.analysis_width, params.analysis_height, "FAST_BILINEAR")
    if params.analysis_size != "auto":
        raise ValueError(f"unknown analysis size {params.analysis_size!r}; known: ['auto', 'fixed']")
    full, size = FrameResizer(width, height, "BILINEAR"), scenedetect_size(width, height)
    if size == (width, height):
        return full
    return lambda frame: cv2.resize(full(frame), size, interpolation=cv2.INTER_LINEAR)


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
    clock: FrameClock | None = field(default=None, repr=False)  # each frame's time, and the end's


@dataclass(frozen=True)
class Sample:
    index: int  # frame index
    jpeg: bytes  # short side `sample_short_side`


@dataclass(frozen=True)
class ShotFrames:
    """A shot whose bounds are final, with its 5% and 95% frames (`embed_size`² RGB); None for a
    frame that was not kept (`keep_frames` off)."""

    shot: Shot
    first: np.ndarray | None = field(repr=False)
    last: np.ndarray | None = field(repr=False)


class ScanStream:
    """The decode pass as a stream. Opens the video at once (fps, rotation and upright sizes are
    known before the pass); iterating, once, decodes it and yields in decode order a `Sample` for each
    sampled frame and a `ShotFrames` for each shot as soon as it is final. The shots come in video order and tile
    the video. The stream itself holds only the ring of recent frames and the embedding frames near
    the possible boundaries of the shot not handed out yet, plus one score and one time (`clock`) per
    frame; the clock is closed (holds the video's end) before the last shot is handed out."""

    def __init__(self, source: str | BinaryIO, params: ScanParams):
        self.params = params
        self._container, self._frames, info = open_stream(source)
        self.fps, self.width, self.height, self.rotation = info.fps, info.width, info.height, info.rotation
        self.clock = FrameClock(info)
        self.sample_size = fit_size(info.width, info.height, params.sample_short_side)  # (width, height)
        self.scores = array("d")  # content score per decoded frame

    @property
    def frame_count(self) -> int:
        """Frames decoded so far (all of them once the iteration ended)."""
        return len(self.scores)

    def __iter__(self) -> Iterator[Sample | ShotFrames]:
        params, fps, scores, clock = self.params, self.fps, self.scores, self.clock
        reach = math.ceil(0.05 * params.max_shot_s * fps) + 1
        step = max(1, int(params.forced_step_s * fps))  # in nominal frame periods, as force_cuts steps
        sample_every = max(1, round(fps / params.sample_fps))  # nominal periods: every 7th frame at 29.97
        analysis = analysis_resizer(params, self.width, self.height)
        embed = FrameResizer(params.embed_size, params.embed_size)
        sample = FrameResizer(*self.sample_size)
        jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]

        cut_filter = CutFilter(params.threshold, params.min_scene_len, params.flash_filter)
        pending: dict[int, np.ndarray] = {}  # frames near possible boundaries of the open shot
        recent: deque = deque(maxlen=reach + 2)  # (index, av.VideoFrame); a forced cut is seen a frame late
        wanted_until = reach  # the first shot's 5% frame
        shot_start = forced_from = 0  # forced_from: the last detected cut, or possible forced cut after it
        piece_start = 0  # the open shot's first frame not handed out in a forced piece yet
        sampled = -1  # the last sampling period a frame was sampled in
        previous_hsv = None

        def keep_recent() -> None:
            for earlier, earlier_frame in recent:
                if earlier not in pending:
                    pending[earlier] = embed(earlier_frame)

        def pass_forced_cuts(index: int) -> None:
            """Move `forced_from` over the possible forced cuts before frame `index` (one falls on
            `forced_cut`'s frame, known once a frame lies more than a step after the piece's start),
            keeping the frames around each."""
            nonlocal forced_from, wanted_until
            while clock[index] > clock[forced_from] + step:
                forced_from = forced_cut(clock, forced_from, index + 1, step)
                wanted_until = max(wanted_until, forced_from + reach)
                keep_recent()

        def hand_out(end: int, final: bool) -> list[ShotFrames]:
            """The open shot's pieces from `piece_start` on, with their frames, as `force_cuts` cuts the
            shot if it ends at `end`: all of them if it does (`final`), else those that any later end
            gives too (all but the last)."""
            nonlocal shot_start, piece_start
            if not final and end <= piece_start:
                return []
            first = piece_start == shot_start
            cut_score = scores[shot_start] if first and shot_start else 0.0
            pieces = force_cuts([Shot(piece_start, end, not first, cut_score)], fps, params.max_shot_s,
                                params.forced_step_s, clock)
            if not final:
                pieces.pop()
                if not pieces:
                    return []
            resolved = [ShotFrames(piece, *(pending.get(i) for i in shot_embedding_frames(piece.start_frame,
                                                                                          piece.end_frame)))
                        for piece in pieces]
            piece_start = pieces[-1].end_frame
            if final:
                shot_start = piece_start
            for index in [i for i in pending if i < piece_start]:
                del pending[index]
            return resolved

        with self._container:
            for index, frame in enumerate(self._frames):
                time = clock.push(frame)
                hsv = cv2.cvtColor(analysis(frame), cv2.COLOR_RGB2HSV)
                score = 0.0 if previous_hsv is None else frame_score(previous_hsv, hsv)
                previous_hsv = hsv
                scores.append(score)
                if params.keep_frames:
                    recent.append((index, frame))
                    if score >= params.threshold:  # a possible cut: keep the frames around it
                        wanted_until = max(wanted_until, index + reach)
                        keep_recent()
                    pass_forced_cuts(index)
                    if index <= wanted_until and index not in pending:
                        pending[index] = embed(frame)
                    if time // sample_every > sampled:  # the first frame of a sampling period
                        sampled = int(time // sample_every)
                        yield Sample(index, cv2.imencode(".jpg", sample(frame)[:, :, ::-1], jpeg_params)[1].tobytes())
                cut = cut_filter.push(score)
                if cut is not None:
                    yield from hand_out(cut, final=True)
                    forced_from = cut
                    if params.keep_frames:
                        pass_forced_cuts(index)
                else:  # a cut is reported at most min_scene_len frames after it: none can come before
                    yield from hand_out(index + 1 - params.min_scene_len, final=False)

            keep_recent()  # the last shot's 95% frame lies near the end
            clock.close()
            if scores:
                yield from hand_out(len(scores), final=True)


def scan_video(source: str | BinaryIO, params: ScanParams) -> VideoScan:
    """The whole pass at once, every sample and every shot's frames kept."""
    stream = ScanStream(source, params)
    shots: list[Shot] = []
    embed_frames: dict[int, np.ndarray] = {}
    samples: dict[int, bytes] = {}
    for item in stream:
        if isinstance(item, Sample):
            samples[item.index] = item.jpeg
            continue
        shots.append(item.shot)
        wanted = shot_embedding_frames(item.shot.start_frame, item.shot.end_frame)
        for index, frame in zip(wanted, (item.first, item.last)):
            if frame is not None:
                embed_frames[index] = frame
    return VideoScan(stream.fps, stream.frame_count, stream.width, stream.height, np.array(stream.scores), shots,
                     embed_frames, samples, stream.sample_size, stream.clock)

"""Shot detection core: PySceneDetect's ContentDetector, vectorised over a whole video. No Spark.

`content_scores` is ContentDetector's frame score with its default weights (hue, saturation,
luma 1, edges 0): the mean absolute HSV difference of each frame to the previous one, averaged over
the three channels (OpenCV HSV, H in 0..179). `detect_cuts` turns those scores into cut frames with
ContentDetector's minimum-scene-length filter in one of its two modes (`FLASH_FILTERS`):

- "suppress": PySceneDetect before 0.6.4, which built Panda-70M (`ContentDetector.process_frame`
  cut at a frame scoring at or above the threshold once `min_scene_len` frames passed since the
  last cut). 0.6.4+ keeps it as `FlashFilter.Mode.SUPPRESS`, which returns the same cuts.
- "merge": 0.6.4+'s default, `FlashFilter.Mode.MERGE` (cuts closer than `min_scene_len` merge).

Given frames at the same analysis size, the cut frames are the ones `scenedetect.detect(path,
ContentDetector(threshold, min_scene_len, filter_mode=...), start_in_scene=True)` returns.
`scenedetect_size` is the analysis size PySceneDetect 0.6 picks for a frame size (auto-downscale).
`force_cuts` then splits shots longer than `max_s` every `step_s` (Panda-70M: 7 s / 5 s).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np

from panda_spark.split.stitching import INDEX_CLOCK

FLASH_FILTERS = ("suppress", "merge")
FlashFilterMode = Literal["suppress", "merge"]
SCENEDETECT_MIN_WIDTH = 256  # scenedetect.scene_manager.DEFAULT_MIN_WIDTH


def scenedetect_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) PySceneDetect 0.6's auto-downscale scores a width×height frame at: an integer
    factor `width // 256` (1 below 256 px), each side divided by it and rounded; it resizes with
    OpenCV's bilinear interpolation (cv2.INTER_LINEAR; 0.6.0–0.6.1 took every factor-th pixel).
    0.7 divides by the float `max(width, height) / 256` instead (always 256 px on the long side):
    the same size for 1280×720, Panda-70M's source videos, and for any landscape width 256·k."""
    factor = max(1, width // SCENEDETECT_MIN_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


def to_hsv(frames_rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB uint8 → (N, H, W, 3) OpenCV HSV uint8, as ContentDetector converts frames."""
    flat = frames_rgb.reshape(-1, frames_rgb.shape[-2], 3)  # cv2 takes one 2-D image: stack rows
    return cv2.cvtColor(np.ascontiguousarray(flat), cv2.COLOR_RGB2HSV).reshape(frames_rgb.shape)


def content_scores(frames_hsv: np.ndarray) -> np.ndarray:
    """Score per frame (first frame 0.0): mean over H, S, V of the mean |Δ| to the previous frame."""
    scores = np.zeros(len(frames_hsv), dtype=np.float64)
    for i in range(1, len(frames_hsv)):
        scores[i] = frame_score(frames_hsv[i - 1], frames_hsv[i])
    return scores


def frame_score(previous_hsv: np.ndarray, hsv: np.ndarray) -> float:
    """ContentDetector's score between two HSV frames: (mean|ΔH| + mean|ΔS| + mean|ΔV|) / 3."""
    return sum(cv2.sumElems(cv2.absdiff(hsv, previous_hsv))[:3]) / (3.0 * hsv.shape[0] * hsv.shape[1])


class CutFilter:
    """ContentDetector's minimum-scene-length filter, fed one frame score at a time.

    A frame at or above `threshold` is a cut when at least `min_scene_len` frames passed since the
    last cut ("suppress") or since the last frame above threshold ("merge"); the first frame counts
    as both. "suppress" drops the others at once. "merge" joins cuts closer than that: the run ends
    at its last frame above threshold once scores stay below for `min_scene_len` frames, so a cut
    is reported at most `min_scene_len` frames after the frame it names.
    """

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 15, mode: FlashFilterMode = "suppress"):
        if mode not in FLASH_FILTERS:
            raise ValueError(f"unknown flash filter {mode!r}; known: {list(FLASH_FILTERS)}")
        self.threshold, self.min_scene_len, self.mode = threshold, min_scene_len, mode
        self._frame = -1
        self._last_above = 0  # suppress: the last cut
        self._merge_enabled = self._merge_triggered = False
        self._merge_start = 0

    def push(self, score: float) -> int | None:
        """Score of the next frame → the frame index of a cut decided now, if any."""
        self._frame += 1
        frame, above = self._frame, score >= self.threshold
        min_length_met = frame - self._last_above >= self.min_scene_len
        if self.mode == "suppress":
            if above and min_length_met:
                self._last_above = frame
                return frame
            return None
        if above:
            self._last_above = frame
        if self._merge_triggered:
            if min_length_met and not above and self._last_above - self._merge_start >= self.min_scene_len:
                self._merge_triggered = False
                return self._last_above
            return None
        if not above:
            return None
        if min_length_met:
            self._merge_enabled = True
            return frame
        if self._merge_enabled:
            self._merge_triggered, self._merge_start = True, frame
        return None


def detect_cuts(scores: np.ndarray, threshold: float = 27.0, min_scene_len: int = 15,
                mode: FlashFilterMode = "suppress") -> list[int]:
    """Frame indices where a new shot starts, as `scenedetect.detect(..., start_in_scene=True)`."""
    cut_filter = CutFilter(threshold, min_scene_len, mode)
    cuts = (cut_filter.push(score) for score in scores)
    return sorted({c for c in cuts if c is not None})


@dataclass(frozen=True)
class Shot:
    start_frame: int  # first frame
    end_frame: int  # one past the last frame
    forced: bool  # starts at a forced (time-based) cut rather than a detected one
    cut_score: float  # content score at start_frame (0.0 for the first shot and forced cuts)


def shots_from_cuts(cuts: list[int], frame_count: int, scores: np.ndarray) -> list[Shot]:
    bounds = [0, *[c for c in cuts if 0 < c < frame_count], frame_count]
    return [Shot(a, b, False, float(scores[a]) if a else 0.0) for a, b in zip(bounds, bounds[1:]) if b > a]


def force_cuts(shots: list[Shot], fps: float, max_s: float = 7.0, step_s: float = 5.0,
               clock: Sequence[float] | None = None) -> list[Shot]:
    """Cut every shot longer than `max_s` every `step_s` seconds, recursively, as Panda-70M does
    for fades and unedited footage the detector misses: a 13 s shot → 5 s + 8 s → 5 + 5 + 3 s.

    Lengths are presentation times: `clock[i]` is frame i's time in nominal frame periods (1/fps s;
    `FrameClock`, its entry past the last frame the video's end), None for constant-rate video
    (`INDEX_CLOCK`: frame i at i). A piece ends on `forced_cut`'s frame."""
    # int(), not round(): the released code steps int(5 * fps) frames (149 at 29.97 fps)
    max_frames, step = max_s * fps, max(1, int(step_s * fps))
    clock = INDEX_CLOCK if clock is None else clock
    out: list[Shot] = []
    for shot in shots:
        start, first = shot.start_frame, True
        while clock[shot.end_frame] - clock[start] > max_frames:
            cut = forced_cut(clock, start, shot.end_frame, step)
            out.append(Shot(start, cut, shot.forced if first else True, shot.cut_score if first else 0.0))
            start, first = cut, False
        out.append(Shot(start, shot.end_frame, shot.forced if first else True, shot.cut_score if first else 0.0))
    return out


def forced_cut(clock: Sequence[float], start: int, end: int, step: float) -> int:
    """The frame a forced cut after a piece starting at frame `start` falls on: the last frame before
    `end` at most `step` periods after it (`start + step` at a constant rate), at least the next one."""
    return max(start + 1, bisect.bisect_right(clock, clock[start] + step, start + 1, end) - 1)

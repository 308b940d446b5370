"""Shot detection core: PySceneDetect's ContentDetector, vectorised over a whole video. No Spark.

`content_scores` is ContentDetector's frame score with its default weights (hue, saturation,
luma 1, edges 0): the mean absolute HSV difference of each frame to the previous one, averaged over
the three channels (OpenCV HSV, H in 0..179). `detect_cuts` is its FlashFilter in MERGE mode over
those scores, so the cut frames are the ones `scenedetect.detect(path, ContentDetector(threshold,
min_scene_len), start_in_scene=True)` returns, given frames at the same analysis size.
`force_cuts` then splits shots longer than `max_s` every `step_s` (Panda-70M: 7 s / 5 s).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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
    """PySceneDetect's FlashFilter in MERGE mode, fed one frame score at a time.

    A frame at or above `threshold` is a cut when at least `min_scene_len` frames passed since the
    last frame above it (the first frame counts as one). Cuts closer than that are merged: the run
    ends at its last frame above threshold once scores stay below for `min_scene_len` frames, so
    a cut is reported at most `min_scene_len` frames after the frame it names.
    """

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 15):
        self.threshold, self.min_scene_len = threshold, min_scene_len
        self._frame = -1
        self._last_above = 0
        self._merge_enabled = self._merge_triggered = False
        self._merge_start = 0

    def push(self, score: float) -> int | None:
        """Score of the next frame → the frame index of a cut decided now, if any."""
        self._frame += 1
        frame, above = self._frame, score >= self.threshold
        min_length_met = frame - self._last_above >= self.min_scene_len
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


def detect_cuts(scores: np.ndarray, threshold: float = 27.0, min_scene_len: int = 15) -> list[int]:
    """Frame indices where a new shot starts, as `scenedetect.detect(..., start_in_scene=True)`."""
    cut_filter = CutFilter(threshold, min_scene_len)
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


def force_cuts(shots: list[Shot], fps: float, max_s: float = 7.0, step_s: float = 5.0) -> list[Shot]:
    """Cut every shot longer than `max_s` every `step_s` seconds, recursively, as Panda-70M does
    for fades and unedited footage the detector misses: a 13 s shot → 5 s + 8 s → 5 + 5 + 3 s."""
    # int(), not round(): the released code steps int(5 * fps) frames (149 at 29.97 fps)
    max_frames, step = max_s * fps, max(1, int(step_s * fps))
    out: list[Shot] = []
    for shot in shots:
        start, first = shot.start_frame, True
        while shot.end_frame - start > max_frames:
            out.append(Shot(start, start + step, shot.forced if first else True, shot.cut_score if first else 0.0))
            start, first = start + step, False
        out.append(Shot(start, shot.end_frame, shot.forced if first else True, shot.cut_score if first else 0.0))
    return out

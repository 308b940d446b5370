"""Panda-70M stage-1 event stitching rules (`splitting/event_stitching.py`), numpy only. No Spark.

Input: the shots of one video as half-open frame ranges `[start, end)`, in order, and for each
shot the embeddings of two of its frames, picked by `shot_embedding_frames` (the frames at 5 % and
95 % of the shot). `feats_first` / `feats_last` are `(n_shots, dim)` arrays, already
L2-normalised by the caller (ImageBind vision embeddings in Panda-70M); `readable` says whether both
frames of a shot could be decoded (None: all could). Output: `stitch_shots` returns the kept
`Event`s, in video order, with their final frame range and mean embedding.

The steps, each a function named after the Panda-70M one it reproduces:

1. `shot_embedding_frames`   — the two frame indices of `extract_cutscene_feature`.
2. `remove_transitions`      — `verify_cutscene`: drop shots with an unreadable frame, or whose two
                               embeddings are further apart than `transition_threshold` (a fade or
                               wipe inside the shot).
3. `stitch`                  — `cutscene_stitching`: join contiguous shots whose boundary frames are
                               within `stitch_threshold` into one event.
4. `verify_events`           — `verify_event`: drop short, still and redundant events, keep the first
                               `max_len_s` seconds, trim `trim_fraction` off both ends.

All distances are L2 distances between float32 embeddings, and every comparison, `int()`
truncation and threshold direction (`>` vs `<`) is the released code's. `PRESETS` holds the
`verify_cutscene` / `cutscene_stitching` / `verify_event` arguments of the released
`splitting/event_stitching.py` (transition 1.0 and stitch 0.6 in both):

- "panda70m": its commented-out line 200 — min 2.5 s, max 60 s, redundancy 0.3, trim 0.1,
  still 0.15 — which the splitting README names as the settings that collected Panda-70M.
- "released_code": its active line 199 — min 2.0 s, max 1200 s, redundancy 0, trim 0, still 0.15.
"""
from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class StitchParams:
    transition_threshold: float  # max L2 between a shot's two frames (else: a transition, dropped)
    stitch_threshold: float      # max L2 across a shot boundary to extend the event
    min_len_s: float             # events shorter than this are dropped
    max_len_s: float             # events are cut to their first max_len_s seconds
    redundancy_threshold: float  # drop an event whose mean is closer than this to a kept one's
    trim_fraction: float         # fraction of the (cut) event trimmed off each end
    still_threshold: float       # drop an event whose first and last frames are closer than this


PRESETS: dict[str, StitchParams] = {
    "panda70m": StitchParams(1.0, 0.6, 2.5, 60.0, 0.3, 0.1, 0.15),
    "released_code": StitchParams(1.0, 0.6, 2.0, 1200.0, 0.0, 0.0, 0.15),
}


def stitch_params(preset: str, **overrides: float) -> StitchParams:
    """The named preset with some fields replaced; ValueError on an unknown preset or field."""
    if preset not in PRESETS:
        raise ValueError(f"unknown stitching preset {preset!r}; known: {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(StitchParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown stitching parameter(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


@dataclass(frozen=True)
class Event:
    start_frame: int                  # after max-length cut and trimming
    end_frame: int                    # exclusive
    shot_indices: tuple[int, ...]     # indices into the input shots list
    embedding: np.ndarray = field(compare=False)  # mean of the event's frame embeddings (float32)


@dataclass
class StitchedEvent:
    """An event as `stitch` builds it, before `verify_events`."""
    start: int
    end: int
    shot_indices: list[int]
    frame_feats: list[np.ndarray]  # [shot0 first, shot0 last, shot1 first, shot1 last, ...]


class IndexClock:
    """Frame times of a constant-rate video, in frame periods: frame i at i. (A variable-rate video's
    are its presentation times, `panda_spark.video.decode.FrameClock`.)"""

    def __getitem__(self, index: int) -> float:
        return float(index)


INDEX_CLOCK = IndexClock()


def _l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(a - b, dtype=np.float32), dtype=np.float32)))


def shot_embedding_frames(start: int, end: int) -> tuple[int, int]:
    """Frame indices of the two embedded frames of shot [start, end): 5 % and 95 % into it."""
    return int(0.95 * start + 0.05 * (end - 1)), int(0.05 * start + 0.95 * (end - 1))


def remove_transitions(shots: Sequence[tuple[int, int]], feats_first: np.ndarray, feats_last: np.ndarray,
                       readable: np.ndarray | None, transition_threshold: float) -> list[int]:
    """Indices of the shots kept: both frames readable and L2(first, last) <= transition_threshold.

    `readable` is (n_shots,) or (n_shots, 2) bool (per frame; a shot needs both), or None.
    """
    n = len(shots)
    ok = np.ones(n, dtype=bool) if readable is None else np.asarray(readable, dtype=bool).reshape(n, -1).all(axis=1)
    return [i for i in range(n) if ok[i] and not _l2(feats_first[i], feats_last[i]) > transition_threshold]


def stitch(shots: Sequence[tuple[int, int]], feats_first: np.ndarray, feats_last: np.ndarray,
           stitch_threshold: float, kept: Sequence[int] | None = None) -> list[StitchedEvent]:
    """Group the shots `kept` (indices into `shots`, in order; None: all) into events.

    A shot extends the current event when it starts where the event ends and its first frame is
    within `stitch_threshold` of the event's last frame; otherwise it starts a new event.
    """
    events: list[StitchedEvent] = []
    for i in range(len(shots)) if kept is None else kept:
        start, end = int(shots[i][0]), int(shots[i][1])
        first, last = feats_first[i], feats_last[i]
        # A gap (a shot dropped as a transition) always separates events.
        if (not events or start != events[-1].end
                or _l2(events[-1].frame_feats[-1], first) > stitch_threshold):
            events.append(StitchedEvent(start, end, [i], [first, last]))
        else:
            ev = events[-1]
            ev.end = end
            ev.shot_indices.append(i)
            ev.frame_feats += [first, last]
    return events


def verify_events(events: Sequence[StitchedEvent], fps: float, min_len_s: float, max_len_s: float,
                  redundancy_threshold: float, trim_fraction: float, still_threshold: float,
                  clock: Sequence[float] | None = None, drops: Counter | None = None) -> list[Event]:
    """Panda-70M's `verify_event`: filter, cut and trim the stitched events, in order.

    Lengths are presentation times: `clock[i]` is frame i's time in nominal frame periods (1/fps s;
    its entry past the last frame, the video's end), None for constant-rate video (`INDEX_CLOCK`):
    the max-length cut ends on the last frame within `max_len_s`, trimming moves each end inwards to
    the first frame at least the trim away, which at a constant rate are the released code's frame
    counts. `drops`, when given, counts the shots of the events dropped, by reason (short, still,
    redundant). The returned ranges may be empty (end <= start) only for degenerate parameters;
    `stitch_shots` drops those, while their means still count for the redundancy check here,
    as in the released code.
    """
    clock = INDEX_CLOCK if clock is None else clock
    drops = Counter() if drops is None else drops
    kept: list[Event] = []
    kept_means: list[np.ndarray] = []
    for ev in events:
        start, end = ev.start, ev.end
        if clock[end] - clock[start] < min_len_s * fps:
            drops["short"] += len(ev.shot_indices)
            continue
        if _l2(ev.frame_feats[0], ev.frame_feats[-1]) < still_threshold:
            drops["still"] += len(ev.shot_indices)
            continue
        mean = np.stack(ev.frame_feats).astype(np.float32).mean(axis=0, dtype=np.float32)
        if any(_l2(m, mean) < redundancy_threshold for m in kept_means):
            drops["redundant"] += len(ev.shot_indices)
            continue
        end = bisect.bisect_right(clock, clock[start] + int(max_len_s * fps), start, end + 1) - 1
        trim = int(trim_fraction * (clock[end] - clock[start]))
        start, end = (bisect.bisect_left(clock, clock[start] + trim, start, end + 1),
                      bisect.bisect_right(clock, clock[end] - trim, start, end + 1) - 1)
        kept.append(Event(start, end, tuple(ev.shot_indices), mean))
        kept_means.append(mean)
    return kept


def stitch_shots(shots: list[tuple[int, int]], feats_first: np.ndarray, feats_last: np.ndarray,
                 readable: np.ndarray | None, fps: float, params: StitchParams,
                 clock: Sequence[float] | None = None, drops: Counter | None = None) -> list[Event]:
    """Shots of one video → its events: `remove_transitions`, `stitch`, `verify_events` (`clock`:
    as there). `drops`, when given, counts the shots dropped, by reason: transition (with
    unreadable frames), then short, still, redundant as `verify_events`, and empty (trimmed away)."""
    feats_first = np.asarray(feats_first, dtype=np.float32)
    feats_last = np.asarray(feats_last, dtype=np.float32)
    n = len(shots)
    if feats_first.ndim != 2 or feats_first.shape[0] != n or feats_last.shape != feats_first.shape:
        raise ValueError(f"feats_first {feats_first.shape} and feats_last {feats_last.shape} "
                         f"must both be ({n}, dim) for {n} shots")
    drops = Counter() if drops is None else drops
    kept = remove_transitions(shots, feats_first, feats_last, readable, params.transition_threshold)
    drops["transition"] += n - len(kept)
    stitched = stitch(shots, feats_first, feats_last, params.stitch_threshold, kept)
    events = verify_events(stitched, fps, params.min_len_s, params.max_len_s, params.redundancy_threshold,
                           params.trim_fraction, params.still_threshold, clock, drops)
    drops["empty"] += sum(len(e.shot_indices) for e in events if e.end_frame <= e.start_frame)
    return [e for e in events if e.end_frame > e.start_frame]

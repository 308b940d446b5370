"""Panda-70M stitching rules on hand-made 2-D/3-D embeddings.

Most embeddings are unit vectors on the circle, `u(θ)`, so the L2 distance between `u(a)` and
`u(b)` is 2·sin(|a-b|/2): 1.0 at 60°, 0.6 at ≈34.9°, 0.3 at ≈17.3°, 0.15 at ≈8.6°.
"""
import dataclasses

import numpy as np
import pytest

from panda_spark.split.stitching import (
    PRESETS, Event, StitchedEvent, StitchParams, remove_transitions, shot_embedding_frames, stitch,
    stitch_params, stitch_shots, verify_events,
)

RELEASED = PRESETS["released_code"]
PANDA = PRESETS["panda70m"]


def u(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([np.cos(t), np.sin(t)], dtype=np.float32)


def feats(angles: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) embedding arrays from each shot's (first angle, last angle)."""
    return np.stack([u(a) for a, _ in angles]), np.stack([u(b) for _, b in angles])


def frames(events: list[Event]) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(e.start_frame, e.end_frame, e.shot_indices) for e in events]


# 1. frame indices

@pytest.mark.parametrize("shot, expected", [
    ((0, 100), (4, 94)),
    ((149, 298), (156, 289)),   # 0.95*149 + 0.05*297 = 156.4; 0.05*149 + 0.95*297 = 289.6
    ((100, 121), (101, 119)),
    ((10, 11), (10, 10)),       # one-frame shot: both frames are the same
])
def test_shot_embedding_frames(shot, expected):
    assert shot_embedding_frames(*shot) == expected


# 2. transitions

def test_remove_transitions_threshold_and_unreadable():
    shots = [(0, 10), (10, 20), (20, 30), (30, 40)]
    first, last = feats([(0, 59), (0, 61), (0, 0), (0, 10)])  # 0.985, 1.015, 0, 0.174
    readable = np.array([True, True, False, True])
    assert remove_transitions(shots, first, last, readable, 1.0) == [0, 3]
    assert remove_transitions(shots, first, last, None, 1.0) == [0, 2, 3]
    per_frame = np.array([[True, True], [True, True], [True, True], [True, False]])
    assert remove_transitions(shots, first, last, per_frame, 1.0) == [0, 2]


# 3. stitching

def test_stitch_joins_close_boundaries_and_splits_far_ones():
    shots = [(0, 10), (10, 20), (20, 30), (30, 40)]
    # boundaries: 0→30° (0.518, join), 30→70° (0.684, split), 70→100° (0.518, join)
    first, last = feats([(0, 0), (30, 30), (70, 70), (100, 100)])
    events = stitch(shots, first, last, 0.6)
    assert [(e.start, e.end, e.shot_indices) for e in events] == [(0, 20, [0, 1]), (20, 40, [2, 3])]
    ev = events[0]
    assert len(ev.frame_feats) == 4
    for got, want in zip(ev.frame_feats, [first[0], last[0], first[1], last[1]]):
        assert np.array_equal(got, want)


def test_stitch_compares_with_last_frame_of_event_not_its_first():
    shots = [(0, 10), (10, 20), (20, 30)]
    first, last = feats([(0, 0), (30, 60), (90, 90)])  # each boundary 30°; 0° vs 90° is 1.414 apart
    events = stitch(shots, first, last, 0.6)
    assert [(e.start, e.end, e.shot_indices) for e in events] == [(0, 30, [0, 1, 2])]


def test_stitch_splits_at_gap_left_by_dropped_shot():
    shots = [(0, 10), (10, 20), (20, 30)]
    first, last = feats([(0, 0), (0, 0), (0, 0)])
    events = stitch(shots, first, last, 0.6, kept=[0, 2])
    assert [(e.start, e.end, e.shot_indices) for e in events] == [(0, 10, [0]), (20, 30, [2])]


def test_stitch_shots_transition_shot_splits_event():
    shots = [(0, 60), (60, 120), (120, 180)]
    first, last = feats([(0, 20), (20, 90), (20, 40)])  # middle shot: 70° inside → transition
    events = stitch_shots(shots, first, last, None, 25.0, RELEASED)
    assert frames(events) == [(0, 60, (0,)), (120, 180, (2,))]
    # the same shots with a calm middle shot form one event
    first[1], last[1] = u(20), u(20)
    assert frames(stitch_shots(shots, first, last, None, 25.0, RELEASED)) == [(0, 180, (0, 1, 2))]


# 4. event verification

def test_min_length_boundary():
    first, last = feats([(0, 20)])
    assert frames(stitch_shots([(0, 50)], first, last, None, 25.0, RELEASED)) == [(0, 50, (0,))]
    assert stitch_shots([(0, 49)], first, last, None, 25.0, RELEASED) == []


def test_still_event_dropped():
    shot = [(0, 100)]
    assert stitch_shots(shot, *feats([(0, 0)]), None, 25.0, RELEASED) == []
    assert stitch_shots(shot, *feats([(0, 8)]), None, 25.0, RELEASED) == []           # 0.1395
    assert frames(stitch_shots(shot, *feats([(0, 9)]), None, 25.0, RELEASED)) == [(0, 100, (0,))]  # 0.157
    # still is judged on the event's first and last frames, not per shot
    two = [(0, 50), (50, 100)]
    assert stitch_shots(two, *feats([(0, 20), (20, 0)]), None, 25.0, RELEASED) == []


def test_redundancy_only_with_panda70m_preset():
    shots = [(0, 100), (200, 300), (400, 500), (600, 700)]
    # events 0 and 1 identical; 2 far away; 3 close to 2 (mean 5° apart: 0.087 < 0.3)
    angles = [(0, 20), (0, 20), (90, 110), (95, 115)]
    assert frames(stitch_shots(shots, *feats(angles), None, 10.0, RELEASED)) == [
        (0, 100, (0,)), (200, 300, (1,)), (400, 500, (2,)), (600, 700, (3,))]
    assert frames(stitch_shots(shots, *feats(angles), None, 10.0, PANDA)) == [
        (10, 90, (0,)), (410, 490, (2,))]


def test_redundancy_ignores_dropped_events():
    shots = [(0, 100), (200, 300)]
    angles = [(0, 5), (0, 20)]  # first event still (dropped); second has a close mean but is kept
    assert frames(stitch_shots(shots, *feats(angles), None, 10.0, PANDA)) == [(210, 290, (1,))]


def test_max_length_and_trim_panda70m():
    first, last = feats([(0, 20)])
    shot = [(5, 1005)]  # 100 s at 10 fps
    # panda70m: cut to 60 s → [5, 605); trim int(0.1 * 600) = 60 each side
    assert frames(stitch_shots(shot, first, last, None, 10.0, PANDA)) == [(65, 545, (0,))]
    # released code: 1200 s cap, no trim
    assert frames(stitch_shots(shot, first, last, None, 10.0, RELEASED)) == [(5, 1005, (0,))]


def test_trim_truncates():
    # 25 frames at 10 fps, just the 2.5 s minimum: trim int(0.1 * 25) = 2
    params = stitch_params("panda70m")
    assert frames(stitch_shots([(3, 28)], *feats([(0, 20)]), None, 10.0, params)) == [(5, 26, (0,))]


def test_event_embedding_is_mean_of_all_frames_not_renormalised():
    # dyadic (non-unit) vectors so the float32 mean is exact
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.75, 0.5, 0.0], dtype=np.float32)   # |a - b| = 0.559
    c = np.array([0.5, 0.75, 0.0], dtype=np.float32)   # |b - c| = 0.354, |a - c| = 0.901
    (ev,) = stitch_shots([(0, 50), (50, 100)], np.stack([a, b]), np.stack([b, c]), None, 25.0, RELEASED)
    assert (ev.start_frame, ev.end_frame, ev.shot_indices) == (0, 100, (0, 1))
    assert ev.embedding.dtype == np.float32
    assert ev.embedding.tolist() == [0.75, 0.4375, 0.0]  # (a + b + b + c) / 4


def test_verify_events_direct():
    ev = StitchedEvent(10, 70, [0, 1], [u(0), u(10), u(10), u(30)])
    (out,) = verify_events([ev], 30.0, 2.0, 1.0, 0.0, 0.25, 0.15)
    # cut to int(1.0 * 30) = 30 frames → [10, 40); trim int(0.25 * 30) = 7
    assert (out.start_frame, out.end_frame, out.shot_indices) == (17, 33, (0, 1))


def test_empty_input_and_shape_check():
    empty = np.zeros((0, 2), dtype=np.float32)
    assert stitch_shots([], empty, empty, None, 25.0, RELEASED) == []
    with pytest.raises(ValueError, match=r"\(2, dim\)"):
        stitch_shots([(0, 10), (10, 20)], np.zeros((1, 2)), np.zeros((1, 2)), None, 25.0, RELEASED)


# 5. presets

def test_presets():
    assert RELEASED == StitchParams(transition_threshold=1.0, stitch_threshold=0.6, min_len_s=2.0,
                                    max_len_s=1200.0, redundancy_threshold=0.0, trim_fraction=0.0,
                                    still_threshold=0.15)
    # event_stitching.py line 200, "the same parameters as we collect Panda-70M" (splitting/README.md)
    assert PANDA == StitchParams(transition_threshold=1.0, stitch_threshold=0.6, min_len_s=2.5,
                                 max_len_s=60.0, redundancy_threshold=0.3, trim_fraction=0.1,
                                 still_threshold=0.15)
    assert sorted(PRESETS) == ["panda70m", "released_code"]
    assert stitch_params("panda70m") == PANDA
    assert stitch_params("released_code", max_len_s=60.0) == StitchParams(1.0, 0.6, 2.0, 60.0, 0.0, 0.0, 0.15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RELEASED.min_len_s = 1.0


def test_min_length_is_2_5_s_for_panda70m_and_2_s_for_the_released_code():
    one_shot = feats([(0, 20)])
    for n_frames, kept_by_panda in ((24, False), (25, True)):
        assert bool(stitch_shots([(0, n_frames)], *one_shot, None, 10.0, PANDA)) is kept_by_panda
    assert frames(stitch_shots([(0, 20)], *one_shot, None, 10.0, RELEASED)) == [(0, 20, (0,))]
    assert stitch_shots([(0, 19)], *one_shot, None, 10.0, RELEASED) == []


def test_stitch_params_errors():
    with pytest.raises(ValueError, match="'paper'.*'panda70m', 'released_code'"):
        stitch_params("paper")  # dropped: it was panda70m with min 2.0 s
    with pytest.raises(ValueError, match="min_len"):
        stitch_params("panda70m", min_len=3.0)

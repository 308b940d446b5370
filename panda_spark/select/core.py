"""Selection core: a clip's scored candidates → its gold caption; the pandas adapter. No Spark.

Contract of :func:`select_batch` (the `mapInPandas` function of the select stage), per clip:
in `clip_id`, `candidates` (teacher, teacher_version, caption; sorted by teacher),
`candidates_hash`, `frames` (clip_frames rows: frame_idx, role, jpeg; may be empty for a scorer
that needs none) → out one RESULT_SCHEMA row: the best-scoring candidate, every candidate's score,
and `good_match` (best score > threshold; None without a threshold), or an error row.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Iterator

import numpy as np
import pandas as pd

from panda_spark.errors import InputError
from panda_spark.runs import process_in_halves
from panda_spark.select.scorers import Scorer, ScorerSpec, ScoringInput, load_scorer
from panda_spark.video.frames import uniform_frames

RESULT_SCHEMA = (
    "clip_id STRING, caption STRING, teacher STRING, teacher_version STRING, matching_score DOUBLE, "
    "candidate_teachers ARRAY<STRING>, candidate_score_values ARRAY<DOUBLE>, good_match BOOLEAN, "
    "candidates_hash STRING, status STRING, error_class STRING, message STRING"
)
RESULT_COLUMNS = [c.split()[0] for c in RESULT_SCHEMA.split(", ")]


class NoCandidates(InputError):
    error_class = "NoCandidates"


@dataclass
class Candidate:
    teacher: str
    teacher_version: str
    caption: str


@dataclass
class Selection:
    clip_id: str
    best: Candidate
    matching_score: float
    scores: dict[str, float]  # teacher → score
    good_match: bool | None  # None: no threshold to grade by (not calibrated yet)


def select_best(clip_id: str, candidates: list[Candidate], scores: np.ndarray, threshold: float | None) -> Selection:
    """The highest-scoring candidate (the first one on a tie, so reruns pick the same)."""
    if len(candidates) != len(scores) or not candidates:
        raise ValueError(f"clip {clip_id}: {len(candidates)} candidates but {len(scores)} scores")
    best = int(np.argmax(scores))
    return Selection(clip_id, candidates[best], float(scores[best]),
                     {c.teacher: float(s) for c, s in zip(candidates, scores)},
                     None if threshold is None else bool(scores[best] > threshold))


def select_batch(batches: Iterator[pd.DataFrame], spec: ScorerSpec, threshold: float | None) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter (see the module docstring); the scorer loads once per Python worker."""
    scorer = load_scorer(spec)
    for batch in batches:
        rows, ready = [], []
        for clip in batch.to_dict("records"):
            try:
                ready.append(prepare_clip(clip, spec))
            except InputError as exc:
                rows.append(_error_row(clip["clip_id"], clip["candidates_hash"], exc.error_class, exc.message))
        for start in range(0, len(ready), spec.batch_size):
            rows += process_in_halves(
                ready[start:start + spec.batch_size], partial(_select, scorer, threshold=threshold),
                lambda item, exc: _error_row(item[0].clip_id, item[2], type(exc).__name__, str(exc)[:2000]),
                what="selector batch")
        yield pd.DataFrame(rows, columns=RESULT_COLUMNS)


ReadyClip = tuple[ScoringInput, list[Candidate], str]  # scorer input, candidates, candidates_hash


def prepare_clip(clip: dict, spec: ScorerSpec) -> ReadyClip:
    """One input row → what the scorer needs; NoCandidates / MissingFrames for a clip it cannot score."""
    candidates = [Candidate(c["teacher"], c["teacher_version"], c["caption"])
                  for c in (clip["candidates"] if clip["candidates"] is not None else [])]
    if not candidates:
        raise NoCandidates("clip has no usable candidate caption (every teacher's caption is empty or degenerate)")
    frames = list(clip["frames"]) if clip.get("frames") is not None else []
    pixels = uniform_frames(frames, spec.num_frames) if spec.needs_frames else []
    return ScoringInput(clip["clip_id"], pixels, [c.caption for c in candidates]), candidates, clip["candidates_hash"]


def _select(scorer: Scorer, ready: list[ReadyClip], threshold: float | None) -> list[dict]:
    scores = scorer.score([item for item, _, _ in ready])
    rows = []
    for (item, candidates, candidates_hash), clip_scores in zip(ready, scores):
        chosen = select_best(item.clip_id, candidates, clip_scores, threshold)
        rows.append({"clip_id": item.clip_id, "caption": chosen.best.caption, "teacher": chosen.best.teacher,
                     "teacher_version": chosen.best.teacher_version, "matching_score": chosen.matching_score,
                     "candidate_teachers": list(chosen.scores), "candidate_score_values": list(chosen.scores.values()),
                     "good_match": chosen.good_match, "candidates_hash": candidates_hash, "status": "selected",
                     "error_class": None, "message": None})
    return rows


def _error_row(clip_id: str, candidates_hash: str, error_class: str, message: str) -> dict:
    return {**{c: None for c in RESULT_COLUMNS}, "clip_id": clip_id, "candidates_hash": candidates_hash,
            "status": "error", "error_class": error_class, "message": message}

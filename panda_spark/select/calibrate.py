"""The good-match threshold from human labels: the score that best separates annotated-best
candidates from the rest. No Spark.

`select.good_match_threshold` (0.43) is on the scale of the paper's UMT selector; a CLIP cosine or
a SigLIP match probability means something else at 0.43. Calibration reads the selection labels
(a human's pick of each labelled clip's best candidate) and the selector's score of every
candidate of those clips: a candidate picked by an annotator is a positive, every other candidate
of the clip a negative. Each threshold t between two neighbouring distinct scores (score > t is a
good match, as select grades) gives a true-positive rate (picked candidates above t) and a
false-positive rate (others above t); the threshold chosen maximises

- ``youden`` (default): Youden's J = TPR − FPR, the point of the ROC curve furthest above chance,
  independent of how many candidates a clip has;
- ``f1``: the F1 of "above t" as a detector of the picked candidates (weighs precision, so it
  depends on the positive share).

Ties go to the lowest such threshold (more clips graded good). `threshold_curve` returns the whole
curve, which the Spark wrapper logs to MLflow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

OBJECTIVES = ("youden", "f1")
# The `calibrations` row select reads when select.good_match_threshold is empty.
GOOD_MATCH = "select.good_match_threshold"
# Panda-70M's threshold on its own (UMT) scores: the scale of published matching scores.
PAPER_GOOD_MATCH_THRESHOLD = 0.43
CURVE_COLUMNS = ["threshold", "tp", "fp", "fn", "tn", "tpr", "fpr", "precision", "f1", "youden_j"]


@dataclass
class ThresholdFit:
    threshold: float
    objective: str
    metrics: dict[str, float]  # the chosen row's tpr, fpr, precision, f1, youden_j, plus auc and counts
    curve: pd.DataFrame  # CURVE_COLUMNS, one row per candidate threshold, ascending


def labelled_scores(clips: Iterable[tuple[dict[str, float], set[str]]]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_picked) over every candidate of the labelled clips: each clip is its candidates'
    scores (teacher → score) and the teachers its annotators picked."""
    scores, picked = [], []
    for candidate_scores, chosen in clips:
        for teacher, score in candidate_scores.items():
            scores.append(float(score))
            picked.append(teacher in chosen)
    return np.array(scores, np.float64), np.array(picked, bool)


def threshold_curve(scores: np.ndarray, positive: np.ndarray) -> pd.DataFrame:
    """TP/FP/FN/TN and rates of `score > t` for each t midway between neighbouring distinct scores."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    distinct = np.unique(scores)
    thresholds = (distinct[:-1] + distinct[1:]) / 2
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    n_pos, n_neg = len(pos), len(neg)
    tp = n_pos - np.searchsorted(pos, thresholds, side="right")
    fp = n_neg - np.searchsorted(neg, thresholds, side="right")
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / max(n_pos, 1), fp / max(n_neg, 1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return pd.DataFrame({"threshold": thresholds, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "tpr": tpr, "fpr": fpr,
                         "precision": precision, "f1": f1, "youden_j": tpr - fpr}, columns=CURVE_COLUMNS)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a picked candidate outscores another one), ties counting half (Mann–Whitney U)."""
    neg = np.sort(scores[~positive])
    pos = scores[positive]
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def fit_threshold(scores: np.ndarray, positive: np.ndarray, objective: str = "youden") -> ThresholdFit:
    """The threshold that maximises `objective` (module doc); ValueError when the labels cannot
    decide one (no picked or no other candidate, or a single distinct score)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if not positive.any() or positive.all() or len(np.unique(scores)) < 2:
        raise ValueError(f"{int(positive.sum())} picked and {int((~positive).sum())} other candidates with "
                         f"{len(np.unique(scores))} distinct score(s): a threshold needs both kinds and two scores")
    curve = threshold_curve(scores, positive)
    column = "youden_j" if objective == "youden" else "f1"
    best = curve.iloc[int(np.argmax(curve[column].to_numpy()))]  # argmax: the first, lowest, of ties
    metrics = {k: float(best[k]) for k in ("tpr", "fpr", "precision", "f1", "youden_j")}
    metrics.update(auc=roc_auc(scores, positive), n_positive=float(positive.sum()), n_negative=float((~positive).sum()))
    return ThresholdFit(float(best["threshold"]), objective, metrics, curve)

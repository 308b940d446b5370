"""The good-match threshold core on made-up scores whose best threshold is known. No Spark."""
from __future__ import annotations

import numpy as np
import pytest

from panda_spark.select.calibrate import fit_threshold, labelled_scores, roc_auc, threshold_curve


def test_separable_scores_get_the_midpoint_between_the_classes():
    scores = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7])
    picked = np.array([False, False, False, True, True, True])
    fit = fit_threshold(scores, picked)
    assert fit.threshold == pytest.approx(0.4) and fit.objective == "youden"
    assert fit.metrics == pytest.approx({"tpr": 1.0, "fpr": 0.0, "precision": 1.0, "f1": 1.0, "youden_j": 1.0,
                                         "auc": 1.0, "n_positive": 3.0, "n_negative": 3.0})
    assert fit.curve["threshold"].tolist() == pytest.approx([0.15, 0.25, 0.4, 0.55, 0.65])
    assert fit.curve["tp"].tolist() == [3, 3, 3, 2, 1] and fit.curve["fp"].tolist() == [2, 1, 0, 0, 0]


def test_youden_and_f1_pick_different_thresholds_when_the_classes_overlap():
    # picked 0.3 0.5 0.6 0.7, others 0.1 0.2 0.45: J is best above 0.45 (3/4 - 0), F1 above 0.2 (8/9)
    scores = np.array([0.1, 0.2, 0.45, 0.3, 0.5, 0.6, 0.7])
    picked = np.array([False, False, False, True, True, True, True])
    youden = fit_threshold(scores, picked, "youden")
    assert youden.threshold == pytest.approx(0.475) and youden.metrics["youden_j"] == pytest.approx(0.75)
    f1 = fit_threshold(scores, picked, "f1")
    assert f1.threshold == pytest.approx(0.25) and f1.metrics["f1"] == pytest.approx(8 / 9)
    assert f1.metrics["precision"] == pytest.approx(0.8) and f1.metrics["fpr"] == pytest.approx(1 / 3)
    assert roc_auc(scores, picked) == pytest.approx(11 / 12)  # only 0.3 < 0.45 is out of order


def test_ties_go_to_the_lowest_threshold_and_tied_scores_count_half_in_the_auc():
    scores = np.array([0.2, 0.4, 0.4, 0.6])
    picked = np.array([False, True, False, True])
    curve = threshold_curve(scores, picked)
    assert curve["youden_j"].tolist() == pytest.approx([0.5, 0.5])  # at 0.3 and at 0.5
    assert fit_threshold(scores, picked).threshold == pytest.approx(0.3)
    assert roc_auc(scores, picked) == pytest.approx((1 + 0.5 + 1 + 1) / 4)


def test_labelled_clips_become_scores_and_picks():
    scores, picked = labelled_scores([({"a": 0.3, "b": 0.1}, {"a"}), ({"a": 0.2, "b": 0.5, "c": 0.4}, {"b", "c"})])
    assert scores.tolist() == [0.3, 0.1, 0.2, 0.5, 0.4] and picked.tolist() == [True, False, False, True, True]


@pytest.mark.parametrize("scores, picked", [([0.1, 0.5], [True, True]), ([0.1, 0.5], [False, False]),
                                            ([0.3, 0.3], [True, False])])
def test_labels_that_cannot_decide_a_threshold_are_refused(scores, picked):
    with pytest.raises(ValueError, match="a threshold needs both kinds and two scores"):
        fit_threshold(np.array(scores), np.array(picked))


def test_the_command_takes_an_objective():
    from panda_spark.cli import _OPTIONS, build_parser

    args = build_parser().parse_args(["calibrate-selection", "--objective", "f1", "--conf", "conf/local.yaml"])
    assert _OPTIONS["calibrate-selection"](args) == {"objective": "f1"}
    assert build_parser().parse_args(["calibrate-selection"]).objective == "youden"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate-selection", "--objective", "accuracy"])

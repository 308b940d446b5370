"""The notebooks' plots from pandas frames (no Spark): rows sorted, zero-win teachers drawn, the
good-match threshold line, integer ticks on count axes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from panda_spark.notebook import plot_clip_lengths, plot_matching_scores, plot_teacher_win_rates  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _integer_ticks(axis) -> list[float]:
    ticks = [t for t in axis.get_ticklocs() if axis.get_view_interval()[0] <= t <= axis.get_view_interval()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    return ticks


def test_matching_scores_draw_the_threshold_line_in_bucket_order_with_integer_counts():
    scores = pd.DataFrame({"bucket_start": [0.9, 0.1, 0.45], "clips": [1, 2, 3]})  # as a query may return them
    ax = plot_matching_scores(scores, 0.31).axes[0]
    bars = ax.patches
    assert [round(b.get_x(), 2) for b in bars] == [0.1, 0.45, 0.9]
    assert [b.get_height() for b in bars] == [2, 3, 1]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0.31, 0.31]
    _integer_ticks(ax.yaxis)  # 0..3 clips: matplotlib alone ticks at 0.5 steps


def test_matching_scores_without_a_threshold_draw_no_line():
    ax = plot_matching_scores(pd.DataFrame({"bucket_start": [0.4], "clips": [5]}), None).axes[0]
    assert ax.get_lines() == []


def test_clip_lengths_sorted_with_integer_counts():
    ax = plot_clip_lengths(pd.DataFrame({"length_s": [60, 2, 0], "clips": [1, 2, 1]})).axes[0]
    assert [(b.get_x(), b.get_height()) for b in ax.patches] == [(0, 1), (2, 2), (60, 1)]
    _integer_ticks(ax.yaxis)


def test_teacher_win_rates_keep_teachers_without_wins():
    wins = pd.DataFrame({"teacher": ["t-never", "t-b", "t-a"], "win_rate": [0.0, 0.25, 0.75]})
    ax = plot_teacher_win_rates(wins).axes[0]
    assert [b.get_width() for b in ax.patches] == [0.75, 0.25, 0.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["t-a", "t-b", "t-never"]

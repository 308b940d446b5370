"""The analysts' views on a tiny hand-made table set: buckets in order, every teacher with
candidates in teacher_win_rates (zero wins included). The views over a real selection are checked
in tests/select/test_stage.py."""
from __future__ import annotations

import pytest

from panda_spark import views
from panda_spark.tables import qualified_name

# clip → (video, start_s, end_s): lengths 61 s, 2.5 s, 0.4 s, 2.2 s, 7 s, listed out of order
CLIPS = {"c1": ("v-cook", 0.0, 61.0), "c2": ("v-cook", 61.0, 63.5), "c3": ("v-trip", 0.0, 0.4),
         "c4": ("v-trip", 1.0, 3.2), "c5": ("v-trip", 10.0, 17.0)}
# clip → (selected teacher, matching score); c5 has candidates but no selection
SELECTED = {"c1": ("t-a", 0.91), "c2": ("t-b", 0.12), "c3": ("t-a", 0.47), "c4": ("t-a", 0.44)}
CANDIDATE_TEACHERS = ("t-a", "t-b", "t-never")  # t-never has a candidate for every clip and wins none


@pytest.fixture
def viewed(lakehouse):
    lake, spark = lakehouse, lakehouse.spark
    lake.merge("videos", lake.complete("videos", spark.createDataFrame(
        [("v-trip", "/trip.mp4", {"category": "Travel"}), ("v-cook", "/cook.mp4", {"category": "Cooking"})],
        "video_id string, path string, extra map<string,string>")))
    lake.merge("clips", lake.complete("clips", spark.createDataFrame(
        [(c, v, i, s, e, "seed") for i, (c, (v, s, e)) in enumerate(CLIPS.items())],
        "clip_id string, video_id string, clip_idx int, start_s double, end_s double, params_hash string")))
    lake.merge("candidate_captions", lake.complete("candidate_captions", spark.createDataFrame(
        [(c, t, f"{t}@1", f"{t} on {c}") for c in CLIPS for t in CANDIDATE_TEACHERS],
        "clip_id string, teacher string, teacher_version string, caption string")))
    lake.merge("captions", lake.complete("captions", spark.createDataFrame(
        [(c, f"{t} on {c}", t, f"{t}@1", score, "scorer@1", score > 0.43) for c, (t, score) in SELECTED.items()],
        "clip_id string, caption string, teacher string, teacher_version string, matching_score double, "
        "scorer_version string, good_match boolean")))
    views.create_views(spark, lake.cfg)
    return lake


def _rows(lake, view: str, where: str = ""):
    return lake.spark.sql(f"SELECT * FROM {qualified_name(lake.cfg, view)} {where}").collect()


def test_bucket_views_come_back_in_bucket_order(viewed):
    lengths = _rows(viewed, "clip_length_distribution")
    assert [(r.length_s, r.clips) for r in lengths] == [(0, 1), (2, 2), (7, 1), (60, 1)]
    scores = _rows(viewed, "matching_score_distribution")
    assert [(r.bucket_start, r.bucket_end, r.clips, r.good_matches) for r in scores] == [
        (0.1, 0.15, 1, 0), (0.4, 0.45, 1, 1), (0.45, 0.5, 1, 1), (0.9, 0.95, 1, 1)]


def test_teacher_win_rates_list_every_teacher_with_candidates(viewed):
    overall = _rows(viewed, "teacher_win_rates", "WHERE scope = 'all'")
    assert [(r.teacher, r.wins, r.clips, r.win_rate) for r in overall] == [
        ("t-a", 3, 4, 0.75), ("t-b", 1, 4, 0.25), ("t-never", 0, 4, 0.0)]
    per_category = _rows(viewed, "teacher_win_rates", "WHERE scope = 'category'")
    assert [(r.category, r.teacher, r.wins, r.clips, r.win_rate) for r in per_category] == [
        ("Cooking", "t-a", 1, 2, 0.5), ("Cooking", "t-b", 1, 2, 0.5), ("Cooking", "t-never", 0, 2, 0.0),
        ("Travel", "t-a", 2, 2, 1.0), ("Travel", "t-b", 0, 2, 0.0), ("Travel", "t-never", 0, 2, 0.0)]


def test_the_overview_notebook_plots_zero_win_teachers_and_the_calibrated_threshold(viewed, state_root):
    import runpy

    import matplotlib.pyplot as plt

    from panda_spark.config import load_config
    from tests.conftest import REPO, overrides_for

    lake = viewed
    lake.merge("calibrations", lake.complete("calibrations", lake.spark.createDataFrame(
        [("select.good_match_threshold", "scorer@1", 0.38), ("select.good_match_threshold", "other@2", 0.9)],
        "name string, scorer_version string, value double")))
    # as conf/databricks.yaml: no threshold in the conf, select grades by the calibrated one
    cfg = load_config(None, [*overrides_for(state_root, lake.cfg.catalog.schema), "select.good_match_threshold=null"])
    nb = runpy.run_path(str(REPO / "notebooks" / "03_dataset_overview.py"), init_globals={"panda_conf": cfg})["nb"]
    try:
        ax = nb.figures["matching_score_distribution"].axes[0]
        assert [list(line.get_xdata()) for line in ax.get_lines()] == [[0.38, 0.38]]
        assert [round(b.get_x(), 2) for b in ax.patches] == [0.1, 0.4, 0.45, 0.9]
        bars = nb.figures["teacher_win_rates"].axes[0]
        assert [t.get_text() for t in bars.get_yticklabels()] == ["t-a", "t-b", "t-never"]
        assert [b.get_width() for b in bars.patches] == [0.75, 0.25, 0.0]
        assert nb.good_match_threshold() == 0.38
        nb.threshold_setting = 0.43  # a threshold in the conf (or the Databricks widget) wins
        assert nb.good_match_threshold() == 0.43
    finally:
        plt.close("all")

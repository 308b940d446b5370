"""calibrate-selection on the local Spark + Delta session with a real MLflow (sqlite) store: select
without a threshold leaves good_match ungraded, labels are loaded, the threshold is fitted into
`calibrations` and MLflow, and select grades with it (and with a changed one) until the conf names one."""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from panda_spark.select import calibrate_stage, stage  # noqa: E402
from panda_spark.select.calibrate import GOOD_MATCH, fit_threshold, labelled_scores  # noqa: E402
from tests.select.test_stage import _color_of, seed_tables  # noqa: E402

N_CLIPS = 12


def test_calibrated_threshold_is_stored_logged_and_used_by_select(spark, state_root, tmp_path):
    from panda_spark.config import load_config
    from panda_spark.spark import get_spark
    from panda_spark.tables import Lakehouse
    from tests.conftest import overrides_for

    overrides = [*overrides_for(state_root, "calibrate_e2e"), f"models.cache_dir={tmp_path / 'models'}",
                 f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "select.num_frames=2",
                 "select.device=cpu", "select.good_match_threshold="]
    cfg = load_config(None, overrides)
    assert cfg.select.good_match_threshold is None
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    lake = Lakehouse(get_spark(cfg), cfg, "cal")
    ids = seed_tables(lake, N_CLIPS)
    first = stage.run(lake.spark, cfg, "cal-select-1")
    rows = {r.clip_id: r for r in lake.read("captions").collect()}
    assert len(rows) == N_CLIPS and all(r.good_match is None for r in rows.values())  # nothing to grade by yet
    assert first.counts["good_match"] == 0

    # each clip's label picks the teacher naming its colour (half by teacher, half by caption text);
    # clip-no-frames was never scored
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "annotator", "chosen_teacher", "chosen_caption"])
        writer.writerows([c, "ann", f"t-{_color_of(i)}", ""] if i % 2 else
                         [c, "ann", "", f"a {_color_of(i)} scene in the video"] for i, c in enumerate(ids[:N_CLIPS]))
        writer.writerow(["clip-no-frames", "ann", "t-red", ""])
    stage.load_labels(lake.spark, cfg, "cal-labels", str(labels))

    report = calibrate_stage.run(lake.spark, cfg, "cal-calibrate")
    expected = fit_threshold(*labelled_scores(
        (dict(rows[c].candidate_scores), {f"t-{_color_of(i)}"}) for i, c in enumerate(ids[:N_CLIPS])))
    (calibration,) = lake.read("calibrations").collect()
    version = rows[ids[0]].scorer_version
    assert (calibration.name, calibration.scorer_version, calibration.objective) == (GOOD_MATCH, version, "youden")
    assert calibration.value == pytest.approx(expected.threshold) and calibration.n_clips == N_CLIPS
    assert calibration.metrics["n_positive"] == N_CLIPS and calibration.metrics["n_negative"] == 3 * N_CLIPS
    assert report.counts == {"labels": N_CLIPS + 1, "clips": N_CLIPS, "errored": 1,
                             "regraded": N_CLIPS}  # every clip graded now, from NULL
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'calibrate-selection'").collect()}
    assert errors == {"clip-no-frames/ann": "NotScored"}

    run = mlflow.get_run(calibration.mlflow_run_id)
    assert run.data.metrics["threshold"] == pytest.approx(expected.threshold)
    assert run.data.metrics["youden_j"] == pytest.approx(expected.metrics["youden_j"])
    assert run.data.params["scorer_version"] == version and run.data.tags["panda.stage"] == "calibrate-selection"
    client = mlflow.MlflowClient()
    curve = client.get_metric_history(run.info.run_id, "curve_tpr")
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(expected.curve["tpr"].tolist())
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "selection_threshold_curve.csv", "selection_threshold_curve.png"}

    graded = {r.clip_id: r for r in lake.read("captions").collect()}
    assert all(r.good_match == (r.matching_score > calibration.value) for r in graded.values())

    # a changed calibration (now above every score): the next select regrades with it, without re-scoring
    highest = max(r.matching_score for r in graded.values())
    lake.spark.sql(f"UPDATE {lake.name('calibrations')} SET value = {highest!r}")
    again = stage.run(lake.spark, cfg, "cal-select-2")
    assert again.counts["selected"] == 0 and again.counts["regraded"] == sum(r.good_match for r in graded.values()) > 0
    assert not any(r.good_match for r in lake.read("captions").collect())
    # a threshold named in the conf wins over the calibrated one
    explicit = load_config(None, [*overrides, "select.good_match_threshold=-1.0"])
    assert stage.run(lake.spark, explicit, "cal-select-3").counts["regraded"] == N_CLIPS
    assert all(r.good_match for r in lake.read("captions").collect())

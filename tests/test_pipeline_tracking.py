"""The pipeline run's MLflow record of its stages (no Spark): one table artifact and a few summary
metrics, not one metric per stage and figure."""
from __future__ import annotations

import json

import pytest

from panda_spark.pipeline import STAGE_METRICS_ARTIFACT, StageOutcome, log_stage_metrics

mlflow = pytest.importorskip("mlflow")


def test_stage_metrics_are_one_table_and_per_stage_seconds(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("pipeline", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    outcomes = [StageOutcome("ingest", "ok", 5, 3, 2, 1.5, counts={"videos": 3.0}),
                StageOutcome("load-selection-labels", "skipped", seconds=0.01, message="no labels file"),
                StageOutcome("create-views", "failed", seconds=0.5, message="AnalysisException: ..."),
                StageOutcome("export", "not run", message="create-views failed")]
    log_stage_metrics(client, run_id, outcomes)

    run = client.get_run(run_id)
    assert run.data.metrics == {"ingest_seconds": 1.5, "create_views_seconds": 0.5, "errored": 2.0,
                                "seconds": pytest.approx(2.01)}
    assert [f.path for f in client.list_artifacts(run_id)] == [STAGE_METRICS_ARTIFACT]
    table = json.loads((tmp_path / "artifacts" / run_id / "artifacts" / STAGE_METRICS_ARTIFACT).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["stage"], r["status"], r["rows_in"], r["rows_out"], r["errored"]) for r in rows] == [
        ("ingest", "ok", 5, 3, 2), ("load-selection-labels", "skipped", 0, 0, 0),
        ("create-views", "failed", 0, 0, 0), ("export", "not run", 0, 0, 0)]
    assert json.loads(rows[0]["counts"]) == {"videos": 3.0} and rows[3]["message"] == "create-views failed"

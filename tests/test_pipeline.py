"""`panda-spark pipeline`: stages in order under one run id, per-stage summaries in `stage_runs` and
MLflow, incremental reruns, a failing stage stopping the run; the cluster checks before a stage."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from panda_spark.config import load_config
from panda_spark.errors import ConfigError
from panda_spark.spark import check_cluster
from tests.conftest import REPO, overrides_for

mlflow = pytest.importorskip("mlflow")

STAGES = ["ingest", "split", "caption", "select", "create-views"]


@pytest.fixture(scope="module")
def piped(spark, state_root, tmp_path_factory):
    from panda_spark.demo.run import build_demo_manifest
    from panda_spark.pipeline import run_pipeline
    from panda_spark.spark import get_spark
    from panda_spark.tables import Lakehouse

    out = tmp_path_factory.mktemp("pipeline_sources")
    manifest = build_demo_manifest(out)  # three videos and two broken rows
    default = load_config(None)
    # two tiny teachers (text-llm-tiny reads blip2-tiny's captions); text-llm-tiny's noise is rarely degenerate
    teachers = json.dumps([asdict(t) for t in default.caption.teachers if t.name in ("blip2-tiny", "text-llm-tiny")])
    root = tmp_path_factory.mktemp("pipeline_root")  # its own MLflow store
    overrides = [*overrides_for(root, "pipeline_e2e"), f"caption.teachers={teachers}",
                 f"models.cache_dir={state_root / 'models'}", "run.id=pipeline-run-1"]
    cfg = load_config(None, overrides)
    first = run_pipeline(get_spark(cfg), cfg, "pipeline-run-1", STAGES, manifest=str(manifest))
    # the newest run as the first one left it (other tests run the pipeline again)
    last = {r.stage for r in spark.sql("SELECT stage FROM pipeline_e2e.last_pipeline_run").collect()}
    return cfg, Lakehouse(spark, cfg, "check"), first, manifest, last


def test_stages_run_in_order_and_report_rows_in_out_errored(piped):
    cfg, lake, first, _, _ = piped
    assert first.ok and [o.stage for o in first.outcomes] == STAGES
    by_stage = {o.stage: o for o in first.outcomes}
    clips = lake.read("clips").count()
    assert clips >= 3
    assert (by_stage["ingest"].rows_in, by_stage["ingest"].rows_out, by_stage["ingest"].errored) == (5, 3, 2)
    assert (by_stage["split"].rows_in, by_stage["split"].rows_out) == (3, clips)
    assert (by_stage["caption"].rows_in, by_stage["caption"].rows_out) == (2 * clips, 2 * clips)
    assert by_stage["select"].rows_out == lake.read("captions").count() > 0
    assert by_stage["select"].rows_out + by_stage["select"].errored == by_stage["select"].rows_in == clips
    assert by_stage["create-views"].rows_out == 8
    assert all(o.status == "ok" and o.seconds > 0 for o in first.outcomes)
    summary = first.summary().splitlines()
    assert summary[0] == "pipeline run pipeline-run-1: ok"
    assert [c.strip() for c in summary[3].split("|")][:5] == ["ingest", "ok", "5", "3", "2"]


def test_one_run_id_in_the_tables_stage_runs_and_mlflow(piped):
    from panda_spark.tracking import start_experiment

    cfg, lake, first, _, last = piped
    start_experiment(cfg)  # this module's MLflow store
    for table in ("videos", "clips", "candidate_captions", "captions"):
        assert {r.run_id for r in lake.read(table).select("run_id").distinct().collect()} == {"pipeline-run-1"}, table
    rows = {r.stage: r for r in lake.read("stage_runs").filter("run_id = 'pipeline-run-1'").collect()}
    assert {s: (r.status, r.rows_in, r.rows_out, r.errored) for s, r in rows.items()} == {
        o.stage: ("ok", o.rows_in, o.rows_out, o.errored) for o in first.outcomes}
    assert rows["split"].counts["clips"] == rows["split"].rows_out and rows["ingest"].finished_at > rows["ingest"].started_at
    assert last == set(STAGES)
    (run,) = mlflow.search_runs(filter_string="tags.`panda.stage` = 'pipeline' and tags.`panda.run_id` = "
                                              "'pipeline-run-1'", output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.params["stages"] == ",".join(STAGES)
    # one table of stage figures and a seconds metric per stage, not a one-point chart per stage and figure
    assert set(run.data.metrics) == {f"{s.replace('-', '_')}_seconds" for s in STAGES} | {"errored", "seconds"}
    assert run.data.metrics["errored"] == sum(o.errored for o in first.outcomes) >= 2
    table = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/stage_metrics.json"))
    figures = {f["stage"]: f for f in (dict(zip(table["columns"], r)) for r in table["data"])}
    assert list(figures) == STAGES and figures["split"]["rows_out"] == rows["split"].rows_out
    assert figures["ingest"]["errored"] == 2


def test_a_rerun_takes_up_nothing_new(piped):
    from panda_spark.pipeline import run_pipeline

    cfg, lake, first, manifest, _ = piped
    runs_before = lake.read("stage_runs").count()
    again = run_pipeline(lake.spark, cfg, "pipeline-run-2", STAGES, manifest=str(manifest))
    assert again.ok
    assert {o.stage: o.rows_out for o in again.outcomes} == {
        "ingest": 0, "split": 0, "caption": 0, "select": 0, "create-views": 8}
    assert lake.read("clips").count() == dict((o.stage, o.rows_out) for o in first.outcomes)["split"]
    assert lake.read("stage_runs").count() == runs_before + len(STAGES)


def test_a_failing_stage_stops_the_run_and_is_recorded(piped):
    from panda_spark.pipeline import run_pipeline
    from panda_spark.tracking import start_experiment

    cfg, lake, _, _, _ = piped
    # no student is registered in this store: evaluate --source student cannot run
    failed = run_pipeline(lake.spark, cfg, "pipeline-run-3", ["ingest", "evaluate", "create-views"])
    assert not failed.ok
    assert [(o.stage, o.status) for o in failed.outcomes] == [
        ("ingest", "skipped"), ("evaluate", "failed"), ("create-views", "not run")]
    assert failed.outcomes[0].message.startswith("no manifest")
    assert failed.outcomes[2].message == "evaluate failed"
    row = lake.read("stage_runs").filter("run_id = 'pipeline-run-3' AND stage = 'evaluate'").first()
    assert row.status == "failed" and row.message == failed.outcomes[1].message
    start_experiment(cfg)
    runs = mlflow.search_runs(filter_string="tags.`panda.run_id` = 'pipeline-run-3'", output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_stage_runs_nest_under_the_open_pipeline_run(piped):
    from panda_spark.tracking import run_tags, start_experiment

    cfg = piped[0]
    experiment = start_experiment(cfg)  # first: the client takes the store set when it is made
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment, tags={"panda.run_id": "nest-1", "panda.stage": "pipeline"})
    assert run_tags("nest-1", "evaluate")["mlflow.parentRunId"] == parent.info.run_id
    client.set_terminated(parent.info.run_id)
    assert "mlflow.parentRunId" not in run_tags("nest-1", "evaluate")  # a finished run adopts no more
    assert run_tags("other", "evaluate") == {"panda.run_id": "other", "panda.stage": "evaluate"}


# ------------------------------------------------------------------ the cluster check (no Spark)

DATABRICKS_GPU = {"spark.dynamicAllocation.enabled": "false", "spark.python.worker.reuse": "true",
                  "spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}


def test_the_databricks_gpu_cluster_matches_its_conf():
    cfg = load_config(REPO / "conf" / "databricks.yaml")
    for stage in ("caption", "select", "train-student"):
        assert check_cluster(DATABRICKS_GPU, cfg, stage, gpu=True) == []


def test_stages_that_cannot_work_on_the_cluster_are_refused_naming_the_key():
    cfg = load_config(REPO / "conf" / "databricks.yaml")
    with pytest.raises(ConfigError, match="spark.dynamicAllocation.enabled=true.*'spark.dynamic_allocation'"):
        check_cluster({**DATABRICKS_GPU, "spark.dynamicAllocation.enabled": "true"}, cfg, "train-student", gpu=True)
    cpu_cluster = {"spark.python.worker.reuse": "true"}
    with pytest.raises(ConfigError, match="conf key 'caption.task_gpus' is 1.0"):
        check_cluster(cpu_cluster, cfg, "caption", gpu=True)
    with pytest.raises(ConfigError, match="conf key 'student.use_gpu'"):
        check_cluster(cpu_cluster, cfg, "train-student", gpu=True)
    # a CPU stage on the CPU cluster is fine; differences from the conf are warnings
    assert check_cluster(cpu_cluster, cfg, "split", gpu=False) == []
    warnings = check_cluster({**DATABRICKS_GPU, "spark.python.worker.reuse": "false",
                              "spark.task.resource.gpu.amount": "0.5"}, cfg, "select", gpu=True)
    assert warnings == ["select: the cluster has spark.python.worker.reuse=false, the conf describes true",
                        "select: the cluster has spark.task.resource.gpu.amount=0.5, the conf describes 1.0"]

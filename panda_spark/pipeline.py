"""The stages, in pipeline order, and `panda-spark pipeline`: run them one after another.

`STAGES` is the one list of stage commands: the CLI, `jobs/`, the Databricks bundle and the EMR
steps are all checked against it. `gpu` says which cluster a stage belongs on (the GPU job cluster
or instance group); locally every stage runs in the one embedded session.
"""
from __future__ import annotations

import importlib
import io
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

from pyspark.sql import SparkSession

from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.spark import check_cluster, cluster_settings
from panda_spark.tables import TABLES, Lakehouse
from panda_spark.tabular import write_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageDef:
    name: str  # the command: panda-spark <name>, jobs/<name with _>.py
    module: str
    gpu: bool  # models on GPUs at scale: the GPU cluster
    help: str  # one line for `panda-spark --help`
    reads: str  # what the stage takes up, and writes: what it writes (`panda-spark <name> --help`)
    writes: str
    function: str = "run"  # (spark, cfg, run_id, **options) -> StageReport
    in_pipeline: bool = True  # part of `panda-spark pipeline` (and the bundle's job)
    conf: tuple[str, ...] = ()  # conf sections or keys the stage reads, listed with defaults in its --help
    example: str = ""  # the arguments of an example command line


STAGES: dict[str, StageDef] = {s.name: s for s in [
    StageDef("ingest", "panda_spark.ingest.stage", gpu=False,
             help="probe the videos of a manifest into the videos table",
             reads="a manifest (--manifest or ingest.manifest): CSV, JSON lines or Parquet with video_id, path, ...",
             writes="videos; errors", conf=("ingest", "paths.allowed_roots"),
             example="--conf conf/local.yaml --manifest videos.csv"),
    StageDef("download", "panda_spark.download.stage", gpu=False,
             help="fetch the videos that have a url and no file (imported Panda-70M rows) and probe them",
             reads="videos with a url and no file yet (import-panda-csv), less those that failed for good "
                   "(--retry-failed: those too); errors of earlier downloads",
             writes="videos (path: the file under download.path, probed as ingest probes); errors; the files",
             conf=("download",), example="--conf conf/local.yaml --set download.concurrency_per_host=4"),
    StageDef("split", "panda_spark.split.stage", gpu=False,
             help="split new videos into shots and clips, with frames for the teachers",
             reads="videos (new or changed since their last split)",
             writes="shots, clips, clip_frames, commits; errors; clip mp4s under <paths.root>/clips "
                    "(split.materialize_clips)",
             conf=("split",), example="--conf conf/local.yaml --set split.wave_videos=64"),
    StageDef("caption", "panda_spark.caption.stage", gpu=True,
             help="caption new clips with every teacher in caption.teachers",
             reads="clips and clip_frames of committed videos, their videos' subtitles and metadata",
             writes="candidate_captions; errors", conf=("caption",),
             example="--conf conf/local.yaml --set caption.wave_clips=512"),
    StageDef("select", "panda_spark.select.stage", gpu=True,
             help="pick each clip's best candidate caption into the captions table",
             reads="candidate_captions, clip_frames, calibrations (without select.good_match_threshold)",
             writes="captions; errors", conf=("select",),
             example="--conf conf/local.yaml --set select.scorer=openai/clip-vit-base-patch32"),
    StageDef("load-selection-labels", "panda_spark.select.stage", gpu=False, function="load_labels",
             help="load human picks of the best caption (CSV / JSON lines)",
             reads="a labels file (--labels or select.labels): CSV or JSON lines with clip_id, annotator, "
                   "chosen_teacher or chosen_caption; candidate_captions",
             writes="selection_labels; errors", conf=("select.labels",),
             example="--conf conf/local.yaml --labels labels.csv"),
    StageDef("calibrate-selection", "panda_spark.select.calibrate_stage", gpu=False,
             help="fit select.good_match_threshold to selection_labels (calibrations table, MLflow)",
             reads="selection_labels, captions", writes="calibrations; captions.good_match; an MLflow run",
             in_pipeline=False, conf=("select.scorer", "select.good_match_threshold"),
             example="--conf conf/local.yaml --objective f1"),
    StageDef("finetune-retrieval", "panda_spark.select.finetune_stage", gpu=True,
             help="fine-tune the selector on selection_labels; register it in MLflow",
             reads="selection_labels, candidate_captions, clip_frames",
             writes="a selector version in the MLflow registry (finetune.registered_model@finetune.alias); "
                    "an MLflow run",
             conf=("finetune",), example="--conf conf/local.yaml --set finetune.epochs=3"),
    StageDef("train-student", "panda_spark.student.stage", gpu=True,
             help="train the student captioner (TorchDistributor); register it in MLflow",
             reads="captions, clip_frames, videos' subtitles and metadata",
             writes="student_rows; a student in the MLflow registry (student.registered_model@student.alias); "
                    "an MLflow run",
             conf=("student",), example="--conf conf/local.yaml --set student.epochs=5"),
    StageDef("evaluate", "panda_spark.student.evaluate_stage", gpu=True,
             help="BLEU-4, METEOR, ROUGE-L, CIDEr of a caption source → evaluations",
             reads="the captions of --source (the registered student, gold captions or a teacher's) and "
                   "the references of --reference",
             writes="evaluations; an MLflow run", conf=("student",),
             example="--conf conf/local.yaml --source teacher:blip2-tiny"),
    StageDef("create-views", "panda_spark.views", gpu=False,
             help="create the SQL views for analysts (clip_captions, teacher_win_rates, ...)",
             reads="the tables (missing ones are created empty)",
             writes="views clip_captions, teacher_win_rates, clip_length_distribution, clips_per_video, "
                    "matching_score_distribution, clips_without_good_match, errors_by_stage, last_pipeline_run",
             conf=("catalog",), example="--conf conf/local.yaml"),
    StageDef("export", "panda_spark.dataset.export_stage", gpu=False,
             help="write Panda-70M CSVs and webdataset shards into export.path",
             reads="videos, clips, shots, captions, exported_videos",
             writes="Panda-70M CSVs and webdataset shards under export.path; exported_videos",
             conf=("export",), example="--conf conf/local.yaml --set export.webdataset=false"),
    StageDef("import-panda-csv", "panda_spark.dataset.import_stage", gpu=False,
             help="load published Panda-70M CSVs into videos, clips, shots and captions", in_pipeline=False,
             reads="published Panda-70M CSVs (--csv)", writes="videos, clips, shots, captions; errors",
             conf=("select.good_match_threshold",),
             example="--conf conf/local.yaml --csv panda70m_training_2m.csv"),
    StageDef("maintain", "panda_spark.maintain", gpu=False,
             help="cluster, OPTIMIZE and VACUUM the Delta tables (the bundle's daily maintenance job)",
             reads="the Delta tables of maintain.tables (empty: all)",
             writes="the same tables: clustering where new, OPTIMIZE, VACUUM", in_pipeline=False,
             conf=("maintain",), example="--conf conf/local.yaml --set maintain.vacuum_retention_hours=336"),
]}

PIPELINE_STAGES: tuple[str, ...] = tuple(name for name, s in STAGES.items() if s.in_pipeline)


@dataclass
class StageOutcome:
    stage: str
    status: str  # ok | skipped | failed | not run
    rows_in: int = 0
    rows_out: int = 0
    errored: int = 0
    seconds: float = 0.0
    message: str = ""
    counts: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineReport:
    run_id: str
    outcomes: list[StageOutcome]

    @property
    def ok(self) -> bool:
        return all(o.status in ("ok", "skipped") for o in self.outcomes)

    def summary(self) -> str:
        out = io.StringIO()
        out.write(f"pipeline run {self.run_id}: {'ok' if self.ok else 'FAILED'}\n")
        columns = ["stage", "status", "rows_in", "rows_out", "errored", "seconds", "message"]
        write_rows(columns, [{c: getattr(o, c) for c in columns} for o in self.outcomes], "table", out)
        return out.getvalue().rstrip("\n")


def check_stages(stages: Sequence[str]) -> None:
    unknown = [s for s in stages if s not in PIPELINE_STAGES]
    if unknown or not stages:
        raise ConfigError(f"--stages: {'unknown stage ' + repr(unknown[0]) if unknown else 'no stage named'}; "
                          f"expected a comma-separated subset of {','.join(PIPELINE_STAGES)}")


def run_stage(spark: SparkSession, cfg: Config, run_id: str, name: str, **options) -> StageReport:
    """One stage, after checking (in cluster mode) that the cluster can run it."""
    stage = STAGES[name]
    if cfg.spark.mode == "cluster":
        for warning in check_cluster(cluster_settings(spark), cfg, name, stage.gpu):
            log.warning("%s", warning)
    spark.sparkContext.setJobGroup(f"panda-{name}", f"panda-spark {name} (run {run_id})")
    return getattr(importlib.import_module(stage.module), stage.function)(spark, cfg, run_id, **options)


def run_pipeline(spark: SparkSession, cfg: Config, run_id: str, stages: Sequence[str] = PIPELINE_STAGES,
                 manifest: str | None = None, labels: str | None = None) -> PipelineReport:
    """`panda-spark pipeline`: `stages` in pipeline order, each incremental, all under `run_id`.

    A stage without input is skipped (ingest without a manifest, download without videos to fetch,
    load-selection-labels without a labels file, finetune-retrieval without labels); the first
    stage that fails stops the run.
    Each outcome is MERGEd into `stage_runs` as it ends, and logged to one MLflow run (tag
    `panda.stage = pipeline`, see log_stage_metrics) under which the stages' own MLflow runs nest."""
    import mlflow

    from panda_spark.tracking import PIPELINE_STAGE, start_experiment

    check_stages(stages)
    ordered = [s for s in PIPELINE_STAGES if s in stages]
    options = {"ingest": {"manifest": manifest or cfg.ingest.manifest},
               "load-selection-labels": {"labels": labels or cfg.select.labels}}
    lake = Lakehouse(spark, cfg, run_id)
    experiment_id = start_experiment(cfg)
    client = mlflow.MlflowClient()  # after start_experiment: a client binds the tracking URI it is made under
    parent = client.create_run(experiment_id, run_name=f"pipeline {run_id[:8]}",
                               tags={"panda.run_id": run_id, "panda.stage": PIPELINE_STAGE})
    client.log_param(parent.info.run_id, "stages", ",".join(ordered))
    outcomes: list[StageOutcome] = []
    failed = None
    for step, name in enumerate(ordered):
        if failed:
            outcomes.append(StageOutcome(name, "not run", message=f"{failed} failed"))
            continue
        started = time.time()
        reason = _skip_reason(lake, name, options.get(name, {}))
        if reason:
            outcome = StageOutcome(name, "skipped", message=reason)
        else:
            log.info("pipeline %s: stage %d/%d %s", run_id, step + 1, len(ordered), name)
            try:
                report = run_stage(spark, cfg, run_id, name, **options.get(name, {}))
                outcome = StageOutcome(name, "ok", report.rows_in, report.rows_out, report.errored,
                                       report.seconds, counts={k: float(v) for k, v in report.counts.items()})
            except Exception as exc:  # recorded in stage_runs and MLflow, then the run stops
                log.exception("pipeline %s: stage %s failed", run_id, name)
                outcome = StageOutcome(name, "failed", message=f"{type(exc).__name__}: {exc}"[:2000])
                failed = name
        outcome.seconds = outcome.seconds or round(time.time() - started, 2)
        _record(lake, run_id, outcome, started)
        outcomes.append(outcome)
    report = PipelineReport(run_id, outcomes)
    log_stage_metrics(client, parent.info.run_id, outcomes)
    client.log_text(parent.info.run_id, report.summary(), "pipeline_summary.txt")
    client.set_terminated(parent.info.run_id, "FINISHED" if report.ok else "FAILED")
    return report


def _skip_reason(lake: Lakehouse, name: str, options: dict) -> str | None:
    if name == "ingest" and not options["manifest"]:
        return "no manifest (--manifest or ingest.manifest)"
    if name == "load-selection-labels" and not options["labels"]:
        return "no labels file (--labels or select.labels)"
    if name == "download":
        from panda_spark.download.stage import pending

        if pending(lake).isEmpty():
            return "no video with a url and no file (import-panda-csv), or all failed for good"
    if name == "finetune-retrieval" and lake.read("selection_labels").isEmpty():
        return "no selection_labels yet"
    return None


def _record(lake: Lakehouse, run_id: str, outcome: StageOutcome, started: float) -> None:
    row = {"run_id": run_id, "stage": outcome.stage, "status": outcome.status, "rows_in": outcome.rows_in,
           "rows_out": outcome.rows_out, "errored": outcome.errored, "seconds": outcome.seconds,
           "counts": outcome.counts, "message": outcome.message or None,
           "started_at": datetime.fromtimestamp(started, timezone.utc),
           "finished_at": datetime.fromtimestamp(started + outcome.seconds, timezone.utc)}
    lake.merge("stage_runs", lake.spark.createDataFrame([row], TABLES["stage_runs"].schema))


STAGE_METRICS_ARTIFACT = "stage_metrics.json"
_METRIC_COLUMNS = ("stage", "status", "rows_in", "rows_out", "errored", "seconds", "message")


def log_stage_metrics(client, mlflow_run_id: str, outcomes: Sequence[StageOutcome]) -> None:
    """The pipeline run's stage figures, once the stages are done: one table artifact
    `stage_metrics.json` (a row per stage: status, rows in/out, errored, seconds, message, its counts
    as JSON) and, as metrics, `<stage>_seconds` per stage that ran plus the run's `errored` and
    `seconds` totals (single values: one chart each, not one per stage and figure)."""
    import json

    from mlflow.entities import Metric

    table = {c: [getattr(o, c) for o in outcomes] for c in _METRIC_COLUMNS}
    table["counts"] = [json.dumps(o.counts, sort_keys=True) for o in outcomes]
    client.log_table(mlflow_run_id, table, STAGE_METRICS_ARTIFACT)
    ran = [o for o in outcomes if o.status in ("ok", "failed")]
    now = int(time.time() * 1000)
    values = {**{f"{o.stage.replace('-', '_')}_seconds": o.seconds for o in ran},
              "errored": sum(o.errored for o in outcomes), "seconds": sum(o.seconds for o in outcomes)}
    client.log_batch(mlflow_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])

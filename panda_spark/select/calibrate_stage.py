"""calibrate-selection (Spark wrapper + MLflow): `selection_labels` + `captions` → the good-match
threshold of the conf's scorer in `calibrations`.

For the scorer `select.scorer` names (its `scorer_version`), each labelled clip's candidate scores
are those select stored (`captions.candidate_scores`, teacher → score), and its positives the
teachers its annotators picked (a pick by caption text resolves to the teacher whose current
candidate it is). A label whose clip has no `captions` row of this scorer (`NotScored`: run select)
or whose pick is not among the scored candidates (`UnknownCandidate`) goes to `errors` (stage
calibrate-selection, key `<clip_id>/<annotator>`). The core (:mod:`panda_spark.select.calibrate`)
fits the threshold; one MLflow run logs it with the chosen point's rates and ROC AUC as metrics,
the whole curve as metrics by step (`curve_threshold`, `curve_tpr`, `curve_fpr`,
`curve_precision`) and as a CSV and a plot. The threshold is MERGEd into `calibrations` under
(select.good_match_threshold, scorer_version) with that run's id. Select grades with it whenever
`select.good_match_threshold` is empty; then this stage also regrades that scorer's captions at
once, so export and the student see the new grades without a select run.
"""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.select.calibrate import GOOD_MATCH, ThresholdFit, fit_threshold, labelled_scores
from panda_spark.select.registry import scorer_spec
from panda_spark.select.stage import candidate_sets, regrade
from panda_spark.tables import TABLES, Lakehouse
from panda_spark.tracking import run_tags, start_experiment

log = logging.getLogger(__name__)
STAGE = "calibrate-selection"
CURVE_ARTIFACT = "selection_threshold_curve"


def run(spark: SparkSession, cfg: Config, run_id: str, objective: str = "youden") -> StageReport:
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    version = scorer_spec(cfg).version
    spark.sparkContext.setJobDescription(f"calibrate-selection: labels and scores of {version}")
    labels = lake.read("selection_labels").select("clip_id", "annotator", "chosen_teacher", "chosen_caption")
    by_caption = F.element_at(F.filter("candidates", lambda c: c.caption == F.col("chosen_caption")), 1).teacher
    scored = lake.read("captions").filter(F.col("scorer_version") == version).select("clip_id", "candidate_scores")
    resolved = (labels.join(candidate_sets(lake, labels), "clip_id", "left").join(scored, "clip_id", "left")
                .select("clip_id", "annotator", "chosen_teacher", "chosen_caption", "candidate_scores",
                        F.coalesce("chosen_teacher", by_caption).alias("pick"))
                .withColumn("error_class", F.when(F.col("candidate_scores").isNull(), F.lit("NotScored")).when(
                    ~F.coalesce(F.array_contains(F.map_keys("candidate_scores"), F.col("pick")), F.lit(False)),
                    F.lit("UnknownCandidate"))).localCheckpoint(eager=True))
    failed = resolved.filter(F.col("error_class").isNotNull()).select(
        F.concat_ws("/", "clip_id", "annotator").alias("key"), "error_class",
        F.when(F.col("error_class") == "NotScored", F.concat(F.lit(f"no caption selected by {version} for clip "),
                                                             "clip_id"))
        .otherwise(F.lit("the pick is not among the candidates the scorer scored")).alias("message"),
        F.to_json(F.struct("clip_id", "annotator", "chosen_teacher", "chosen_caption")).alias("input_snapshot"))
    errored = lake.record_errors(STAGE, failed).total
    good = resolved.filter(F.col("error_class").isNull())
    lake.clear_errors(STAGE, good.select(F.concat_ws("/", "clip_id", "annotator").alias("key")))
    clips: dict[str, tuple[dict[str, float], set[str]]] = {}
    for row in good.select("clip_id", "candidate_scores", "pick").collect():
        clips.setdefault(row.clip_id, (dict(row.candidate_scores), set()))[1].add(row.pick)
    try:
        fit = fit_threshold(*labelled_scores(clips.values()), objective=objective)
    except ValueError as exc:
        raise ConfigError(f"calibrate-selection: {len(clips)} labelled clips scored by {version}: {exc}; load "
                          "selection labels (panda-spark load-selection-labels) for clips select has scored") from exc
    mlflow_run_id = _log_to_mlflow(cfg, run_id, version, fit, len(clips))
    row = {"name": GOOD_MATCH, "scorer_version": version, "value": fit.threshold, "objective": objective,
           "n_clips": len(clips), "metrics": fit.metrics, "mlflow_run_id": mlflow_run_id}
    merged = lake.merge("calibrations", spark.createDataFrame([row], TABLES["calibrations"].columns))
    log.info("calibrate-selection: good-match threshold %.4f for %s (%s, J %.3f, AUC %.3f)", fit.threshold, version,
             objective, fit.metrics["youden_j"], fit.metrics["auc"])
    regraded = regrade(lake, fit.threshold, version) if cfg.select.good_match_threshold is None else 0
    labelled = resolved.count()
    report.counts.update(labels=labelled, clips=len(clips), errored=errored, regraded=regraded)
    return report.finish(rows_in=labelled, rows_out=merged.inserted + merged.updated, errored=errored)


def _log_to_mlflow(cfg: Config, run_id: str, version: str, fit: ThresholdFit, clips: int) -> str:
    """One run: params, the chosen point, the curve by step, its CSV and plot; the run's id."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.entities import Metric

    start_experiment(cfg)
    with mlflow.start_run(run_name=f"calibrate-selection {run_id[:8]}", tags=run_tags(run_id, STAGE)) as active:
        mlflow.log_params({"scorer_version": version, "objective": fit.objective, "clips": clips})
        mlflow.log_metrics({"threshold": fit.threshold, **fit.metrics})
        curve = fit.curve
        metrics = [Metric(f"curve_{name}", float(value), 0, step)
                   for step, values in enumerate(curve[["threshold", "tpr", "fpr", "precision"]].itertuples(index=False))
                   for name, value in zip(("threshold", "tpr", "fpr", "precision"), values)]
        client = mlflow.MlflowClient()
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(active.info.run_id, metrics=metrics[start:start + 1000])
        mlflow.log_text(curve.to_csv(index=False), f"{CURVE_ARTIFACT}.csv")
        fig, (roc, rates) = plt.subplots(1, 2, figsize=(10, 4))
        roc.plot(curve["fpr"], curve["tpr"], marker=".")
        roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
        roc.scatter([fit.metrics["fpr"]], [fit.metrics["tpr"]], color="red", zorder=3)
        roc.set(xlabel="FPR (other candidates above)", ylabel="TPR (picked candidates above)",
                title=f"ROC, AUC {fit.metrics['auc']:.3f}")
        for column in ("tpr", "fpr", "precision", "f1"):
            rates.plot(curve["threshold"], curve[column], label=column)
        rates.axvline(fit.threshold, color="red", linestyle="--", label=f"chosen {fit.threshold:.3f}")
        rates.set(xlabel="good-match threshold (score >)", title=f"{fit.objective} on {clips} labelled clips")
        rates.legend()
        mlflow.log_figure(fig, f"{CURVE_ARTIFACT}.png")
        plt.close(fig)
        return active.info.run_id

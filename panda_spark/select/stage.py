"""Select stage (Spark wrapper): `candidate_captions` (+ `clip_frames`) → `captions`; and the
`selection_labels` loader.

Per clip, the candidates are the newest caption of each teacher, degenerate ones left out,
sorted by teacher. `good_match` is graded by `select.good_match_threshold`, or, when that is
empty, by the threshold calibrate-selection stored for the scorer version (`calibrations`); each
run regrades the scorer's captions, so a changed threshold takes effect without re-scoring. Incremental: a clip is scored again only when the scorer version changed or a
candidate caption was written after the clip was selected; pending clips go in waves of
`select.wave_clips`, each committed on its own. Scoring runs in a `mapInPandas` task
(`select_batch`) with the scorer resident per Python worker, `select.batch_size` clips per model
call, retried in halves on failure; a clip that still fails (or has no usable candidate, or no
frames for a dual encoder) goes to `errors` keyed by clip_id. Resources: the scorer's device
(`auto`: the task's GPU on clusters). The analyst views are (re)created at the end.
"""
from __future__ import annotations

import logging
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.select.calibrate import GOOD_MATCH
from panda_spark.select.core import RESULT_SCHEMA, select_batch
from panda_spark.select.labels import parse_labels
from panda_spark.select.registry import scorer_spec
from panda_spark.spark import gpu_profile, sql_string
from panda_spark.tables import ROW_HASH, Lakehouse, row_hash_sql
from panda_spark.waves import waves

log = logging.getLogger(__name__)
STAGE = "select"
LABELS_STAGE = "selection_labels"


def candidate_sets(lake: Lakehouse, clip_ids: DataFrame | None = None) -> DataFrame:
    """clip_id, candidates (teacher, teacher_version, caption; newest per teacher, not degenerate,
    sorted by teacher), candidates_hash; of the clips in `clip_ids` (default: all)."""
    candidates = lake.read("candidate_captions")
    if clip_ids is not None:
        candidates = candidates.join(clip_ids.select("clip_id"), "clip_id", "left_semi")
    newest = Window.partitionBy("clip_id", "teacher").orderBy(F.col("updated_at").desc(), F.col("teacher_version"))
    latest = candidates.withColumn("_n", F.row_number().over(newest)).filter("_n = 1")
    usable = ~F.coalesce(F.col("degenerate"), F.lit(False)) & F.col("caption").isNotNull()
    # collect_list skips NULLs: a clip whose every caption is degenerate gets an empty set, which
    # the core reports as an error
    sets = latest.groupBy("clip_id").agg(F.array_sort(F.collect_list(
        F.when(usable, F.struct("teacher", "teacher_version", "caption")))).alias("candidates"))
    return sets.withColumn("candidates_hash", F.sha2(F.to_json("candidates"), 256))


def pending_clips(lake: Lakehouse, scorer_version: str) -> DataFrame:
    """clip_id of the clips never selected by `scorer_version`, or whose candidate captions changed
    after they were (`selected_at` is when the candidates were read). Reads two narrow columns."""
    changed = lake.read("candidate_captions").groupBy("clip_id").agg(F.max("updated_at").alias("changed_at"))
    selected = lake.read("captions").filter(F.col("scorer_version") == scorer_version).select("clip_id", "selected_at")
    return (changed.join(selected, "clip_id", "left")
            .filter(F.col("selected_at").isNull() | (F.col("changed_at") > F.col("selected_at"))).select("clip_id"))


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    """Score the pending clips' candidates in waves of `select.wave_clips`; each wave commits its
    errors, then its `captions` rows (what marks a clip done), then regrades good_match."""
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    spec = scorer_spec(cfg)
    threshold = good_match_threshold(lake, cfg, spec.version)
    spark.sparkContext.setJobDescription(f"select: candidates not yet scored by {spec.version}")
    read_at = spark.sql("SELECT current_timestamp()").first()[0]  # before the candidates are read
    sets = candidate_sets(lake, pending_clips(lake, spec.version)).localCheckpoint(eager=True)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.spark.arrow_batch_rows))
    partitions = cfg.select.partitions or spark.sparkContext.defaultParallelism
    totals = {"in": 0, "selected": 0, "unchanged": 0, "errored": 0}
    for wave in waves(sets, "clip_id", cfg.select.wave_clips, STAGE, "clips"):
        todo = sets.join(wave.keys, "clip_id", "left_semi")
        if spec.needs_frames:
            clips = lake.read("clips").join(wave.keys, "clip_id", "left_semi").select("clip_id", "video_id")
            todo = todo.join(lake.frames_for(clips), "clip_id", "left")
        spark.sparkContext.setJobDescription(f"select: wave {wave.index + 1}: scoring with {spec.version}")
        results = todo.repartition(partitions).mapInPandas(
            partial(select_batch, spec=spec, threshold=threshold), RESULT_SCHEMA,
            **gpu_profile(cfg, cfg.select.task_gpus, cfg.select.executor_gpus),
        ).localCheckpoint(eager=True)
        ok = results.filter("status = 'selected'").select(
            "clip_id", "caption", "teacher", "teacher_version", "matching_score", "good_match", "candidates_hash",
            F.map_from_arrays("candidate_teachers", "candidate_score_values").alias("candidate_scores"),
            F.lit(spec.version).alias("scorer_version"), F.lit(read_at).alias("selected_at"))
        errors = results.filter("status = 'error'").select(
            F.col("clip_id").alias("key"), "error_class", "message",
            F.to_json(F.struct("clip_id", "candidates_hash", F.lit(spec.version).alias("scorer_version"))).alias("input_snapshot"))
        totals["errored"] += lake.record_errors(STAGE, errors).total
        lake.clear_errors(STAGE, ok.select(F.col("clip_id").alias("key")))
        merged = lake.merge("captions", ok)
        scored = results.count()
        totals["in"] += scored
        totals["selected"] += merged.inserted + merged.updated
        totals["unchanged"] += merged.unchanged
        wave.done(scored)
    regraded = regrade(lake, threshold, spec.version)
    report.counts.update(selected=totals["selected"], unchanged=totals["unchanged"], errored=totals["errored"],
                         regraded=regraded, good_match=lake.read("captions").filter("good_match").count())
    return report.finish(rows_in=totals["in"], rows_out=totals["selected"], errored=totals["errored"])


def good_match_threshold(lake: Lakehouse, cfg: Config, scorer_version: str) -> float | None:
    """`select.good_match_threshold`; when empty, the value calibrate-selection stored for
    `scorer_version`, or None (with a warning) while there is none."""
    if cfg.select.good_match_threshold is not None:
        return cfg.select.good_match_threshold
    row = (lake.read("calibrations").filter((F.col("name") == GOOD_MATCH) & (F.col("scorer_version") == scorer_version))
           .select("value").first())
    if row is None:
        log.warning("select: select.good_match_threshold is empty and %s has no calibrated one yet: good_match "
                    "stays NULL until panda-spark calibrate-selection", scorer_version)
        return None
    return row.value


def regrade(lake: Lakehouse, threshold: float | None, scorer_version: str) -> int:
    """Set `good_match` of the clips selected by `scorer_version` from `threshold` (None: NULL,
    ungraded); the number of rows whose flag changed. A threshold is on its scorer's scale, so
    rows of another scorer (imported Panda-70M scores, clips whose re-scoring failed) keep theirs."""
    lake.spark.sparkContext.setJobDescription(f"select: good_match at threshold {threshold}")
    good = "CAST(NULL AS BOOLEAN)" if threshold is None else f"(matching_score > {float(threshold)!r})"
    metrics = lake.committing("captions", "update", lambda _: lake.spark.sql(
        f"UPDATE {lake.name('captions')} SET good_match = {good}, updated_at = current_timestamp(), "
        f"{ROW_HASH} = {row_hash_sql('captions', replaced={'good_match': good})} "
        f"WHERE scorer_version = '{sql_string(scorer_version)}' AND NOT (good_match <=> {good})").first())
    return int(metrics["num_affected_rows"]) if metrics is not None else 0


def load_labels(spark: SparkSession, cfg: Config, run_id: str, labels: str | None = None) -> StageReport:
    """`selection_labels` from a CSV / JSON-lines file; rows that are malformed, name an unknown clip
    or pick a caption the clip does not have go to `errors` (stage `selection_labels`)."""
    report = StageReport(LABELS_STAGE, run_id)
    path = labels or cfg.select.labels
    if not path:
        raise ConfigError("conf key 'select.labels': expected a CSV or JSON-lines file of labels (or pass --labels PATH)")
    location = storage.resolve_path(path, "")
    try:
        with storage.open_binary(location) as fh:
            text = fh.read().decode("utf-8-sig")
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels {path}: cannot read it as a UTF-8 text file ({exc})") from exc
    rows, bad = parse_labels(location, text)
    lake = Lakehouse(spark, cfg, run_id)
    schema = "clip_id STRING, annotator STRING, chosen_teacher STRING, chosen_caption STRING, created_at TIMESTAMP, source STRING"
    parsed = spark.createDataFrame(rows, schema)
    checked = parsed.join(candidate_sets(lake), "clip_id", "left").withColumn("error_class", F.when(
        F.col("candidates").isNull(), F.lit("UnknownClip")).when(
        ~F.exists("candidates", lambda c: c.teacher.eqNullSafe(F.col("chosen_teacher"))
                  | c.caption.eqNullSafe(F.col("chosen_caption"))),
        F.lit("UnknownCandidate"))).localCheckpoint(eager=True)
    good = checked.filter(F.col("error_class").isNull()).withColumn(
        "created_at", F.coalesce("created_at", F.current_timestamp()))
    merged = lake.merge("selection_labels", good)
    unresolved = checked.filter(F.col("error_class").isNotNull()).select(
        F.concat_ws("/", "clip_id", "annotator").alias("key"), "error_class",
        F.when(F.col("error_class") == "UnknownClip", F.concat(F.lit("no candidate captions for clip "), "clip_id"))
        .otherwise(F.lit("the chosen teacher or caption is not among the clip's current candidates")).alias("message"),
        F.to_json(F.struct("clip_id", "annotator", "chosen_teacher", "chosen_caption")).alias("input_snapshot"))
    malformed = spark.createDataFrame([vars(e) for e in bad], "key STRING, error_class STRING, message STRING, input_snapshot STRING")
    errored = lake.record_errors(LABELS_STAGE, unresolved.unionByName(malformed)).total
    lake.clear_errors(LABELS_STAGE, good.select(F.concat_ws("/", "clip_id", "annotator").alias("key")))
    report.counts.update(loaded=merged.inserted + merged.updated, unchanged=merged.unchanged, errored=errored)
    return report.finish(rows_in=len(rows) + len(bad), rows_out=merged.inserted + merged.updated, errored=errored)

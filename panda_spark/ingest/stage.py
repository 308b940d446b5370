"""Ingest stage (Spark wrapper): manifest → `videos`, bad rows → `errors`.

Reads a manifest (CSV, JSON lines or Parquet; columns `video_id, path` and optional
`url, title, description, subtitles`, any other column kept in `videos.extra`), probes each
video in a `mapInPandas` (see :mod:`panda_spark.ingest.core`), MERGEs into `videos` by
`video_id`. A row whose file and manifest fields are unchanged since the last ingest is not
probed again. Counts: ingested (new), updated, unchanged, errored.
"""
from __future__ import annotations

import logging
import os
import posixpath
from functools import partial

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.ingest.core import MANIFEST_FIELDS, RESULT_SCHEMA, IngestOptions, ingest_batch
from panda_spark.runs import StageReport
from panda_spark.tables import Lakehouse
from panda_spark.waves import Progress, task_progress

STAGE = "ingest"
log = logging.getLogger(__name__)
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def run(spark: SparkSession, cfg: Config, run_id: str, manifest: str | None = None) -> StageReport:
    manifest = manifest or cfg.ingest.manifest
    if not manifest:
        raise ConfigError("ingest needs a manifest: pass --manifest PATH or set conf key 'ingest.manifest'")
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"ingest {manifest}")
    storage.use_options(cfg.paths.storage_options)

    rows = read_manifest(spark, manifest, cfg.ingest.manifest_format)
    rows, duplicates = split_duplicate_ids(rows)
    prior = lake.read("videos").select("video_id", F.col("source_signature").alias("prior_signature"))
    rows = rows.join(prior, "video_id", "left")
    partitions = cfg.ingest.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.ingest.batch_rows))
    options = IngestOptions(tuple(cfg.paths.allowed_roots), cfg.ingest.max_subtitle_bytes)
    probe = storage.in_tasks(partial(ingest_batch, options=options), cfg.paths.storage_options)
    results = rows.repartition(partitions).mapInPandas(probe, RESULT_SCHEMA)

    spark.sparkContext.setJobDescription("ingest: probe videos")
    # Rows probed ~ the probe's tasks done (each task holds about 1/partitions of the rows).
    progress = Progress(STAGE, "videos", rows.count(), waves=0)
    log.info("%s: %d videos to probe in %d task(s)", STAGE, progress.total, partitions)

    def probing(tasks_done: int, tasks: int) -> None:
        progress.running(0, tasks_done, tasks, done=progress.total * tasks_done // tasks)

    # Materialise once, cut from its lineage: a plain cache would be invalidated (and the videos
    # probed again, against the new `videos`) as soon as the MERGE below changes that table.
    with task_progress(spark.sparkContext, probing):
        results = results.localCheckpoint(eager=True)
    progress.advance(0, progress.total - progress.done)
    by_status = dict(results.groupBy("status").count().collect())
    merged = lake.merge("videos", as_videos(results.filter("status = 'ingested'")))
    errors = results.filter("status = 'error'").unionByName(duplicates, allowMissingColumns=True)
    errors = errors.localCheckpoint(eager=True)
    errored = lake.record_errors(STAGE, errors)
    lake.clear_errors(STAGE, results.filter("status IN ('ingested', 'unchanged')"))
    report.counts = {
        "ingested": merged.inserted,
        "updated": merged.updated,
        "unchanged": merged.unchanged + by_status.get("unchanged", 0),
        "errored": errored.total,
    }
    return report.finish(rows_in=results.count() + duplicates.count(), rows_out=merged.inserted + merged.updated,
                         errored=errored.total)


def read_manifest(spark: SparkSession, manifest: str, fmt: str = "auto") -> DataFrame:
    """Manifest rows with MANIFEST_FIELDS (strings), `extra_json`, `manifest_dir`, `manifest_row`."""
    location = storage.resolve_path(manifest, "")
    if not storage.is_uri(location) and not os.path.exists(location):
        raise ConfigError(f"--manifest {manifest}: no such file or directory")
    if fmt == "auto":
        ext = os.path.splitext(location.rstrip("/"))[1].lower()
        fmt = _FORMATS.get(ext, "parquet" if not ext else "")
        if not fmt:
            raise ConfigError(
                f"--manifest {manifest}: cannot tell its format from '{ext}'; "
                "set ingest.manifest_format to csv, jsonl or parquet"
            )
    if fmt == "csv":
        df = spark.read.csv(location, header=True, multiLine=True, escape='"', inferSchema=False)
    elif fmt == "jsonl":
        df = spark.read.json(location)
    else:
        df = spark.read.parquet(location)
    missing = [c for c in ("video_id", "path") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"--manifest {manifest}: missing column(s) {', '.join(missing)} "
            f"(expected video_id, path and optionally url, title, description, subtitles)"
        )
    extra_cols = [c for c in df.columns if c not in MANIFEST_FIELDS]
    extra = (
        F.to_json(F.create_map(*[x for c in extra_cols for x in (F.lit(c), F.col(c).cast("string"))]))
        if extra_cols
        else F.lit("{}")
    )
    base_dir = posixpath.dirname(location) if storage.is_uri(location) else os.path.dirname(location)
    return df.select(
        *[(F.col(c) if c in df.columns else F.lit(None)).cast("string").alias(c) for c in MANIFEST_FIELDS],
        extra.alias("extra_json"),
        F.lit(base_dir).alias("manifest_dir"),
        F.monotonically_increasing_id().alias("manifest_row"),
    )


def split_duplicate_ids(rows: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows to probe, error rows). The first row of an id wins; a later row with the same id and
    the same path is dropped, one with a different path becomes a DuplicateVideoId error."""
    by_id = Window.partitionBy("video_id").orderBy("manifest_row")
    path = F.trim("path")
    rows = rows.withColumn("_first_path", F.first(path).over(by_id)).withColumn("_n", F.row_number().over(by_id))
    has_id = F.col("video_id").isNotNull() & (F.trim("video_id") != "")
    conflict = has_id & (F.col("_n") > 1) & ~path.eqNullSafe(F.col("_first_path"))
    keep = ~has_id | (F.col("_n") == 1)
    duplicates = rows.filter(conflict).select(
        F.concat_ws("@", "video_id", path).alias("key"),
        F.col("video_id"),
        F.lit("error").alias("status"),
        F.lit("DuplicateVideoId").alias("error_class"),
        F.concat(F.lit("video_id "), F.col("video_id"), F.lit(" already names "), F.col("_first_path"),
                 F.lit(" earlier in the manifest; this row gives "), path).alias("message"),
        F.to_json(F.struct(*MANIFEST_FIELDS)).alias("input_snapshot"),
    )
    return rows.filter(keep).drop("_first_path", "_n"), duplicates


def as_videos(probed: DataFrame) -> DataFrame:
    """Probed rows (`ingest_row` results: ingest's, and download's) as `videos` rows."""
    return (
        probed.withColumn("extra", F.from_json("extra_json", "MAP<STRING, STRING>"))
        .withColumn("file_mtime", F.timestamp_seconds("file_mtime"))
    )

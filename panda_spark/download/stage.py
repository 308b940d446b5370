"""Download stage (Spark wrapper): `videos` rows with a url and no file → downloaded, probed `videos` rows.

Input: the `videos` rows with `url` set and no file (`tables.has_file`: imported by import-panda-csv,
path = url, no file yet), less those whose last `download` error is permanent (see
:data:`panda_spark.download.core.TRANSIENT_CLASSES`; `retry_failed` takes them too). In waves
of `download.wave_videos` videos, each host's rows are dealt round-robin into
`download.concurrency_per_host` lanes, each lane in one task, and fetched there
(:mod:`panda_spark.download.core`). Each wave is committed on its own:

- `videos`: MERGE of the downloaded rows: every probe column as ingest writes it, `path` the
  file under `download.path` (empty: `<paths.root>/downloads`), `url`, title, description and
  `extra` (origin `panda70m-csv` stays) kept. `probe_version` is now set: the video is never
  fetched again, and split takes it up;
- `errors` (stage `download`, key video_id, class, message, input_snapshot with the url): one row
  per failure; a video that downloads clears its earlier error.

Progress: per wave, videos done / failed / total and the bytes per second; the running wave's
tasks. Counts: videos (pending this run), downloaded, bytes, skipped (permanent failures left
alone), errored and `errors.<class>`.
"""
from __future__ import annotations

import logging
import time
from functools import partial

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.download.core import (INPUT_COLUMNS, RESULT_SCHEMA, TRANSIENT_CLASSES, DownloadOptions,
                                       download_batch, host_of)
from panda_spark.ingest.stage import as_videos
from panda_spark.runs import StageReport
from panda_spark.tables import Lakehouse, has_file
from panda_spark.waves import waves

STAGE = "download"
log = logging.getLogger(__name__)


def download_dir(cfg: Config) -> str:
    return cfg.download.path or f"{cfg.paths.root.rstrip('/')}/downloads"


def without_file(lake: Lakehouse) -> DataFrame:
    """`videos` rows that have a url and no file yet."""
    return lake.read("videos").filter(F.col("url").isNotNull() & ~has_file())


def failed_for_good(lake: Lakehouse) -> DataFrame:
    """video_id of the videos whose last download failed permanently."""
    return (lake.read("errors").filter((F.col("stage") == STAGE) & ~F.col("error_class").isin(*TRANSIENT_CLASSES))
            .select(F.col("key").alias("video_id")))


def pending(lake: Lakehouse, retry_failed: bool = False) -> DataFrame:
    """The videos this stage would fetch now."""
    videos = without_file(lake)
    return videos if retry_failed else videos.join(failed_for_good(lake), "video_id", "left_anti")


def run(spark: SparkSession, cfg: Config, run_id: str, retry_failed: bool = False) -> StageReport:
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    storage.use_options(cfg.paths.storage_options)
    options = DownloadOptions.from_settings(cfg.download, download_dir(cfg))
    skipped = 0 if retry_failed else without_file(lake).join(failed_for_good(lake), "video_id", "left_semi").count()
    rows = pending(lake, retry_failed).select(
        "video_id", "url", "title", "description", F.to_json("extra").alias("extra_json"))
    totals = {"videos": 0, "downloaded": 0, "bytes": 0, "errored": 0}
    by_class: dict[str, int] = {}
    started = time.monotonic()
    for wave in waves(rows, "video_id", cfg.download.wave_videos, STAGE, "videos"):
        spark.sparkContext.setJobDescription(f"download: wave {wave.index + 1}")
        results = fetched(rows.join(wave.keys, "video_id", "left_semi"), cfg, options).localCheckpoint(eager=True)
        downloaded = results.filter("status = 'downloaded'")
        lake.merge("videos", as_videos(downloaded))
        errors = results.filter("status = 'error'")
        lake.record_errors(STAGE, errors)
        lake.clear_errors(STAGE, downloaded)
        figures = results.agg(F.count("*"), F.sum(F.when(F.col("status") == "downloaded", 1).otherwise(0)),
                              F.sum("fetched_bytes")).first()
        wave_classes = dict(errors.groupBy("error_class").count().collect())
        totals["videos"] += figures[0]
        totals["downloaded"] += figures[1] or 0
        totals["bytes"] += figures[2] or 0
        totals["errored"] += figures[0] - (figures[1] or 0)
        for name, n in wave_classes.items():
            by_class[name] = by_class.get(name, 0) + n
        wave.done(figures[0])
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info("%s: %d downloaded, %d failed of %d videos; %.2f MB at %.2f MB/s%s", STAGE, totals["downloaded"],
                 totals["errored"], wave.progress.total, totals["bytes"] / 1e6, totals["bytes"] / 1e6 / elapsed,
                 "" if not wave_classes else " (" + ", ".join(f"{k} {v}" for k, v in sorted(wave_classes.items())) + ")")
    report.counts = {**totals, "skipped": skipped, **{f"errors.{k}": v for k, v in sorted(by_class.items())}}
    return report.finish(rows_in=totals["videos"], rows_out=totals["downloaded"], errored=totals["errored"])


def fetched(rows: DataFrame, cfg: Config, options: DownloadOptions) -> DataFrame:
    """RESULT_SCHEMA rows of downloading `rows` (video_id, url, title, description, extra_json):
    each host's videos dealt round-robin into its `download.concurrency_per_host` lanes (equal
    shares), each lane in one task of `download.partitions`."""
    order = Window.partitionBy("_host").orderBy(F.xxhash64("video_id"), "video_id")
    bucket = (F.row_number().over(order) - 1) % cfg.download.concurrency_per_host
    lanes = (rows.withColumn("_host", F.pandas_udf(_hosts, "string")("url"))
             .withColumn("lane", F.concat_ws("#", "_host", bucket.cast("string"))))
    partitions = cfg.download.partitions or rows.sparkSession.sparkContext.defaultParallelism
    fetch = storage.in_tasks(partial(download_batch, options=options), cfg.paths.storage_options)
    return lanes.repartition(partitions, "lane").select(*INPUT_COLUMNS).mapInPandas(fetch, RESULT_SCHEMA)


def _hosts(urls: pd.Series) -> pd.Series:
    return urls.fillna("").map(host_of)

"""export (Spark wrapper): `videos` + `clips` + `shots` + `captions` → Panda-70M CSVs and webdataset shards.

Input: every clip with a selected caption (`captions.caption` and a finite `matching_score`; with
`export.good_match_only` only good matches), its video's `url`, `path` and `extra`, and the
`shots` named by `clips.shot_ids`. Output, under `export.path` (default `<paths.root>/export`):

- `panda70m/panda70m_NNNNN.csv`: one row per source video in the published format
  (:mod:`panda_spark.dataset.panda70m`), `export.videos_per_csv` rows per file in video_id
  order. `desirable_filtering` is the label an imported clip came with, else `desirable` for a
  good match and `0_low_desirable_score` otherwise; `shot_boundary_detection` holds each clip's
  shots cut to the clip, relative to its start, as in the release.
- `webdataset/NNNNNN.tar` (`export.webdataset`): per clip `<clip_id>.mp4` (the stored clip file,
  or cut from the source: every video decoded once, in one task), `.txt` (caption) and `.json`
  (clip_id, video_id, url, times, teacher, matching_score, good_match, ...); a video's clips stay
  in one shard, `export.clips_per_shard` clips per shard. Clips of imported videos (no file) are
  in the CSV only.

The export is a snapshot: tasks write a staging directory beside the output, the driver swaps it
in at the end (a rerun on the same tables gives the same files). A video whose clips cannot be
cut goes to `errors` (stage `export`, key video_id) and its clips are left out of the shards.
Resources: CSV tasks are light; shard tasks hold one video's decoder and its clips' encoders.
"""
from __future__ import annotations

import uuid
from functools import partial

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.dataset.panda70m import DESIRABLE, LOW_DESIRABLE, header_line
from panda_spark.dataset.writers import STATUS_SCHEMA, csv_name, swap_in, write_csv_parts, write_shards, write_text
from panda_spark.runs import StageReport
from panda_spark.tables import Lakehouse, is_imported

STAGE = "export"
OUTPUTS = ("panda70m", "webdataset")


def export_root(cfg: Config) -> str:
    return (cfg.export.path or f"{cfg.paths.root.rstrip('/')}/export").rstrip("/")


def exported_clips(lake: Lakehouse, good_match_only: bool) -> DataFrame:
    """One row per exported clip: the clip, its selected caption, its video, its shots and label."""
    captions = lake.read("captions").filter(
        F.col("caption").isNotNull() & F.col("matching_score").isNotNull() & ~F.isnan("matching_score"))
    if good_match_only:
        captions = captions.filter("good_match")
    clips = lake.read("clips").select("clip_id", "video_id", "clip_idx", "start_frame", "end_frame", "start_s",
                                      "end_s", "shot_ids", "clip_path")
    shots = (clips.select("clip_id", F.explode("shot_ids").alias("shot_id"))
             .join(lake.read("shots").select("shot_id", "start_s", "end_s"), "shot_id")
             .groupBy("clip_id").agg(F.collect_list(F.struct("start_s", "end_s")).alias("shots")))
    videos = lake.read("videos").select(
        "video_id", "url", "path", is_imported().alias("imported"),
        F.from_json(F.col("extra").getItem("desirable_filtering"), "MAP<STRING, STRING>").alias("labels"))
    label = F.coalesce(F.col("labels")[F.col("clip_id")],
                       F.when(F.col("good_match"), F.lit(DESIRABLE)).otherwise(F.lit(LOW_DESIRABLE)))
    return (clips.join(captions.select("clip_id", "caption", "teacher", "teacher_version", "matching_score",
                                       "good_match"), "clip_id")
            .join(videos, "video_id").join(shots, "clip_id", "left")
            .withColumn("desirable_filtering", label).drop("labels", "shot_ids"))


def per_video(clips: DataFrame) -> DataFrame:
    """video_id, url, path, imported, clips (array of the clip rows, in time order)."""
    fields = ["start_s", "end_s", "clip_id", "clip_idx", "start_frame", "end_frame", "clip_path", "caption",
              "teacher", "teacher_version", "matching_score", "good_match", "desirable_filtering", "shots"]
    return clips.groupBy("video_id", "url", "path", "imported").agg(
        F.array_sort(F.collect_list(F.struct(*fields))).alias("clips"))


def _file_index(videos: DataFrame, per_file: int, weight: str | None = None) -> DataFrame:
    """video_id, index: files filled in video_id order, `per_file` videos (or `weight` units) each.
    The window over all videos runs in one task on two narrow columns."""
    order = Window.orderBy("video_id")
    if weight is None:
        before = F.row_number().over(order) - 1
    else:
        before = F.coalesce(F.sum(weight).over(order.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0))
    return videos.select("video_id", F.floor(before / per_file).cast("int").alias("index"))


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    root = export_root(cfg)
    staging = f"{root}/.staging-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"export to {root}")
    spark.sparkContext.setJobDescription("export: clips with selected captions")
    videos = per_video(exported_clips(lake, cfg.export.good_match_only)).localCheckpoint(eager=True)
    n_videos = videos.count()
    try:
        written = _write(spark, cfg, videos, staging, n_videos)
        swap_in(staging, root, OUTPUTS)
    except BaseException:
        storage.remove_tree(staging)
        raise

    stats = {r.output: r for r in written.groupBy("output").agg(
        F.countDistinct("file").alias("files"), F.count(F.when(F.col("status") == "written", 1)).alias("videos"),
        F.coalesce(F.sum(F.when(F.col("status") == "written", F.col("clips"))), F.lit(0)).alias("clips")).collect()}
    failed = written.filter("status = 'error'").dropDuplicates(["video_id"])
    errored = lake.record_errors(STAGE, failed.select(
        F.col("video_id").alias("key"), "error_class", "message",
        F.to_json(F.struct("video_id", "output", F.col("file").alias("file_index"))).alias("input_snapshot"))).total
    lake.clear_errors(STAGE, videos.select(F.col("video_id").alias("key")).join(
        failed.select(F.col("video_id").alias("key")), "key", "left_anti"))
    csv_rows = stats["csv"].videos if "csv" in stats else 0
    shards = stats.get("webdataset")
    report.counts = {"videos": n_videos, "csv_rows": csv_rows, "csv_files": stats["csv"].files if "csv" in stats else 1,
                     "shard_videos": shards.videos if shards else 0, "shard_clips": shards.clips if shards else 0,
                     "shards": shards.files if shards else 0, "errored": errored}
    return report.finish(rows_in=n_videos, rows_out=csv_rows + report.counts["shard_clips"], errored=errored)


def _write(spark: SparkSession, cfg: Config, videos: DataFrame, staging: str, n_videos: int) -> DataFrame:
    """Write the CSV parts and the shards into `staging`; one status row per video and output."""
    partitions = spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    spark.sparkContext.setJobDescription("export: Panda-70M CSV")
    parts = videos.join(_file_index(videos, cfg.export.videos_per_csv), "video_id").withColumnRenamed("index", "part")
    written = (parts.repartition(partitions, "part").sortWithinPartitions("part", "video_id")
               .mapInPandas(partial(write_csv_parts, out_dir=f"{staging}/panda70m"), STATUS_SCHEMA)
               .withColumn("output", F.lit("csv"))).localCheckpoint(eager=True)
    if n_videos == 0:  # an empty snapshot still says what it is
        write_text(f"{staging}/panda70m/{csv_name(0)}", header_line())
    if not cfg.export.webdataset:
        return written
    spark.sparkContext.setJobDescription("export: webdataset shards (cut clips, one decode per video)")
    media = videos.filter(~F.col("imported")).withColumn("n", F.size("clips"))
    shards = media.join(_file_index(media, cfg.export.clips_per_shard, "n"), "video_id").withColumnRenamed(
        "index", "shard")
    sharded = (shards.repartition(partitions, "shard").sortWithinPartitions("shard", "video_id")
               .mapInPandas(partial(write_shards, out_dir=f"{staging}/webdataset"), STATUS_SCHEMA)
               .withColumn("output", F.lit("webdataset")))
    return written.unionByName(sharded.localCheckpoint(eager=True))

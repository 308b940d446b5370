"""import-panda-csv (Spark wrapper): published Panda-70M CSVs → `videos`, `clips`, `shots`, `captions`.

Input: `--csv PATH`, one CSV or a directory of `*.csv` (the release's files, or `export`'s). Spark
reads each file (multiLine-safe, all cells as strings, one character per byte) and the records
are decoded as UTF-8, parsed and validated in a `mapInPandas` task
(:mod:`panda_spark.dataset.importer`; list cells are never evaluated).
Output, MERGEd by key (a reimport adds and changes nothing, and leaves what later stages made of the
rows: a downloaded video's file and probe, split's cut of a published clip, a caption select chose):

- `videos`: path = url (all its loaded records have the same), `extra['origin'] = 'panda70m-csv'`
  (:func:`panda_spark.tables.is_imported`: split, caption and the student skip these videos),
  `extra['desirable_filtering']` = a JSON object clip_id → label, `probe_version` NULL;
- `clips`: clip_id = uuid5(video, start, end, IMPORT_VERSION), preset `panda70m-csv`,
  splitter_version IMPORT_VERSION, no frames and no file; `shots` from shot_boundary_detection
  (absolute times); clip_idx / shot_idx number all of a video's imported clips / shots in time
  order, so a video found in several files (the 2M subset and the full set) gets their union;
- `captions`: teacher `panda70m`, the published matching_score, good_match from
  `select.good_match_threshold` (empty: the paper's 0.43, the published scores' own UMT scale).

A malformed record goes to `errors` (stage `import-panda-csv`, key videoID, or `<file>:row<N>`
when it has none or it is not UTF-8) with its class (InvalidEncoding, MissingField, MalformedList,
MalformedTimestamp, ...); a videoID that names an ingested (probed) video is `AlreadyIngested` and
leaves that video alone; a record repeating a videoID in the same file or with another url is
`DuplicateVideoId` (key `<videoID>@<file>:row<N>`, see
:func:`panda_spark.dataset.importer.duplicate_records`) and the first record loads. Errors of
records that now load are cleared, and so are errors from a file of the same name read again that
this run does not find again. Every record read is either imported or one error:
counts `records` = `imported` + the `errors.<class>` counts (`errored` their sum).
Resources: light; one task per file reads it, parsing is spread.
"""
from __future__ import annotations

import os
import posixpath

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.dataset.importer import (ERROR_SCHEMA, IMPORT_VERSION, READ_ENCODING, RESULT_SCHEMA, SCORER, TEACHER,
                                          duplicate_records, import_batch)
from panda_spark.dataset.panda70m import COLUMNS, REQUIRED_COLUMNS
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.select.calibrate import PAPER_GOOD_MATCH_THRESHOLD
from panda_spark.tables import IMPORTED_ORIGIN, TABLES, Lakehouse, has_file, is_imported

STAGE = "import-panda-csv"
_FIRST = ["source_file", "source_row"]  # of several records of one video or clip, the first wins
_CUT_COLUMNS = ("start_frame", "end_frame", "embedding", "params_hash", "clip_path")  # split's, on a published clip
_BOM = "\ufeff".encode("utf-8").decode(READ_ENCODING)  # a UTF-8 byte order mark as read


def csv_files(path: str) -> list[str]:
    """The CSV file `path`, or the `*.csv` files of the directory `path`, sorted."""
    location = storage.resolve_path(path, "")
    if storage.is_uri(location):
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(location)
        found = ([fs.unstrip_protocol(p) for p in sorted(fs.glob(f"{fs_path.rstrip('/')}/*.csv"))]
                 if fs.isdir(fs_path) else [location] if fs.isfile(fs_path) else [])
    elif os.path.isdir(location):
        found = [os.path.join(location, n) for n in sorted(os.listdir(location)) if n.endswith(".csv")]
    else:
        found = [location] if os.path.isfile(location) else []
    if not found:
        raise ConfigError(f"--csv {path}: no such CSV file, or a directory without *.csv files")
    return found


def read_records(spark: SparkSession, files: list[str]) -> DataFrame:
    """The CSV columns as strings read one character per byte (READ_ENCODING: decoding is the
    importer's, so no byte is replaced; absent optional columns NULL), source_file and source_row
    (the 1-based record number in its file; records may span lines)."""
    frames = []
    for path in files:
        df = spark.read.csv(path, header=True, multiLine=True, escape='"', inferSchema=False, mode="PERMISSIVE",
                            encoding=READ_ENCODING)
        df = df.toDF(*[c.removeprefix(_BOM).strip() for c in df.columns])
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ConfigError(f"--csv {path}: not a Panda-70M CSV, missing column(s) {', '.join(missing)} "
                              f"(expected the header {','.join(COLUMNS)})")
        # A multiLine CSV is never split, so the file is one partition and the id counts its records.
        frames.append(df.select(
            *[(F.col(c) if c in df.columns else F.lit(None)).cast("string").alias(c) for c in COLUMNS],
            F.lit(posixpath.basename(path)).alias("source_file"),
            (F.monotonically_increasing_id() + 1).alias("source_row")))
    records = frames[0]
    for frame in frames[1:]:
        records = records.unionByName(frame)
    return records


def _first_per(df: DataFrame, *key: str) -> DataFrame:
    first = Window.partitionBy(*key).orderBy(*_FIRST)
    return df.withColumn("_n", F.row_number().over(first)).filter("_n = 1").drop("_n")


def _renumbered(lake: Lakehouse, table: str, new: DataFrame, key: str, index: str) -> DataFrame:
    """`new` rows plus the table's other rows of the same videos, `index` renumbered over each
    video in time order (the stored rows change only where their number moved)."""
    domain = TABLES[table].domain_columns
    stored = (lake.read(table).join(new.select("video_id").distinct(), "video_id", "left_semi")
              .join(new.select(key), key, "left_anti").select(*domain))
    order = Window.partitionBy("video_id").orderBy("start_s", "end_s", key)
    return (new.select(*domain).unionByName(stored)
            .withColumn(index, (F.row_number().over(order) - 1).cast("int")))


def run(spark: SparkSession, cfg: Config, run_id: str, csv: str | None = None) -> StageReport:
    if not csv:
        raise ConfigError("import-panda-csv needs --csv PATH (a Panda-70M CSV or a directory of them)")
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    files = csv_files(csv)
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"import {csv}")
    spark.sparkContext.setJobDescription("import-panda-csv: read and parse records")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "512")
    records = read_records(spark, files)
    partitions = spark.sparkContext.defaultParallelism
    results = records.repartition(partitions).mapInPandas(import_batch, RESULT_SCHEMA).localCheckpoint(eager=True)
    rows_in = results.count()

    probed = lake.read("videos").filter(~is_imported()).select("video_id")
    parsed = results.filter("status = 'ok'")
    ingested = parsed.join(probed, "video_id", "left_semi").select(
        "key", "source_file", "source_row", F.lit("AlreadyIngested").alias("error_class"),
        F.concat(F.lit("video "), F.col("video_id"), F.lit(" was ingested from a file; "
                                                           "the CSV row would overwrite it")).alias("message"),
        F.to_json(F.struct("source_file", "source_row", "video_id", "url")).alias("input_snapshot"))
    candidates = parsed.join(probed, "video_id", "left_anti")
    repeated = candidates.groupBy("video_id").count().filter("count > 1").select("video_id")
    duplicates = (candidates.join(repeated, "video_id", "left_semi").select("video_id", "url", *_FIRST)
                  .groupBy("video_id").applyInPandas(duplicate_records, ERROR_SCHEMA))
    # one row per record that does not load: the counts below add up to the records read
    errors = results.filter("status = 'error'").select(
        "key", "source_file", "source_row", "error_class", "message", "input_snapshot").unionByName(
        ingested).unionByName(duplicates).localCheckpoint(eager=True)
    failed = _first_per(errors, "key")
    loaded = candidates.join(errors.select(*_FIRST), _FIRST, "left_anti").localCheckpoint(eager=True)

    spark.sparkContext.setJobDescription("import-panda-csv: merge")
    clips = _first_per(loaded.select("video_id", *_FIRST, F.explode("clips").alias("c")).select(
        "video_id", *_FIRST, "c.*"), "clip_id").localCheckpoint(eager=True)
    shots = _first_per(loaded.select("video_id", *_FIRST, F.explode("shots").alias("s")).select(
        "video_id", *_FIRST, "s.*"), "shot_id")
    # a re-import leaves what later stages made of a clip: split's cut, select's caption
    selected = lake.read("captions").filter(F.col("scorer_version") != F.lit(SCORER)).select("clip_id")
    merged = {
        "videos": lake.merge("videos", lake.complete("videos", _video_rows(lake, loaded, clips))),
        "clips": lake.merge("clips", _renumbered(lake, "clips", lake.complete("clips", clips.select(
            "clip_id", "video_id", "start_s", "end_s", "start_timecode", "end_timecode", "shot_ids",
            F.lit(IMPORTED_ORIGIN).alias("preset"), F.lit(IMPORT_VERSION).alias("splitter_version"))
            .join(lake.read("clips").select("clip_id", *_CUT_COLUMNS), "clip_id", "left")),
            "clip_id", "clip_idx")),
        "shots": lake.merge("shots", _renumbered(lake, "shots", lake.complete("shots", shots.select(
            "shot_id", "video_id", "start_s", "end_s", F.lit(IMPORT_VERSION).alias("splitter_version"))),
            "shot_id", "shot_idx")),
        "captions": lake.merge("captions", lake.complete("captions", clips.join(
            selected, "clip_id", "left_anti").select(
            "clip_id", "caption", F.lit(TEACHER).alias("teacher"), F.lit(IMPORT_VERSION).alias("teacher_version"),
            "matching_score", F.lit(SCORER).alias("scorer_version"),
            (F.col("matching_score") > F.lit(float(_good_match_threshold(cfg)))).alias("good_match")))),
    }
    lake.record_errors(STAGE, failed)
    reread = (lake.read("errors").filter(F.col("stage") == STAGE)
              .filter(F.get_json_object("input_snapshot", "$.source_file").isin([posixpath.basename(f) for f in files]))
              .select("key"))
    lake.clear_errors(STAGE, loaded.select("key").unionByName(reread).join(failed.select("key"), "key", "left_anti"))
    by_class = dict(sorted((r.error_class, r["count"]) for r in errors.groupBy("error_class").count().collect()))
    errored = sum(by_class.values())
    report.counts = {"records": rows_in, "imported": loaded.count(), **{f"errors.{c}": n for c, n in by_class.items()},
                     "errored": errored, "videos": loaded.select("video_id").distinct().count(),
                     **{f"{t}.changed": m.inserted + m.updated for t, m in merged.items()}}
    changed = sum(m.inserted + m.updated for m in merged.values())
    return report.finish(rows_in=rows_in, rows_out=changed, errored=errored)


def _video_rows(lake: Lakehouse, loaded: DataFrame, clips: DataFrame) -> DataFrame:
    """One `videos` row per loaded video: its url; extra holds the origin and the
    desirable_filtering labels of its clips, this import's over those a previous one stored. A
    video `download` has fetched keeps its file and probe columns."""
    first = _first_per(loaded, "video_id").select("video_id", "url")
    stored = (lake.read("videos").join(first, "video_id", "left_semi").select("video_id", F.explode(
        F.from_json(F.col("extra").getItem("desirable_filtering"), "MAP<STRING, STRING>")).alias("clip_id", "label"))
        .withColumn("_rank", F.lit(1)))
    labels = clips.filter(F.col("desirable_filtering").isNotNull()).select(
        "video_id", "clip_id", F.col("desirable_filtering").alias("label"), F.lit(0).alias("_rank"))
    newest = Window.partitionBy("video_id", "clip_id").orderBy("_rank")
    label_json = (labels.unionByName(stored).withColumn("_n", F.row_number().over(newest)).filter("_n = 1")
                  .groupBy("video_id").agg(F.to_json(F.map_from_entries(F.array_sort(
                      F.collect_list(F.struct("clip_id", "label"))))).alias("labels")))
    extra = F.map_filter(F.create_map(F.lit("origin"), F.lit(IMPORTED_ORIGIN),
                                      F.lit("desirable_filtering"), F.col("labels")), lambda k, v: v.isNotNull())
    downloaded = lake.read("videos").filter(has_file()).join(first, "video_id", "left_semi").select(
        *[c for c in TABLES["videos"].domain_columns if c not in ("url", "extra")])
    return (first.join(label_json, "video_id", "left").select("video_id", "url", extra.alias("extra"))
            .join(downloaded, "video_id", "left").withColumn("path", F.coalesce("path", "url")))


def _good_match_threshold(cfg: Config) -> float:
    """Published matching scores are UMT's: without a conf threshold, the paper's is theirs."""
    threshold = cfg.select.good_match_threshold
    return PAPER_GOOD_MATCH_THRESHOLD if threshold is None else threshold

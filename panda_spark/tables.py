"""The table catalog: the only module that knows table names, schemas, keys and how to write them.

Every table is Delta with Change Data Feed on, liquid-clustered by the column its MERGEs and
joins use, with optimized writes and auto compaction. Writes go through :meth:`Lakehouse.merge`,
an idempotent MERGE on the table's key: a row whose content (`row_hash`) is unchanged is left
alone, a changed row is updated (its `created_at` kept), a new key is inserted. A write that
loses a conflict to another writer is retried. Stage failures go through
:meth:`Lakehouse.record_errors`, one current row per (stage, key).

Delta has no transaction over several tables: a stage that writes several tables for one unit of
work (split: a video's shots, clips and frames) writes them first and the unit's `commits` row
last; its skip check and its readers look only at committed units, so a crash between two
writes leaves nothing half-visible and a rerun redoes the unit.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Sequence, TypeVar

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructType

from panda_spark.config import Config
from panda_spark.errors import WriteConflict
from panda_spark.spark import ddl_schema, sql_string, quote_name, schema_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

AUDIT_COLUMNS = ("run_id", "created_at", "updated_at")
# The sha256 of a row's domain columns, written with the row: MERGE compares it to find changed rows.
ROW_HASH = "row_hash"
_AUDIT_DDL = f"{ROW_HASH} STRING, run_id STRING, created_at TIMESTAMP, updated_at TIMESTAMP"
CUE_DDL = "ARRAY<STRUCT<start_s: DOUBLE, end_s: DOUBLE, text: STRING>>"


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: str  # Spark DDL of the domain columns; audit columns are appended
    key: tuple[str, ...]
    comment: str
    audited: bool = True
    # Delta liquid clustering: the column(s) the table's MERGEs and joins look rows up by, so that
    # a lookup of a few keys reads a few files (OPTIMIZE, run by `panda-spark maintain`, clusters).
    cluster_by: tuple[str, ...] = ()

    @property
    def ddl(self) -> str:
        return f"{self.columns}, {_AUDIT_DDL}" if self.audited else self.columns

    @property
    def schema(self) -> StructType:
        return ddl_schema(self.ddl)

    @property
    def domain_columns(self) -> list[str]:
        """The columns a stage writes (not the audit columns and row hash the writer adds)."""
        return [f.name for f in ddl_schema(self.columns)]


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in [
        TableSpec(
            "videos",
            "video_id STRING NOT NULL, path STRING NOT NULL, url STRING, title STRING, description STRING, "
            "duration_s DOUBLE, fps DOUBLE, fps_rational STRING, avg_fps DOUBLE, frame_count BIGINT, "
            "width INT, height INT, codec STRING, pix_fmt STRING, container STRING, has_audio BOOLEAN, "
            "bytes BIGINT, file_mtime TIMESTAMP, content_hash STRING, "
            f"subtitles {CUE_DDL}, subtitles_format STRING, subtitles_source STRING, "
            "extra MAP<STRING, STRING>, source_signature STRING, probe_version STRING, "
            # degrees the stored picture turns clockwise to be shown (width/height are as stored)
            "rotation INT",
            key=("video_id",), cluster_by=("video_id",),
            comment="Source videos: probed container facts, metadata and subtitle cues (ingest)",
        ),
        TableSpec(
            "shots",
            "shot_id STRING NOT NULL, video_id STRING NOT NULL, shot_idx INT, start_frame BIGINT, "
            "end_frame BIGINT, start_s DOUBLE, end_s DOUBLE, forced BOOLEAN, cut_score DOUBLE, "
            "params_hash STRING, splitter_version STRING, source_hash STRING",
            key=("shot_id",), cluster_by=("video_id",),
            comment="Shots from content-based cut detection plus forced cuts (split)",
        ),
        TableSpec(
            "clips",
            "clip_id STRING NOT NULL, video_id STRING NOT NULL, clip_idx INT, start_frame BIGINT, "
            "end_frame BIGINT, start_s DOUBLE, end_s DOUBLE, start_timecode STRING, end_timecode STRING, "
            "shot_ids ARRAY<STRING>, embedding ARRAY<FLOAT>, preset STRING, params_hash STRING, "
            "splitter_version STRING, clip_path STRING",
            key=("clip_id",), cluster_by=("video_id",),
            comment="Semantically coherent clips stitched from shots (split)",
        ),
        TableSpec(
            "clip_frames",
            "clip_id STRING NOT NULL, frame_idx INT NOT NULL, video_id STRING NOT NULL, frame_number BIGINT, role STRING, "
            "width INT, height INT, jpeg BINARY",
            key=("clip_id", "frame_idx"), cluster_by=("clip_id",),
            comment="Frames sampled per clip during the split decode, as JPEG (split)",
        ),
        TableSpec(
            "candidate_captions",
            "clip_id STRING NOT NULL, teacher STRING NOT NULL, teacher_version STRING NOT NULL, "
            "inputs ARRAY<STRING>, prompt STRING, caption STRING, degenerate BOOLEAN, generation_s DOUBLE",
            key=("clip_id", "teacher_version"), cluster_by=("clip_id",),
            comment="One caption per clip and teacher model (caption)",
        ),
        TableSpec(
            "captions",
            "clip_id STRING NOT NULL, caption STRING, teacher STRING, teacher_version STRING, "
            "matching_score DOUBLE, candidate_scores MAP<STRING, DOUBLE>, scorer_version STRING, "
            "good_match BOOLEAN, candidates_hash STRING, selected_at TIMESTAMP",
            key=("clip_id",), cluster_by=("clip_id",),
            comment="The selected (gold) caption per clip (select)",
        ),
        TableSpec(
            "student_rows",
            "clip_id STRING NOT NULL, features_version STRING NOT NULL, inputs_hash STRING, caption STRING, "
            "frame_features ARRAY<FLOAT>, caption_ids ARRAY<INT>, caption_mask ARRAY<INT>, metadata_ids ARRAY<INT>, "
            "metadata_mask ARRAY<INT>, subtitles_ids ARRAY<INT>, subtitles_mask ARRAY<INT>",
            key=("clip_id", "features_version"), cluster_by=("clip_id",),
            comment="Student training rows: frozen-encoder frame features and token ids per clip, built in "
                    "waves and kept for the next training (train-student)",
        ),
        TableSpec(
            "selection_labels",
            "clip_id STRING NOT NULL, annotator STRING NOT NULL, chosen_teacher STRING, "
            "chosen_caption STRING, source STRING",
            key=("clip_id", "annotator"), cluster_by=("clip_id",),
            comment="Human picks of the best candidate caption, for selector fine-tuning",
        ),
        TableSpec(
            "calibrations",
            "name STRING NOT NULL, scorer_version STRING NOT NULL, value DOUBLE, objective STRING, n_clips BIGINT, "
            "metrics MAP<STRING, DOUBLE>, mlflow_run_id STRING",
            key=("name", "scorer_version"),
            comment="Thresholds fitted on labelled clips, per scorer version (calibrate-selection: "
                    "select.good_match_threshold, used by select when the conf leaves it empty)",
        ),
        TableSpec(
            "evaluations",
            "source STRING NOT NULL, reference STRING NOT NULL, metric STRING NOT NULL, value DOUBLE, "
            "n_clips BIGINT, mlflow_run_id STRING",
            key=("source", "reference", "metric"),
            comment="Caption metrics (BLEU-4, METEOR, ROUGE-L, CIDEr) per caption source (evaluate)",
        ),
        TableSpec(
            "exported_videos",
            "video_id STRING NOT NULL, output STRING NOT NULL, file_index INT, clips INT, content_hash STRING",
            key=("video_id", "output"), cluster_by=("video_id",),
            comment="Which export file holds each video, and the hash of what was written there (export)",
        ),
        TableSpec(
            "commits",
            "stage STRING NOT NULL, key STRING NOT NULL, version STRING, input_hash STRING, "
            "outputs MAP<STRING, BIGINT>",
            key=("stage", "key"), cluster_by=("stage", "key"),
            comment="Units of work a stage has finished, written after all of their output rows: a unit "
                    "without a row here (of the current version and input) is done again (split: key video_id)",
        ),
        TableSpec(
            "stage_runs",
            "run_id STRING NOT NULL, stage STRING NOT NULL, status STRING, rows_in BIGINT, rows_out BIGINT, "
            "errored BIGINT, seconds DOUBLE, counts MAP<STRING, DOUBLE>, message STRING, started_at TIMESTAMP, "
            "finished_at TIMESTAMP",
            key=("run_id", "stage"), cluster_by=("run_id",),
            comment="One row per stage of each pipeline run: rows in, out, errored, seconds, status (pipeline)",
            audited=False,
        ),
        TableSpec(
            "errors",
            "stage STRING NOT NULL, key STRING NOT NULL, error_class STRING NOT NULL, message STRING, "
            "input_snapshot STRING, run_id STRING, time TIMESTAMP",
            key=("stage", "key"), cluster_by=("stage", "key"),
            comment="Inputs a stage could not process: the current failure per (stage, key)",
            audited=False,
        ),
    ]
}

ERROR_INPUT_COLUMNS = ("key", "error_class", "message", "input_snapshot")


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def qualified_name(cfg: Config, name: str) -> str:
    """`catalog`.`schema`.`name` (catalog only when the conf names one), quoted."""
    return quote_name(".".join(p for p in (cfg.catalog.catalog, cfg.catalog.schema, name) if p))


class Lakehouse:
    """Names, creates, reads and MERGEs the pipeline's tables for one config.

    Every write is one Delta commit of materialised rows, retried with backoff when it loses a
    conflict to another writer (:meth:`committing`); `commit_hooks` are called after each commit
    with (table, operation), which is how tests stop a stage between two commits."""

    commit_hooks: list[Callable[[str, str], None]] = []

    def __init__(self, spark: SparkSession, cfg: Config, run_id: str):
        self.spark, self.cfg, self.run_id = spark, cfg, run_id
        self._ensured: set[str] = set()

    def name(self, table: str) -> str:
        return qualified_name(self.cfg, TABLES[table].name)

    def _location(self, table: str) -> str | None:
        if self.cfg.catalog.location:
            return f"{self.cfg.catalog.location.rstrip('/')}/{table}"
        if self.cfg.spark.mode == "embedded":
            return str(schema_dir(self.cfg) / table)
        return None  # managed table in the cluster's metastore / Unity Catalog

    def ensure(self, *tables: str) -> None:
        """Create the named tables (default: all) if they do not exist; a table made by an older
        version gets the columns it lacks (NULL in old rows) and its clustering."""
        for table in tables or tuple(TABLES):
            if table in self._ensured:
                continue
            spec = TABLES[table]
            location = self._location(table)
            cluster = f"CLUSTER BY ({_cols('', list(spec.cluster_by))}) " if spec.cluster_by else ""
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.name(table)} ({spec.ddl}) USING DELTA {cluster}"
                f"COMMENT '{sql_string(spec.comment)}' "
                + (f"LOCATION '{sql_string(location)}' " if location else "")
                + f"TBLPROPERTIES ({_TABLE_PROPERTIES})"
            )
            self._migrate(table)
            self._ensured.add(table)

    def _migrate(self, table: str) -> None:
        spec, name = TABLES[table], self.name(table)
        have = set(self.spark.table(name).columns)
        missing = [f for f in spec.schema if f.name not in have]
        if missing:
            log.warning("table %s: adding columns %s (created by an older version)", table, [f.name for f in missing])
            self.spark.sql(f"ALTER TABLE {name} ADD COLUMNS ("
                           + ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing) + ")")
        if spec.cluster_by:  # once per table and Lakehouse: tables made before clustering get it
            apply_clustering(self.spark, table, name, self.spark.sql(f"DESCRIBE DETAIL {name}").first())

    def read(self, table: str) -> DataFrame:
        self.ensure(table)
        return self.spark.table(self.name(table))

    def conform(self, table: str, df: DataFrame) -> DataFrame:
        """Select the table's columns from `df` in table order, cast to the table's types.

        Audit columns missing from `df` are filled (this run's id, now), and `row_hash`: the
        hash of the compared columns that tells a changed row from an unchanged one.
        """
        spec = TABLES[table]
        missing = [f.name for f in spec.schema
                   if f.name not in df.columns and f.name not in _FILLED and f.name != ROW_HASH]
        if missing:
            raise ValueError(f"rows for table {table} lack columns {missing}")
        cols: list[Column] = []
        for f in spec.schema:
            if f.name in df.columns and f.name != ROW_HASH:
                cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
            elif f.name != ROW_HASH:
                cols.append(_FILLED[f.name](self.run_id).cast(f.dataType).alias(f.name))
        typed = df.select(cols)
        return typed.withColumn(ROW_HASH, F.expr(row_hash_sql(table))) if spec.audited else typed

    def complete(self, table: str, df: DataFrame) -> DataFrame:
        """`df` with the table's domain columns it lacks as typed NULLs (rows that know only part of a
        table's columns, e.g. imported metadata without probe facts)."""
        return df.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in TABLES[table].schema
                                if f.name not in df.columns and f.name not in (*AUDIT_COLUMNS, ROW_HASH)])

    def merge(self, table: str, df: DataFrame) -> MergeCounts:
        """Idempotent upsert of `df` into `table` by its key; the source must hold each key once."""
        return self._merge(table, self.conform(table, df), stale=None)

    def replace(self, table: str, df: DataFrame, scope: DataFrame) -> MergeCounts:
        """Like :meth:`merge`, and also delete the rows of the videos in `scope` (column `video_id`)
        that `df` no longer holds: a video processed again with other parameters keeps no old rows."""
        source = self.conform(table, df)
        key = list(TABLES[table].key)
        stale = (self.read(table).join(scope.select("video_id").distinct(), "video_id", "left_semi")
                 .join(source.select(*key), key, "left_anti"))
        return self._merge(table, source, stale)

    def delete(self, table: str, keys: DataFrame, on: Sequence[str] | None = None) -> int:
        """Delete the rows of `table` matching a row of `keys` on the columns `on` (default: the
        table's key); the number deleted."""
        self.ensure(table)
        on = list(on or TABLES[table].key)
        source = keys.select(*on).distinct().localCheckpoint(eager=True)
        if source.isEmpty():
            return 0
        condition = " AND ".join(f"t.`{c}` = s.`{c}`" for c in on) + self._pruning(table, source)
        metrics = self.committing(table, "delete", lambda view: self.spark.sql(
            f"MERGE INTO {self.name(table)} t USING {view} s ON {condition} WHEN MATCHED THEN DELETE").first(),
            source)
        return int(metrics["num_deleted_rows"])

    def _merge(self, table: str, source: DataFrame, stale: DataFrame | None) -> MergeCounts:
        spec = TABLES[table]
        self.ensure(table)
        total = source.count()  # callers pass materialised rows, so this does not recompute a UDF
        if stale is not None:
            source = source.withColumn("_delete", F.lit(False)).unionByName(stale.withColumn("_delete", F.lit(True)))
            source = source.localCheckpoint(eager=True)  # a retried commit re-reads the same rows
        elif total == 0:
            return MergeCounts(0, 0, 0)
        columns = [f.name for f in spec.schema]
        if spec.audited:  # the stored hash: no column of the target is read to compare
            same_content = f"t.`{ROW_HASH}` <=> s.`{ROW_HASH}`"
        else:
            compared = [c for c in columns if c not in _NOT_COMPARED]
            same_content = f"to_json(struct({_cols('t', compared)})) <=> to_json(struct({_cols('s', compared)}))"
        updated = ", ".join(f"t.`{c}` = s.`{c}`" for c in columns if c != "created_at")
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key) + self._pruning(table, source)
        delete = "WHEN MATCHED AND s._delete THEN DELETE " if stale is not None else ""
        insert_if = "AND NOT s._delete " if stale is not None else ""
        metrics = self.committing(table, "merge", lambda view: self.spark.sql(
            f"MERGE INTO {self.name(table)} t USING {view} s ON {on} {delete}"
            f"WHEN MATCHED AND NOT ({same_content}) THEN UPDATE SET {updated} "
            f"WHEN NOT MATCHED {insert_if}THEN INSERT ({_cols('', columns)}) VALUES ({_cols('s', columns)})"
        ).first(), source)
        inserted, updated_n = int(metrics["num_inserted_rows"]), int(metrics["num_updated_rows"])
        counts = MergeCounts(inserted, updated_n, total - inserted - updated_n, int(metrics["num_deleted_rows"]))
        log.info("merge %s: %s", table, counts)
        return counts

    def _pruning(self, table: str, source: DataFrame) -> str:
        """` AND t.<clustering column> IN (...)` when the source holds few values of it: Delta then
        skips the files whose statistics exclude them instead of joining every file of the table."""
        column = next(iter(TABLES[table].cluster_by), None)
        if column is None or column not in source.columns:
            return ""
        values = source.select(column).distinct().limit(PRUNE_MAX_VALUES + 1).collect()
        if not values or len(values) > PRUNE_MAX_VALUES or any(v[0] is None for v in values):
            return ""
        return f" AND t.`{column}` IN ({', '.join(repr_sql(v[0]) for v in values)})"

    def committing(self, table: str, operation: str, write: Callable[[str], T], source: DataFrame | None = None) -> T:
        """Run `write(view)` (one Delta commit; `view` names `source`), retrying a lost conflict with
        exponential backoff up to catalog.write_retries times, then :class:`WriteConflict`."""
        view = f"_{operation}_source_{table}"
        if source is not None:
            source.createOrReplaceTempView(view)
        self.spark.sparkContext.setJobDescription(f"{operation} {table}")
        retries, backoff = self.cfg.catalog.write_retries, self.cfg.catalog.retry_backoff_s
        try:
            for attempt in range(retries + 1):
                try:
                    result = write(view)
                    break
                except Exception as exc:  # py4j / PySpark wrap Delta's exceptions
                    conflict = delta_conflict(exc)
                    if conflict is None:
                        raise
                    if attempt == retries:
                        raise WriteConflict(
                            f"table {self.name(table)}: another writer committed to it during each of "
                            f"{retries + 1} attempts of this {operation} ({conflict}); work committed before "
                            "stays: let the other job finish (one job per stage at a time), then rerun this "
                            "command; or raise catalog.write_retries") from None
                    pause = backoff * 2 ** attempt * (1 + random.random())
                    log.warning("%s %s lost a write conflict (%s); retry %d of %d in %.1f s",
                                operation, table, conflict, attempt + 1, retries, pause)
                    time.sleep(pause)
        finally:
            if source is not None:
                self.spark.catalog.dropTempView(view)
        for hook in self.commit_hooks:
            hook(table, operation)
        return result

    def record_errors(self, stage: str, errors: DataFrame) -> MergeCounts:
        """Upsert one row per failing input (columns key, error_class, message, input_snapshot)."""
        rows = errors.select(*ERROR_INPUT_COLUMNS).withColumn("stage", F.lit(stage))
        rows = rows.withColumn("time", F.current_timestamp())
        return self.merge("errors", rows.localCheckpoint(eager=True))

    def clear_errors(self, stage: str, keys: DataFrame) -> None:
        """Delete errors of `stage` for inputs that have now been processed (column `key`)."""
        errors = self.read("errors").filter(F.col("stage") == stage).select("key")
        resolved = keys.select("key").distinct().join(errors, "key", "left_semi")
        if not resolved.isEmpty():  # the usual case: a cheap scan instead of a MERGE commit
            self.delete("errors", resolved.withColumn("stage", F.lit(stage)))

    def frames_for(self, clips: DataFrame, role: str | None = "uniform") -> DataFrame:
        """clip_id, frames: the stored frames (frame_idx, role, jpeg) of `role` (None: all) of the
        clips in `clips` (columns clip_id, video_id) only, reading only the files that may hold them."""
        return _frames_by_clip(self.rows_of_videos("clip_frames", clips).join(clips.select("clip_id"), "clip_id",
                                                                                "left_semi"), role)

    def frames_per_clip(self, role: str | None = "uniform") -> DataFrame:
        """clip_id, frames: every clip's stored frames (frame_idx, role, jpeg) of `role` (None: all)."""
        return _frames_by_clip(self.read("clip_frames"), role)

    def rows_of_videos(self, table: str, videos: DataFrame) -> DataFrame:
        """The rows of `table` (one with video_id and created_at) of the videos in `videos`.

        Every row of a video is written after the video was first ingested, so `created_at` at or
        after the earliest first ingest of these videos (less an hour for clock skew between
        drivers) holds them all: Delta skips the files written before by their statistics, and an
        increment of new videos reads the new files, not the table.

        A wave's few videos are broadcast: the rows (frames hold JPEGs) are filtered where they are
        read instead of shuffled to meet the ids, whose checkpointed set Spark cannot size."""
        wanted = videos.select("video_id").distinct()
        first, count = self.read("videos").join(wanted, "video_id", "left_semi").agg(
            F.min("created_at"), F.count(F.lit(1))).first()
        rows = self.read(table)
        if first is not None:
            rows = rows.filter(F.col("created_at") >= F.lit(first - CLOCK_SKEW))
        return rows.join(F.broadcast(wanted) if count <= BROADCAST_MAX_KEYS else wanted, "video_id", "left_semi")

    def committed(self, stage: str, version: str | None = None) -> DataFrame:
        """key, version, input_hash: the units of work `stage` has committed (of `version`)."""
        done = self.read("commits").filter(F.col("stage") == stage)
        return (done if version is None else done.filter(F.col("version") == version)).select(
            "key", "version", "input_hash")

    def commit(self, stage: str, units: DataFrame) -> MergeCounts:
        """Mark units of work of `stage` (columns key, version, input_hash, outputs) as committed:
        the last write of a unit, after all of its outputs."""
        return self.merge("commits", units.withColumn("stage", F.lit(stage)))

    def visible_clips(self, imported: bool = True) -> DataFrame:
        """The `clips` rows readers may use: of videos whose split is committed with the clips'
        parameters (a video being split again shows none until its new rows are all in), and (with
        `imported`) the other clips of videos loaded by import-panda-csv (their published clips,
        before split cut them)."""
        clips = self.read("clips")
        split = self.committed("split").select(F.col("key").alias("video_id"), F.col("version").alias("params_hash"))
        visible = clips.join(split, ["video_id", "params_hash"], "left_semi")
        if imported:  # those not cut at their published times yet (or being cut again)
            visible = visible.unionByName(clips.join(
                self.read("videos").filter(is_imported()).select("video_id"), "video_id", "left_semi")
                .join(split, ["video_id", "params_hash"], "left_anti"))
        return visible

    def remove_clips(self, clips: DataFrame) -> dict[str, int]:
        """Delete every row that refers to the clips in `clips` (column clip_id) outside `clips`
        itself: frames, candidate and selected captions, labels and their errors. Returns the
        rows deleted per table."""
        gone = clips.select("clip_id").distinct().localCheckpoint(eager=True)
        if gone.isEmpty():
            return {}
        deleted = {t: self.delete(t, gone, ["clip_id"]) for t in CLIP_TABLES}
        errors = self.read("errors").filter(F.col("stage").isin(*CLIP_KEYED_STAGES)).select(
            "stage", "key", F.substring_index("key", "/", 1).alias("clip_id")).join(gone, "clip_id", "left_semi")
        deleted["errors"] = self.delete("errors", errors)
        return deleted

    def counts(self) -> dict[str, int]:
        return {table: self.read(table).count() for table in TABLES}


# Tables whose rows belong to one clip, besides `clips`, and the stages whose error keys start
# with a clip_id (`<clip_id>` or `<clip_id>/<teacher or annotator>`).
CLIP_TABLES = ("clip_frames", "candidate_captions", "captions", "selection_labels", "student_rows")
CLIP_KEYED_STAGES = ("caption", "select", "train-student", "selection_labels", "calibrate-selection")
# How far the clocks of two drivers that wrote one lakehouse may disagree (see rows_of_videos).
CLOCK_SKEW = timedelta(hours=1)
# Key sets up to this many ids are broadcast to the executors (about 10 MB of uuids; see rows_of_videos).
BROADCAST_MAX_KEYS = 200_000
# A MERGE whose source holds at most this many values of the clustering column names them in its
# condition, so that Delta reads only the files whose statistics may hold them.
PRUNE_MAX_VALUES = 2000
_TABLE_PROPERTIES = ("delta.enableChangeDataFeed = true, delta.autoOptimize.optimizeWrite = true, "
                     "delta.autoOptimize.autoCompact = true")
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "MetadataChangedException", "ProtocolChangedException",
              "DELTA_CONCURRENT_")


def apply_clustering(spark: SparkSession, table: str, name: str, detail) -> bool:
    """Cluster the Delta table `name` (its DESCRIBE DETAIL row: `detail`) by TABLES[table].cluster_by,
    with the tables' properties, where it is not clustered so yet (made by an older version);
    whether it had to. Rows are not rewritten: OPTIMIZE clusters them."""
    wanted = list(TABLES[table].cluster_by)
    if not wanted or list(detail["clusteringColumns"] or []) == wanted:
        return False
    spark.sql(f"ALTER TABLE {name} CLUSTER BY ({_cols('', wanted)})")
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({_TABLE_PROPERTIES})")
    return True


def delta_conflict(exc: BaseException) -> str | None:
    """The name of the Delta write conflict `exc` reports, or None for any other failure."""
    text = f"{type(exc).__name__}: {exc}"
    for name in _CONFLICTS:
        at = text.find(name)
        if at >= 0:
            end = at + len(name)
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            return text[at:end]
    return None


# Columns the writer fills when a stage's rows do not carry them.
_FILLED = {
    "run_id": lambda run_id: F.lit(run_id),
    "created_at": lambda run_id: F.current_timestamp(),
    "updated_at": lambda run_id: F.current_timestamp(),
}
# Bookkeeping columns: a row that differs only in these is unchanged (generation_s: a timing).
_NOT_COMPARED = {*AUDIT_COLUMNS, ROW_HASH, "time", "generation_s"}


def _frames_by_clip(frames: DataFrame, role: str | None) -> DataFrame:
    frames = frames if role is None else frames.filter(F.col("role") == role)
    return frames.groupBy("clip_id").agg(F.collect_list(F.struct("frame_idx", "role", "jpeg")).alias("frames"))


def row_hash_sql(table: str, alias: str = "", replaced: dict[str, str] | None = None) -> str:
    """SQL for the sha256 of a row's compared columns (binary ones by their own hash, so that no
    frame is serialised to compare): what `row_hash` stores. `replaced`: column → the SQL of its
    new value (an UPDATE's SET reads the old ones)."""
    prefix = f"{alias}." if alias else ""
    replaced = replaced or {}

    def value(f) -> str:
        if f.name in replaced:
            return f"'{f.name}', {replaced[f.name]}"
        if isinstance(f.dataType, BinaryType):
            return f"'{f.name}', sha2({prefix}`{f.name}`, 256)"
        return f"'{f.name}', {prefix}`{f.name}`"

    parts = [value(f) for f in TABLES[table].schema if f.name not in _NOT_COMPARED]
    return f"sha2(to_json(named_struct({', '.join(parts)})), 256)"


def repr_sql(value: object) -> str:
    return f"'{sql_string(value)}'" if isinstance(value, str) else str(value)


def _cols(alias: str, names: list[str]) -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}`{c}`" for c in names)


# Rows loaded from published Panda-70M metadata (import-panda-csv) carry videos.extra['origin'] =
# IMPORTED_ORIGIN, and their clips the published timestamps. Until `download` fetches the source,
# their path is a URL and their clips have no frames, so the stages that decode videos or need
# frames leave them out instead of failing on them; once it has, split cuts them at those times.
IMPORTED_ORIGIN = "panda70m-csv"


def is_imported(extra: str = "extra") -> Column:
    """True for a `videos` row loaded by import-panda-csv (never NULL), downloaded or not."""
    return F.coalesce(F.col(extra).getItem("origin") == F.lit(IMPORTED_ORIGIN), F.lit(False))


def has_file() -> Column:
    """True for a `videos` row whose source file is there to decode: an ingested video, or an
    imported one `download` has fetched and probed (before that it has only its URL)."""
    return ~is_imported() | F.col("probe_version").isNotNull()

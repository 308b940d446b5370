"""The table catalog: the only module that knows table names, schemas, keys and how to write them.

Every table is Delta with Change Data Feed on. Writes go through :meth:`Lakehouse.merge`, an
idempotent MERGE on the table's key: a row whose content is unchanged is left alone, a changed row
is updated (its `created_at` kept), a new key is inserted. Stage failures go through
:meth:`Lakehouse.record_errors`, one current row per (stage, key).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from panda_spark.config import Config
from panda_spark.spark import sql_string, quote_name, schema_dir

log = logging.getLogger(__name__)

AUDIT_COLUMNS = ("run_id", "created_at", "updated_at")
_AUDIT_DDL = "run_id STRING, created_at TIMESTAMP, updated_at TIMESTAMP"
CUE_DDL = "ARRAY<STRUCT<start_s: DOUBLE, end_s: DOUBLE, text: STRING>>"


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: str  # Spark DDL of the domain columns; audit columns are appended
    key: tuple[str, ...]
    comment: str
    audited: bool = True

    @property
    def ddl(self) -> str:
        return f"{self.columns}, {_AUDIT_DDL}" if self.audited else self.columns

    @property
    def schema(self) -> StructType:
        return StructType.fromDDL(self.ddl)


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
            "extra MAP<STRING, STRING>, source_signature STRING, probe_version STRING",
            key=("video_id",),
            comment="Source videos: probed container facts, metadata and subtitle cues (ingest)",
        ),
        TableSpec(
            "shots",
            "shot_id STRING NOT NULL, video_id STRING NOT NULL, shot_idx INT, start_frame BIGINT, "
            "end_frame BIGINT, start_s DOUBLE, end_s DOUBLE, forced BOOLEAN, cut_score DOUBLE, "
            "params_hash STRING, splitter_version STRING, source_hash STRING",
            key=("shot_id",),
            comment="Shots from content-based cut detection plus forced cuts (split)",
        ),
        TableSpec(
            "clips",
            "clip_id STRING NOT NULL, video_id STRING NOT NULL, clip_idx INT, start_frame BIGINT, "
            "end_frame BIGINT, start_s DOUBLE, end_s DOUBLE, start_timecode STRING, end_timecode STRING, "
            "shot_ids ARRAY<STRING>, embedding ARRAY<FLOAT>, preset STRING, params_hash STRING, "
            "splitter_version STRING, clip_path STRING",
            key=("clip_id",),
            comment="Semantically coherent clips stitched from shots (split)",
        ),
        TableSpec(
            "clip_frames",
            "clip_id STRING NOT NULL, frame_idx INT NOT NULL, video_id STRING NOT NULL, frame_number BIGINT, role STRING, "
            "width INT, height INT, jpeg BINARY",
            key=("clip_id", "frame_idx"),
            comment="Frames sampled per clip during the split decode, as JPEG (split)",
        ),
        TableSpec(
            "candidate_captions",
            "clip_id STRING NOT NULL, teacher STRING NOT NULL, teacher_version STRING NOT NULL, "
            "inputs ARRAY<STRING>, prompt STRING, caption STRING, degenerate BOOLEAN, generation_s DOUBLE",
            key=("clip_id", "teacher_version"),
            comment="One caption per clip and teacher model (caption)",
        ),
        TableSpec(
            "captions",
            "clip_id STRING NOT NULL, caption STRING, teacher STRING, teacher_version STRING, "
            "matching_score DOUBLE, candidate_scores MAP<STRING, DOUBLE>, scorer_version STRING, "
            "good_match BOOLEAN, candidates_hash STRING, selected_at TIMESTAMP",
            key=("clip_id",),
            comment="The selected (gold) caption per clip (select)",
        ),
        TableSpec(
            "selection_labels",
            "clip_id STRING NOT NULL, annotator STRING NOT NULL, chosen_teacher STRING, "
            "chosen_caption STRING, source STRING",
            key=("clip_id", "annotator"),
            comment="Human picks of the best candidate caption, for selector fine-tuning",
        ),
        TableSpec(
            "evaluations",
            "source STRING NOT NULL, reference STRING NOT NULL, metric STRING NOT NULL, value DOUBLE, "
            "n_clips BIGINT, mlflow_run_id STRING",
            key=("source", "reference", "metric"),
            comment="Caption metrics (BLEU-4, METEOR, ROUGE-L, CIDEr) per caption source (evaluate)",
        ),
        TableSpec(
            "stage_runs",
            "run_id STRING NOT NULL, stage STRING NOT NULL, status STRING, rows_in BIGINT, rows_out BIGINT, "
            "errored BIGINT, seconds DOUBLE, counts MAP<STRING, DOUBLE>, message STRING, started_at TIMESTAMP, "
            "finished_at TIMESTAMP",
            key=("run_id", "stage"),
            comment="One row per stage of each pipeline run: rows in, out, errored, seconds, status (pipeline)",
            audited=False,
        ),
        TableSpec(
            "errors",
            "stage STRING NOT NULL, key STRING NOT NULL, error_class STRING NOT NULL, message STRING, "
            "input_snapshot STRING, run_id STRING, time TIMESTAMP",
            key=("stage", "key"),
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
    """Names, creates, reads and MERGEs the pipeline's tables for one config."""

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
        """Create the named tables (default: all) if they do not exist."""
        for table in tables or tuple(TABLES):
            if table in self._ensured:
                continue
            spec = TABLES[table]
            location = self._location(table)
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.name(table)} ({spec.ddl}) USING DELTA "
                f"COMMENT '{sql_string(spec.comment)}' "
                + (f"LOCATION '{sql_string(location)}' " if location else "")
                + "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
            )
            self._ensured.add(table)

    def read(self, table: str) -> DataFrame:
        self.ensure(table)
        return self.spark.table(self.name(table))

    def conform(self, table: str, df: DataFrame) -> DataFrame:
        """Select the table's columns from `df` in table order, cast to the table's types.

        Audit columns missing from `df` are filled (this run's id, now).
        """
        spec = TABLES[table]
        missing = [f.name for f in spec.schema if f.name not in df.columns and f.name not in _FILLED]
        if missing:
            raise ValueError(f"rows for table {table} lack columns {missing}")
        cols: list[Column] = []
        for f in spec.schema:
            if f.name in df.columns:
                cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
            else:
                cols.append(_FILLED[f.name](self.run_id).cast(f.dataType).alias(f.name))
        return df.select(cols)

    def complete(self, table: str, df: DataFrame) -> DataFrame:
        """`df` with the table's domain columns it lacks as typed NULLs (rows that know only part of a
        table's columns, e.g. imported metadata without probe facts)."""
        return df.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in TABLES[table].schema
                                if f.name not in df.columns and f.name not in AUDIT_COLUMNS])

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

    def _merge(self, table: str, source: DataFrame, stale: DataFrame | None) -> MergeCounts:
        spec = TABLES[table]
        self.ensure(table)
        total = source.count()  # callers pass materialised rows, so this does not recompute a UDF
        if stale is not None:
            source = source.withColumn("_delete", F.lit(False)).unionByName(stale.withColumn("_delete", F.lit(True)))
        elif total == 0:
            return MergeCounts(0, 0, 0)
        view = f"_merge_source_{table}"
        source.createOrReplaceTempView(view)
        columns = [f.name for f in spec.schema]
        compared = [c for c in columns if c not in _NOT_COMPARED]
        same_content = f"to_json(struct({_cols('t', compared)})) <=> to_json(struct({_cols('s', compared)}))"
        updated = ", ".join(f"t.`{c}` = s.`{c}`" for c in columns if c != "created_at")
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
        delete = "WHEN MATCHED AND s._delete THEN DELETE " if stale is not None else ""
        insert_if = "AND NOT s._delete " if stale is not None else ""
        self.spark.sparkContext.setJobDescription(f"MERGE into {table}")
        metrics = self.spark.sql(
            f"MERGE INTO {self.name(table)} t USING {view} s ON {on} {delete}"
            f"WHEN MATCHED AND NOT ({same_content}) THEN UPDATE SET {updated} "
            f"WHEN NOT MATCHED {insert_if}THEN INSERT ({_cols('', columns)}) VALUES ({_cols('s', columns)})"
        ).first()
        self.spark.catalog.dropTempView(view)
        inserted, updated_n = int(metrics["num_inserted_rows"]), int(metrics["num_updated_rows"])
        counts = MergeCounts(inserted, updated_n, total - inserted - updated_n, int(metrics["num_deleted_rows"]))
        log.info("merge %s: %s", table, counts)
        return counts

    def record_errors(self, stage: str, errors: DataFrame) -> MergeCounts:
        """Upsert one row per failing input (columns key, error_class, message, input_snapshot)."""
        rows = errors.select(*ERROR_INPUT_COLUMNS).withColumn("stage", F.lit(stage))
        rows = rows.withColumn("time", F.current_timestamp())
        return self.merge("errors", rows)

    def clear_errors(self, stage: str, keys: DataFrame) -> None:
        """Delete errors of `stage` for inputs that have now been processed (column `key`)."""
        errors = self.read("errors").filter(F.col("stage") == stage).select("key")
        resolved = keys.select("key").distinct().join(errors, "key", "left_semi")
        if resolved.isEmpty():  # the usual case: a cheap scan instead of a MERGE commit
            return
        view = "_resolved_error_keys"
        resolved.createOrReplaceTempView(view)
        self.spark.sql(
            f"MERGE INTO {self.name('errors')} t USING {view} s "
            f"ON t.stage = '{sql_string(stage)}' AND t.key = s.key WHEN MATCHED THEN DELETE"
        )
        self.spark.catalog.dropTempView(view)

    def frames_per_clip(self, role: str | None = "uniform") -> DataFrame:
        """clip_id, frames: the clip's stored frames (frame_idx, role, jpeg) of `role` (None: all)."""
        frames = self.read("clip_frames")
        return ((frames if role is None else frames.filter(F.col("role") == role)).groupBy("clip_id")
                .agg(F.collect_list(F.struct("frame_idx", "role", "jpeg")).alias("frames")))

    def counts(self) -> dict[str, int]:
        return {table: self.read(table).count() for table in TABLES}


# Columns the writer fills when a stage's rows do not carry them.
_FILLED = {
    "run_id": lambda run_id: F.lit(run_id),
    "created_at": lambda run_id: F.current_timestamp(),
    "updated_at": lambda run_id: F.current_timestamp(),
}
# Bookkeeping columns: a row that differs only in these is unchanged.
_NOT_COMPARED = {*AUDIT_COLUMNS, "time"}


def _cols(alias: str, names: list[str]) -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}`{c}`" for c in names)


# Rows loaded from published Panda-70M metadata (import-panda-csv) carry videos.extra['origin'] =
# IMPORTED_ORIGIN: their path is a URL and their clips have no frames, so the stages that decode
# videos or need frames leave them out instead of failing on them.
IMPORTED_ORIGIN = "panda70m-csv"


def is_imported(extra: str = "extra") -> Column:
    """True for a `videos` row loaded by import-panda-csv (never NULL)."""
    return F.coalesce(F.col(extra).getItem("origin") == F.lit(IMPORTED_ORIGIN), F.lit(False))

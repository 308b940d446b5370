"""`panda-spark maintain`: keep the Delta tables quick to read and cheap to store (a scheduled job,
not a pipeline stage: the bundle's `panda_maintain` job runs it daily).

For each table of :data:`panda_spark.tables.TABLES` (or those named in `maintain.tables`; empty:
all), in catalog order, one at a time:

1. Clustering. A table whose Delta clustering columns are not its `TableSpec.cluster_by` (one made
   by a version before liquid clustering, or whose clustering changed) gets
   `ALTER TABLE <name> CLUSTER BY (<cols>)`. Rows are not rewritten here; OPTIMIZE does that.
2. `OPTIMIZE <name>`: clusters the files written since the last run (liquid clustering is
   incremental) and compacts small files, such as the one or few each MERGE of a stage writes.
3. `VACUUM <name> RETAIN <maintain.vacuum_retention_hours> HOURS`: deletes the data files that no
   version of the table within the retention refers to any more; time travel to an older version
   fails afterwards. Below 168 hours (Delta's 7-day safety check) the check
   (`spark.databricks.delta.retentionDurationCheck.enabled`) is switched off for this run only,
   with a warning: a reader or writer still on an older snapshot may then fail.

Contract:

- A table that does not exist yet is skipped (`missing`), never created.
- A table that fails (not a Delta table, an unreadable log, a failing command) lands in `errors`
  (stage `maintain`, key = the table's name in TABLES, error_class = the exception's type, message
  = the failed step and the first line of the error) and the other tables go on; a table that is
  maintained again loses its error row. The run raises only where `errors` itself cannot be written.
- An unknown name in `maintain.tables` raises :class:`ConfigError` naming the key, before any table
  is touched.
- Returns a :class:`StageReport`: rows_in = tables considered, rows_out = tables maintained,
  errored = tables that failed. `counts` holds the totals (tables, missing, clustered, maintained,
  errored, files_before, files_after, files_removed, files_added, bytes_before, bytes_after,
  files_vacuumed) and, per maintained table, `<table>.files_before` / `.files_after` (DESCRIBE
  DETAIL numFiles before and after), `.files_removed` / `.files_added` (by OPTIMIZE),
  `.bytes_before` / `.bytes_after` (sizeInBytes) and `.files_vacuumed` (when Delta logs VACUUM).
- Every step is idempotent, so a rerun is safe. OPTIMIZE commits a rearrangement of the data only:
  a stage writing the same table meanwhile may lose a write conflict to it (stages retry those) or
  make it fail for that table (recorded; done on the next run). Schedule it away from the pipeline.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.tables import TABLES, Lakehouse, apply_clustering

log = logging.getLogger(__name__)

STAGE = "maintain"
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
SAFE_RETENTION_HOURS = 168  # Delta's default delta.deletedFileRetentionDuration: 7 days


class NotADeltaTable(Exception):
    """The name resolves to a table of another format: OPTIMIZE and VACUUM are Delta commands."""


@dataclass
class TableResult:
    files_before: int
    files_after: int
    files_removed: int
    files_added: int
    bytes_before: int
    bytes_after: int
    files_vacuumed: int | None
    clustered: bool  # ALTER TABLE ... CLUSTER BY ran this time


def tables_to_maintain(cfg: Config) -> list[str]:
    """The names of `maintain.tables` (empty: every table), in catalog order."""
    unknown = [t for t in cfg.maintain.tables if t not in TABLES]
    if unknown:
        raise ConfigError(f"conf key 'maintain.tables': unknown table {unknown[0]!r} "
                          f"(expected names of: {', '.join(TABLES)}; empty: all)")
    return [t for t in TABLES if not cfg.maintain.tables or t in cfg.maintain.tables]


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    """`panda-spark maintain`: cluster, OPTIMIZE and VACUUM each existing table (see the module)."""
    tables = tables_to_maintain(cfg)
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    hours = cfg.maintain.vacuum_retention_hours
    totals = dict.fromkeys(("tables", "missing", "clustered", "maintained", "errored", "files_before", "files_after",
                            "files_removed", "files_added", "bytes_before", "bytes_after", "files_vacuumed"), 0)
    totals["tables"] = len(tables)
    per_table: dict[str, int] = {}
    done, failures = [], []
    previous_check = spark.conf.get(RETENTION_CHECK, None)
    if hours < SAFE_RETENTION_HOURS:
        log.warning("maintain: maintain.vacuum_retention_hours %d is below Delta's 7-day safety check: switching "
                    "%s off for this run; VACUUM deletes files that versions of the last %d hours no longer use, "
                    "so a reader or writer still on an older snapshot (a long query, a running stage) may fail",
                    hours, RETENTION_CHECK, hours)
        spark.conf.set(RETENTION_CHECK, "false")
    try:
        for k, table in enumerate(tables, start=1):
            name = lake.name(table)
            log.info("maintain: table %d of %d: %s", k, len(tables), table)
            steps: list[str] = []
            try:
                result = _maintain(spark, table, name, hours, steps)
            except Exception as exc:  # any failure of this table: recorded, the next table goes on
                step = steps[-1]
                error_class, message = _describe(exc)
                log.warning("maintain: table %d of %d: %s failed in %s: %s: %s",
                            k, len(tables), table, step, error_class, message)
                failures.append({"key": table, "error_class": error_class, "message": f"{step}: {message}",
                                 "input_snapshot": json.dumps({"table": name, "step": step})})
                continue
            if result is None:
                log.info("maintain: table %d of %d: %s does not exist yet, skipped", k, len(tables), table)
                totals["missing"] += 1
                continue
            done.append(table)
            totals["clustered"] += int(result.clustered)
            for key in ("files_before", "files_after", "files_removed", "files_added", "bytes_before", "bytes_after",
                        "files_vacuumed"):
                value = getattr(result, key)
                if value is not None:
                    per_table[f"{table}.{key}"] = value
                    totals[key] += value
            log.info("maintain: table %d of %d: %s: files %d -> %d (OPTIMIZE removed %d, added %d), bytes %d -> %d, "
                     "vacuumed %s files%s", k, len(tables), table, result.files_before, result.files_after,
                     result.files_removed, result.files_added, result.bytes_before, result.bytes_after,
                     "?" if result.files_vacuumed is None else result.files_vacuumed,
                     f", now clustered by {', '.join(TABLES[table].cluster_by)}" if result.clustered else "")
    finally:
        if hours < SAFE_RETENTION_HOURS:
            if previous_check is None:
                spark.conf.unset(RETENTION_CHECK)
            else:
                spark.conf.set(RETENTION_CHECK, previous_check)
    _record(spark, lake, done, failures)
    totals["maintained"], totals["errored"] = len(done), len(failures)
    report.counts.update(totals)
    report.counts.update(per_table)
    return report.finish(rows_in=len(tables), rows_out=len(done), errored=len(failures))


def _maintain(spark: SparkSession, table: str, name: str, hours: int, steps: list[str]) -> TableResult | None:
    """Steps 1-3 for one table; None where it does not exist. Each step's name is appended to
    `steps` as it starts, so that the caller can say which one failed."""
    def step(what: str) -> None:
        steps.append(what)
        spark.sparkContext.setJobDescription(f"maintain {table}: {what}")

    step("catalog lookup")  # a Delta table's log is read here already
    if not spark.catalog.tableExists(name.replace("`", "")):
        return None
    step("DESCRIBE DETAIL")
    before = spark.sql(f"DESCRIBE DETAIL {name}").first()
    if str(before["format"]).lower() != "delta":
        raise NotADeltaTable(f"{name} is a {before['format']} table at {before['location']}, not a Delta table")
    step("ALTER TABLE CLUSTER BY")
    clustered = apply_clustering(spark, table, name, before)
    step("OPTIMIZE")
    metrics = spark.sql(f"OPTIMIZE {name}").first()["metrics"]
    step(f"VACUUM RETAIN {hours} HOURS")
    spark.sql(f"VACUUM {name} RETAIN {hours} HOURS").collect()
    step("DESCRIBE DETAIL")
    after = spark.sql(f"DESCRIBE DETAIL {name}").first()
    last = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
    vacuumed = None
    if last is not None and last["operation"] == "VACUUM END":  # Delta logs VACUUM where it can
        vacuumed = int((last["operationMetrics"] or {}).get("numDeletedFiles", 0))
    return TableResult(
        files_before=int(before["numFiles"] or 0), files_after=int(after["numFiles"] or 0),
        files_removed=int(metrics["numFilesRemoved"] or 0), files_added=int(metrics["numFilesAdded"] or 0),
        bytes_before=int(before["sizeInBytes"] or 0), bytes_after=int(after["sizeInBytes"] or 0),
        files_vacuumed=vacuumed, clustered=clustered)


def _describe(exc: Exception) -> tuple[str, str]:
    """(error class, one-line message) of a failure: the JVM exception's own type and message
    where py4j wraps one that PySpark does not convert."""
    error_class, text = type(exc).__name__, str(exc)
    java = getattr(exc, "java_exception", None)
    if java is not None and type(exc).__name__ == "Py4JJavaError":
        try:
            error_class, text = str(java.getClass().getSimpleName()), str(java.getMessage() or java.toString())
        except Exception:  # the JVM is gone: keep py4j's own message
            pass
    line = next((" ".join(s.split()) for s in text.splitlines() if s.strip()), "")
    return error_class, line[:1000]


def _record(spark: SparkSession, lake: Lakehouse, done: list[str], failures: list[dict]) -> None:
    """Failed tables into `errors`; maintained ones out of it (without creating `errors` for that)."""
    if failures:
        lake.record_errors(STAGE, spark.createDataFrame(
            failures, "key STRING, error_class STRING, message STRING, input_snapshot STRING"))
    if done and spark.catalog.tableExists(lake.name("errors").replace("`", "")):
        lake.clear_errors(STAGE, spark.createDataFrame([(t,) for t in done], "key STRING"))

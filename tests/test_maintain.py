"""`panda-spark maintain` on the local Spark + Delta session: small files compacted and clustered
with the rows unchanged, VACUUM deleting unreferenced files (and with them old versions), a failing
table recorded in `errors` while the others are maintained, a bad `maintain.tables` refused."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from panda_spark import maintain
from panda_spark.config import load_config
from panda_spark.errors import ConfigError
from panda_spark.spark import get_spark, schema_dir, sql_string
from panda_spark.tables import TABLES, Lakehouse
from tests.conftest import overrides_for


def detail(spark, name: str):
    return spark.sql(f"DESCRIBE DETAIL {name}").first()


def parquet_files(table_dir: Path) -> int:
    return len(list(table_dir.glob("*.parquet")))


def operations(spark, name: str) -> list[str]:
    return [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY {name}").collect()]


def video_rows(i: int) -> list[dict]:
    return [{"video_id": f"v{i}{j}", "path": f"/videos/{i}{j}.mp4", "frame_count": 100 * i + j} for j in range(2)]


def contents(spark, name: str, key: str) -> list[dict]:
    return [r.asDict(recursive=True) for r in spark.table(name).orderBy(key).collect()]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record):
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture(scope="module")
def maintained(spark, state_root):
    """`videos` as a version before liquid clustering made it (no CLUSTER BY) with six small files,
    `stage_runs` made by this version (clustered) with two; then maintain with retention 0."""
    cfg = load_config(None, [*overrides_for(state_root, f"maintain_{os.getpid()}"),
                             "maintain.vacuum_retention_hours=0"])
    spark = get_spark(cfg)
    lake = Lakehouse(spark, cfg, "maintain-test")
    videos, runs = lake.name("videos"), lake.name("stage_runs")
    videos_dir = schema_dir(cfg) / "videos"
    spark.sql(f"CREATE TABLE {videos} ({TABLES['videos'].ddl}) USING DELTA LOCATION '{sql_string(videos_dir)}' "
              "TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    clustering_before = list(detail(spark, videos)["clusteringColumns"])
    for i in range(6):  # what six MERGEs of an older version left: one small file each
        rows = spark.createDataFrame(video_rows(i))
        lake.conform("videos", lake.complete("videos", rows)).coalesce(1).writeTo(videos).append()
    schema = TABLES["stage_runs"].schema
    for i in range(2):
        row = {f.name: None for f in schema} | {"run_id": f"run-{i}", "stage": "ingest", "status": "ok", "rows_in": i}
        lake.merge("stage_runs", spark.createDataFrame([row], schema))
    before = {name: detail(spark, name) for name in (videos, runs)}
    rows_before = {videos: contents(spark, videos, "video_id"), runs: contents(spark, runs, "run_id")}
    first_version = spark.sql(f"SELECT * FROM {videos} VERSION AS OF 1").count()
    files_on_disk = parquet_files(videos_dir)
    check_before = spark.conf.get(maintain.RETENTION_CHECK, None)

    records, logger = Records(), logging.getLogger("panda_spark.maintain")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        report = maintain.run(spark, cfg, "maintain-run")
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return dict(cfg=cfg, spark=spark, lake=lake, videos=videos, runs=runs, videos_dir=videos_dir,
                clustering_before=clustering_before, before=before, rows_before=rows_before,
                first_version=first_version, files_on_disk=files_on_disk, check_before=check_before,
                report=report, log=records.lines)


def test_small_files_are_compacted_and_clustered_with_the_rows_unchanged(maintained):
    m = maintained
    spark, videos, runs, report = m["spark"], m["videos"], m["runs"], m["report"]
    assert (m["before"][videos]["numFiles"], m["before"][runs]["numFiles"]) == (6, 2)
    assert (detail(spark, videos)["numFiles"], detail(spark, runs)["numFiles"]) == (1, 1)
    assert contents(spark, videos, "video_id") == m["rows_before"][videos]
    assert contents(spark, runs, "run_id") == m["rows_before"][runs]
    assert len(m["rows_before"][videos]) == 12 and len(m["rows_before"][runs]) == 2
    # the older table gets its clustering; the one made clustered is not altered again
    assert m["clustering_before"] == []
    assert list(detail(spark, videos)["clusteringColumns"]) == list(TABLES["videos"].cluster_by) == ["video_id"]
    assert list(detail(spark, runs)["clusteringColumns"]) == list(TABLES["stage_runs"].cluster_by)
    assert operations(spark, videos).count("CLUSTER BY") == 1
    assert "CLUSTER BY" not in operations(spark, runs)
    assert "OPTIMIZE" in operations(spark, videos) and "OPTIMIZE" in operations(spark, runs)
    # the report: two tables maintained of all considered, the others skipped and not created
    assert (report.stage, report.rows_in, report.rows_out, report.errored) == ("maintain", len(TABLES), 2, 0)
    counts = report.counts
    assert (counts["tables"], counts["missing"], counts["maintained"], counts["clustered"]) == \
        (len(TABLES), len(TABLES) - 2, 2, 1)
    assert (counts["videos.files_before"], counts["videos.files_after"], counts["videos.files_removed"],
            counts["videos.files_added"]) == (6, 1, 6, 1)
    assert (counts["stage_runs.files_before"], counts["stage_runs.files_after"]) == (2, 1)
    assert (counts["files_before"], counts["files_after"], counts["files_removed"]) == (8, 2, 8)
    assert counts["videos.bytes_before"] == m["before"][videos]["sizeInBytes"] > counts["videos.bytes_after"] > 0
    assert not spark.catalog.tableExists(m["lake"].name("clips").replace("`", ""))
    assert not spark.catalog.tableExists(m["lake"].name("errors").replace("`", ""))  # nothing failed, none made
    # progress per table in the log
    progress = [text for _, text in m["log"] if text.startswith("maintain: table ")]
    assert f"maintain: table 1 of {len(TABLES)}: videos" in progress
    assert any(text.startswith(f"maintain: table {list(TABLES).index('stage_runs') + 1} of {len(TABLES)}: "
                               "stage_runs: files 2 -> 1") for text in progress)


def test_vacuum_without_retention_deletes_unreferenced_files_and_old_versions(maintained):
    m = maintained
    spark, videos, counts = m["spark"], m["videos"], m["report"].counts
    assert m["files_on_disk"] == 6 and m["first_version"] == 2  # before: six files, version 1 readable
    assert parquet_files(m["videos_dir"]) == 1 == detail(spark, videos)["numFiles"]
    assert counts["videos.files_vacuumed"] == 6
    with pytest.raises(Exception, match="(?i)(not exist|not found|FileNotFound)"):
        spark.sql(f"SELECT * FROM {videos} VERSION AS OF 1").collect()
    assert contents(spark, videos, "video_id") == m["rows_before"][videos]
    # the safety check was off for the run only, with a warning
    assert spark.conf.get(maintain.RETENTION_CHECK, None) == m["check_before"]
    warnings = [text for level, text in m["log"] if level == logging.WARNING]
    assert any("vacuum_retention_hours 0 is below" in text and "older snapshot" in text for text in warnings)


def test_a_failing_table_lands_in_errors_and_the_others_are_maintained(spark, make_cfg, state_root, tmp_path):
    cfg = make_cfg()  # the default retention: 168 hours
    spark = get_spark(cfg)
    lake = Lakehouse(spark, cfg, "maintain-test")
    videos = lake.name("videos")
    for i in range(2):
        lake.merge("videos", lake.complete("videos", spark.createDataFrame(video_rows(i))))
    # captions: a Parquet table under the pipeline's name
    spark.sql(f"CREATE TABLE {lake.name('captions')} (clip_id STRING) USING PARQUET "
              f"LOCATION '{sql_string(tmp_path / 'captions')}'")
    spark.sql(f"INSERT INTO {lake.name('captions')} VALUES ('c1')")
    # clips: a Delta table whose next commit cannot be read
    lake.ensure("clips")
    broken_commit = schema_dir(cfg) / "clips" / "_delta_log" / f"{1:020d}.json"
    broken_commit.write_text("{not json\n")
    videos_on_disk = parquet_files(schema_dir(cfg) / "videos")

    report = maintain.run(spark, cfg, "maintain-run")

    assert (report.rows_in, report.rows_out, report.errored) == (len(TABLES), 1, 2)
    errors = {e["key"]: e for e in lake.read("errors").filter("stage = 'maintain'").collect()}
    assert set(errors) == {"captions", "clips"}
    assert errors["captions"]["error_class"] == "NotADeltaTable"
    assert errors["captions"]["message"].startswith("DESCRIBE DETAIL: ")
    assert "is a parquet table" in errors["captions"]["message"].lower()
    assert errors["clips"]["error_class"] not in ("Py4JJavaError", "NotADeltaTable")
    # Spark 4's catalog reads the log to find the table; Spark 3.5's (EMR 7.x) finds it by name, and
    # DESCRIBE DETAIL is the first step to read the log
    first_read = "catalog lookup" if int(spark.version.split(".")[0]) >= 4 else "DESCRIBE DETAIL"
    assert errors["clips"]["message"].startswith(f"{first_read}: ")
    assert "00000000000000000001.json" in errors["clips"]["message"]
    assert all("\n" not in e["message"] for e in errors.values())
    assert errors["clips"]["run_id"] == "maintain-run"
    # videos went on: compacted; with 7 days of retention its old files and versions stay
    assert detail(spark, videos)["numFiles"] == 1 and report.counts["videos.files_before"] == 2
    assert parquet_files(schema_dir(cfg) / "videos") == videos_on_disk + 1 > 1
    assert spark.sql(f"SELECT * FROM {videos} VERSION AS OF 1").count() == 2
    assert report.counts["videos.files_vacuumed"] == 0

    # clips repaired: maintained on the next run, and its error goes
    broken_commit.unlink()
    again = maintain.run(spark, load_config(None, [*overrides_for(state_root, cfg.catalog.schema),
                                                   "maintain.tables=[clips]"]), "maintain-run-2")
    assert (again.rows_in, again.rows_out, again.errored) == (1, 1, 0)
    assert {e["key"] for e in lake.read("errors").filter("stage = 'maintain'").collect()} == {"captions"}


def test_an_unknown_table_in_maintain_tables_is_a_config_error(spark, make_cfg):
    cfg = make_cfg("maintain.tables=[videos, video]")
    with pytest.raises(ConfigError, match=r"conf key 'maintain\.tables': unknown table 'video' \(expected names of: "
                                          r"videos, "):
        maintain.run(get_spark(cfg), cfg, "r")
    assert not spark.catalog.tableExists(f"{cfg.catalog.schema}.errors")  # refused before any table
    assert maintain.tables_to_maintain(make_cfg("maintain.tables=[errors, videos]")) == ["videos", "errors"]
    assert maintain.tables_to_maintain(make_cfg()) == list(TABLES)

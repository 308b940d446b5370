import time

from pyspark.sql import Row

from panda_spark.tables import TABLES, MergeCounts


def test_every_table_is_created_as_delta_with_change_data_feed(lakehouse):
    lakehouse.ensure()
    spark = lakehouse.spark
    for table, spec in TABLES.items():
        detail = spark.sql(f"DESCRIBE DETAIL {lakehouse.name(table)}").first()
        assert detail["format"] == "delta"
        assert detail["properties"].get("delta.enableChangeDataFeed") == "true", table
        assert spark.table(lakehouse.name(table)).schema.fieldNames() == spec.schema.fieldNames()
        assert detail["location"].endswith(f"{lakehouse.cfg.catalog.schema}.db/{table}")
    assert TABLES["errors"].schema.fieldNames() == [
        "stage", "key", "error_class", "message", "input_snapshot", "run_id", "time"]


def _labels(spark, *rows):
    return spark.createDataFrame([(c, a, t, None, "csv") for c, a, t in rows],
                                 "clip_id string, annotator string, chosen_teacher string, chosen_caption string, source string")


def test_merge_is_idempotent_and_updates_only_changed_rows(lakehouse):
    spark, table = lakehouse.spark, lakehouse.name("selection_labels")
    first = _labels(spark, ("c1", "ann", "blip2"), ("c2", "ann", "git"))
    assert lakehouse.merge("selection_labels", first) == MergeCounts(inserted=2, updated=0, unchanged=0)
    created = {r.clip_id: r.created_at for r in spark.table(table).collect()}

    assert lakehouse.merge("selection_labels", first) == MergeCounts(inserted=0, updated=0, unchanged=2)
    assert spark.table(table).count() == 2

    time.sleep(0.05)
    changed = _labels(spark, ("c1", "ann", "llava"), ("c2", "ann", "git"), ("c2", "ann2", "git"))
    assert lakehouse.merge("selection_labels", changed) == MergeCounts(inserted=1, updated=1, unchanged=1)
    rows = {(r.clip_id, r.annotator): r for r in spark.table(table).collect()}
    assert len(rows) == 3
    assert rows[("c1", "ann")].chosen_teacher == "llava"
    assert rows[("c1", "ann")].created_at == created["c1"]  # kept on update
    assert rows[("c1", "ann")].updated_at > created["c1"]
    assert rows[("c2", "ann")].updated_at == created["c2"]  # untouched
    assert lakehouse.merge("selection_labels", changed).unchanged == 3
    last = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first().operationMetrics
    assert (last["numTargetRowsUpdated"], last["numTargetRowsInserted"], last["numTargetRowsDeleted"]) == ("0", "0", "0")
    changes = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).table(table)
    assert changes.filter("_change_type = 'update_postimage'").count() == 1


def test_errors_hold_one_current_row_per_stage_and_key(lakehouse):
    spark = lakehouse.spark
    errs = spark.createDataFrame([Row(key="v1", error_class="CorruptVideo", message="m", input_snapshot="{}"),
                                  Row(key="v2", error_class="FileNotFound", message="m", input_snapshot="{}")])
    lakehouse.record_errors("ingest", errs)
    lakehouse.record_errors("ingest", errs)
    lakehouse.record_errors("split", errs.limit(1))
    table = lakehouse.name("errors")
    assert spark.table(table).count() == 3
    lakehouse.clear_errors("ingest", spark.createDataFrame([Row(key="v1"), Row(key="zzz")]))
    left = sorted((r.stage, r.key, r.error_class, r.run_id) for r in spark.table(table).collect())
    assert left == [("ingest", "v2", "FileNotFound", "test-run"), ("split", "v1", "CorruptVideo", "test-run")]

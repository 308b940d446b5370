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


def _frames(spark, *rows):
    return spark.createDataFrame([(c, 0, "v", 0, "uniform", 2, 2, jpeg) for c, jpeg in rows],
                                 "clip_id string, frame_idx int, video_id string, frame_number bigint, role string, "
                                 "width int, height int, jpeg binary")


def test_change_detection_compares_the_stored_row_hash_binary_columns_included(lakehouse):
    from panda_spark.tables import row_hash_sql

    spark, table = lakehouse.spark, lakehouse.name("clip_frames")
    lakehouse.merge("clip_frames", _frames(spark, ("c1", b"\xff\xd8one"), ("c2", b"\xff\xd8two")))
    assert lakehouse.merge("clip_frames", _frames(spark, ("c1", b"\xff\xd8one"), ("c2", b"\xff\xd8TWO"))) == \
        MergeCounts(inserted=0, updated=1, unchanged=1)
    rows = spark.sql(f"SELECT clip_id, jpeg, row_hash, {row_hash_sql('clip_frames')} AS fresh FROM {table}").collect()
    assert {r.clip_id: bytes(r.jpeg) for r in rows} == {"c1": b"\xff\xd8one", "c2": b"\xff\xd8TWO"}
    assert all(r.row_hash == r.fresh and len(r.row_hash) == 64 for r in rows)
    assert len({r.row_hash for r in rows}) == 2


def test_a_table_of_an_older_version_gets_its_new_columns_and_clustering(lakehouse):
    from panda_spark.tables import Lakehouse

    spark, spec = lakehouse.spark, TABLES["selection_labels"]
    name = lakehouse.name("selection_labels")
    old_ddl = f"{spec.columns}, run_id STRING, created_at TIMESTAMP, updated_at TIMESTAMP"
    location = lakehouse._location("selection_labels")
    spark.sql(f"CREATE TABLE {name} ({old_ddl}) USING DELTA LOCATION '{location}'")
    spark.sql(f"INSERT INTO {name} VALUES ('c1', 'ann', 'git', NULL, 'csv', 'old', current_timestamp(), current_timestamp())")
    fresh = Lakehouse(spark, lakehouse.cfg, "new")
    counts = fresh.merge("selection_labels", _labels(spark, ("c1", "ann", "git"), ("c2", "ann", "blip2")))
    assert counts == MergeCounts(inserted=1, updated=1, unchanged=0)  # the old row had no hash yet
    detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    assert detail["clusteringColumns"] == ["clip_id"]
    assert spark.table(name).filter("row_hash IS NULL").count() == 0
    assert fresh.merge("selection_labels", _labels(spark, ("c1", "ann", "git"))).unchanged == 1


def test_waves_cover_every_pending_key_once_in_bounded_waves(lakehouse):
    from panda_spark.waves import waves

    spark = lakehouse.spark
    pending = spark.range(1000).selectExpr("cast(id as string) AS clip_id", "id % 3 AS teacher")
    seen, sizes, lines = [], [], []
    for wave in waves(pending, "clip_id", 128, "test", "clips"):
        keys = [r.clip_id for r in wave.keys.collect()]
        seen += keys
        sizes.append(len(keys))
        lines.append(wave.done(len(keys)))
    assert sorted(seen) == sorted(str(i) for i in range(1000))  # each key once
    assert len(sizes) == 8 and max(sizes) < 2 * 128  # ceil(1000 / 128) waves of about 128
    assert lines[-1].startswith("test: wave 8 of 8: 1000/1000 clips (") and "ETA 0:00:00" in lines[-1]
    assert list(waves(pending.limit(0), "clip_id", 128, "test", "clips")) == []


def test_the_frames_of_a_waves_videos_are_filtered_where_read(lakehouse, monkeypatch):
    from panda_spark import tables

    spark = lakehouse.spark
    lakehouse.merge("videos", lakehouse.complete("videos", spark.createDataFrame(
        [(f"v{i}", f"/v{i}.mp4") for i in range(3)], "video_id string, path string")))
    lakehouse.merge("clip_frames", spark.createDataFrame(
        [(f"c{i}", k, f"v{i}", k, "uniform", 8, 8, bytes([i, k])) for i in range(3) for k in range(2)],
        "clip_id string, frame_idx int, video_id string, frame_number bigint, role string, width int, height int, "
        "jpeg binary"))
    # a wave's clips, as the stages hold them: a checkpointed key set
    wave = spark.createDataFrame([("c1", "v1")], "clip_id string, video_id string").localCheckpoint(eager=True)

    def read(frames):
        rows = [(r.clip_id, sorted((f.frame_idx, bytes(f.jpeg)) for f in r.frames)) for r in frames.collect()]
        query = frames._jdf.queryExecution()
        return rows, query.sparkPlan().toString(), query.executedPlan().toString()

    rows, planned, executed = read(lakehouse.frames_for(wave))
    assert rows == [("c1", [(0, b"\x01\x00"), (1, b"\x01\x01")])]
    # the few video ids are broadcast: the table's rows (JPEGs) are not shuffled to meet them
    assert "BroadcastHashJoin [video_id" in planned and "SortMergeJoin [video_id" not in planned
    # and no runtime bloom filter scans the table once more for them: the demo's student wave had
    # one (a key set estimated at 22.7 GiB after its joins), with 1-4 MiB task binaries and warnings
    assert "might_contain" not in executed
    assert spark.conf.get("spark.sql.optimizer.runtime.bloomFilter.enabled") == "false"
    monkeypatch.setattr(tables, "BROADCAST_MAX_KEYS", 0)  # more ids than that: joined by shuffle
    rows_shuffled, planned, _ = read(lakehouse.frames_for(wave))
    assert rows_shuffled == rows and "SortMergeJoin [video_id" in planned

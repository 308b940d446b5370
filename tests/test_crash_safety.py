"""Crash safety, cascade and write conflicts on the local Spark + Delta session.

A stage is stopped right after each of its Delta commits (a hook on the Lakehouse raises, as a
killed driver would stop there; one test kills a real `panda-spark split` process with SIGKILL),
then run again plainly: every table must end exactly as after an uninterrupted run. Each case
starts from a copy of one ingested lakehouse (a Delta table directory copies as a whole).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from panda_spark.config import load_config
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.errors import WriteConflict
from panda_spark.ingest import stage as ingest
from panda_spark.spark import get_spark, register_warehouse_tables, schema_dir
from panda_spark.split import stage as split
from panda_spark.tables import CLIP_TABLES, TABLES, Lakehouse, delta_conflict
from tests.conftest import REPO, overrides_for
from tests.processes import stop_process_group

# Columns that say when or by which run a row was written, not what it holds (row_hash covers
# selected_at, which must change for a clip selected again).
VOLATILE = {"run_id", "created_at", "updated_at", "time", "selected_at", "generation_s", "row_hash"}
RESPLIT = "split.max_len_s=4"  # demo_city: 3 of its 4 clips change, one stays


class Killed(BaseException):
    """Raised by the commit hook: the stage stops where a killed driver would."""


@contextmanager
def stop_after_commit(n: int):
    """Raise Killed right after the n-th Delta commit of any Lakehouse; yields the commits seen."""
    seen: list[tuple[str, str]] = []

    def hook(table: str, operation: str) -> None:
        seen.append((table, operation))
        if len(seen) == n:
            raise Killed(f"stopped after commit {n}: {operation} {table}")

    Lakehouse.commit_hooks.append(hook)
    try:
        yield seen
    finally:
        Lakehouse.commit_hooks.remove(hook)


def snapshot(lake: Lakehouse) -> dict[str, list[str]]:
    """Every table's rows (without the volatile columns), sorted."""
    out = {}
    for table in TABLES:
        if table == "stage_runs":
            continue
        df = lake.read(table)
        rows = df.select([c for c in df.columns if c not in VOLATILE]).collect()
        out[table] = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=repr) for r in rows)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash_sources")
    videos = render_demo_sources(out)
    return videos, out


@pytest.fixture(scope="module")
def ingested(spark, state_root, sources):
    """A schema holding the ingested demo_city and demo_kitchen (no split yet)."""
    videos, out = sources
    cfg = load_config(None, overrides_for(state_root, "crash_base"))
    lake = Lakehouse(get_spark(cfg), cfg, "base")
    ingest.run(lake.spark, cfg, "base", manifest=str(write_manifest(videos[:2], out / "manifest.csv")))
    lake.ensure()
    return cfg


_copies = iter(range(10_000))


def copy_of(base_cfg, *overrides: str, state=None) -> tuple:
    """A new schema holding a copy of `state` (default: the base schema's tables)."""
    schema = f"crash_copy_{os.getpid()}_{next(_copies)}"
    cfg = load_config(None, [*overrides_for(Path(base_cfg.paths.root), schema), *overrides])
    shutil.copytree(state or schema_dir(base_cfg), schema_dir(cfg))
    spark = get_spark(cfg)
    register_warehouse_tables(spark, cfg)
    return cfg, Lakehouse(spark, cfg, "copy")


def with_overrides(cfg, *overrides: str):
    return load_config(None, [*overrides_for(Path(cfg.paths.root), cfg.catalog.schema), *overrides])


def test_split_stopped_after_any_commit_reruns_to_the_uninterrupted_state(ingested):
    cfg, lake = copy_of(ingested, "split.wave_videos=1")
    with stop_after_commit(0) as commits:
        report = split.run(lake.spark, cfg, "whole")
    reference = snapshot(lake)
    assert report.counts["videos"] == 2 and len(reference["clips"]) == report.counts["clips"] > 0
    assert [t for t, _ in commits] == ["shots", "clip_frames", "clips", "commits"] * 2  # two waves of one video
    for n in range(1, len(commits)):
        cfg, lake = copy_of(ingested, "split.wave_videos=1")
        with stop_after_commit(n), pytest.raises(Killed):
            split.run(lake.spark, cfg, "killed")
        visible = lake.visible_clips().select("video_id").distinct().count()
        assert visible == (1 if n >= 4 else 0), f"after commit {n}: only committed videos show clips"
        again = split.run(lake.spark, cfg, "rerun")
        assert again.counts["videos"] == (1 if n >= 4 else 2), f"after commit {n}: a committed wave is not redone"
        assert snapshot(lake) == reference, f"stopped after commit {n} ({commits[n - 1]})"


def test_split_killed_with_sigkill_after_the_clips_commit_reruns_to_the_uninterrupted_state(ingested, tmp_path):
    """The issue's reproduction: kill the CLI (and so its JVM) when split has merged clips, then rerun."""
    cfg, lake = copy_of(ingested)
    split.run(lake.spark, cfg, "whole")
    reference = snapshot(lake)

    cfg, lake = copy_of(ingested)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"paths:\n  root: {cfg.paths.root}\ncatalog:\n  schema: {cfg.catalog.schema}\n"
                    "spark:\n  master: local[2]\n  shuffle_partitions: 2\n  conf: {spark.ui.enabled: 'false'}\n")
    child = ("import os, signal, sys\n"
             "from panda_spark.tables import Lakehouse\n"
             "Lakehouse.commit_hooks.append(lambda table, op: table == 'clips' and os.kill(os.getpid(), signal.SIGKILL))\n"
             "from panda_spark.cli import main\n"
             f"sys.exit(main(['split', '--conf', {str(conf)!r}]))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.communicate(timeout=600)
    finally:
        stop_process_group(proc)
    assert proc.returncode == -signal.SIGKILL
    lake = Lakehouse(get_spark(cfg), cfg, "after-kill")
    register_warehouse_tables(lake.spark, cfg)
    assert lake.read("clips").count() > 0 and lake.read("commits").count() == 0  # killed between the two
    assert lake.visible_clips().count() == 0
    assert split.run(lake.spark, cfg, "rerun").counts["videos"] == 2
    assert snapshot(lake) == reference


def _seed_downstream(lake: Lakehouse) -> list[str]:
    """Candidate and selected captions, labels and errors for every clip, as caption / select /
    the label loader would write them; the clip ids."""
    spark = lake.spark
    clip_ids = [r.clip_id for r in lake.read("clips").select("clip_id").collect()]
    lake.merge("candidate_captions", spark.createDataFrame(
        [(c, t, f"{t}@1", f"{t} says {c}") for c in clip_ids for t in ("a", "b")],
        "clip_id string, teacher string, teacher_version string, caption string").select(
        "*", F.array(F.lit("frame")).alias("inputs"), F.lit("p").alias("prompt"), F.lit(False).alias("degenerate"),
        F.lit(0.1).alias("generation_s")))
    lake.merge("captions", lake.complete("captions", spark.createDataFrame(
        [(c, f"a says {c}", "a", "a@1", 0.5) for c in clip_ids],
        "clip_id string, caption string, teacher string, teacher_version string, matching_score double")))
    lake.merge("selection_labels", lake.complete("selection_labels", spark.createDataFrame(
        [(c, "ann", "a") for c in clip_ids], "clip_id string, annotator string, chosen_teacher string")))
    for stage, suffix in (("caption", "/a"), ("select", ""), ("train-student", ""), ("split", "")):
        lake.record_errors(stage, spark.createDataFrame(
            [(f"{c}{suffix}", "Boom", "m", "{}") for c in clip_ids],
            "key string, error_class string, message string, input_snapshot string"))
    return clip_ids


def _orphans(lake: Lakehouse) -> dict[str, int]:
    clips = lake.read("clips").select("clip_id")
    found = {t: lake.read(t).join(clips, "clip_id", "left_anti").count() for t in CLIP_TABLES}
    found["errors"] = (lake.read("errors").filter(F.col("stage").isin("caption", "select", "train-student"))
                       .withColumn("clip_id", F.substring_index("key", "/", 1)).join(clips, "clip_id", "left_anti").count())
    return found


def test_resplit_removes_every_row_of_the_clips_it_drops_even_when_stopped_midway(ingested, tmp_path):
    cfg, lake = copy_of(ingested)
    split.run(lake.spark, cfg, "first")
    old = set(_seed_downstream(lake))
    seeded = tmp_path / "seeded"
    shutil.copytree(schema_dir(cfg), seeded)

    resplit = with_overrides(cfg, RESPLIT)
    with stop_after_commit(0) as commits:
        split.run(lake.spark, resplit, "resplit")
    new = {r.clip_id for r in lake.read("clips").select("clip_id").collect()}
    kept, dropped = old & new, old - new
    assert kept and dropped and new - old  # the precondition: some clips stay, some go, some come
    assert _orphans(lake) == {**dict.fromkeys(CLIP_TABLES, 0), "errors": 0}
    for table in ("candidate_captions", "captions", "selection_labels"):
        assert {r.clip_id for r in lake.read(table).collect()} == kept, table  # the kept clips keep theirs
    assert lake.read("errors").filter("stage = 'split'").count() == len(old)  # keyed by clip here: not clip-keyed
    reference = snapshot(lake)

    tables = [t for t, _ in commits]
    # the old split uncommitted first, the clips' downstream rows before the clips, the new commit last
    assert tables[0] == tables[-1] == "commits" and tables.index("captions") < tables.index("clips")
    for n in range(1, len(commits)):
        cfg_n, lake_n = copy_of(ingested, RESPLIT, state=seeded)
        with stop_after_commit(n), pytest.raises(Killed):
            split.run(lake_n.spark, cfg_n, "killed")
        split.run(lake_n.spark, cfg_n, "rerun")
        assert snapshot(lake_n) == reference, f"stopped after commit {n} ({commits[n - 1]})"


def test_a_write_that_loses_a_conflict_is_retried_and_one_that_keeps_losing_stops_in_one_line(lakehouse, tmp_path):
    """A real Delta conflict: the MERGE's source blocks (a Python UDF) until another thread has
    updated the row the MERGE reads, so the MERGE's commit loses; the retry then commits."""
    lake = lakehouse
    spark = lake.spark
    lake.record_errors("s", spark.createDataFrame([("a", "E", "first", "{}")], "key string, error_class string, "
                                                  "message string, input_snapshot string"))

    def attempt(lake: Lakehouse, gate_dir: Path) -> str:
        ready, go = str(gate_dir / "ready"), str(gate_dir / "go")

        @F.udf("string")
        def gate(key):
            import os as _os
            import time as _time
            if not _os.path.exists(go):
                open(ready, "w").close()
                deadline = _time.time() + 60
                while not _os.path.exists(go) and _time.time() < deadline:
                    _time.sleep(0.05)
            return key

        def other_writer() -> None:
            deadline = time.time() + 120
            while not os.path.exists(ready) and time.time() < deadline:
                time.sleep(0.05)
            spark.sql(f"UPDATE {lake.name('errors')} SET message = 'theirs' WHERE key = 'a'")
            open(go, "w").close()

        gate_dir.mkdir()
        source = spark.createDataFrame([("a",)], "key string").select(gate("key").alias("key"))
        thread = threading.Thread(target=other_writer)
        thread.start()
        try:
            return lake.committing("errors", "merge", lambda view: spark.sql(
                f"MERGE INTO {lake.name('errors')} t USING {view} s ON t.stage = 's' AND t.key = s.key "
                "WHEN MATCHED THEN UPDATE SET message = 'ours'").first(), source)
        finally:
            open(go, "w").close()
            thread.join(timeout=120)

    attempt(lake, tmp_path / "retried")
    assert [r.message for r in lake.read("errors").collect()] == ["ours"]  # the other write came first, ours after

    no_retries = Lakehouse(spark, with_overrides(lake.cfg, "catalog.write_retries=0"), "r")
    with pytest.raises(WriteConflict) as raised:
        attempt(no_retries, tmp_path / "refused")
    message = str(raised.value)
    assert "\n" not in message and lake.name("errors") in message and "rerun" in message
    assert delta_conflict(RuntimeError("io.delta.exceptions.ConcurrentDeleteReadException: x")) == \
        "ConcurrentDeleteReadException"
    assert delta_conflict(RuntimeError("[DELTA_FILE_NOT_FOUND] gone")) is None


def test_caption_and_select_stopped_after_any_commit_rerun_to_the_uninterrupted_state(ingested, tmp_path):
    """Two teachers over the clips of two videos, then select: errors first, the output table (the
    skip check) last, so every stop leaves work that a rerun redoes identically. (Stops between
    waves are the split test's; one wave each keeps this one short.)"""
    from dataclasses import asdict

    from panda_spark.caption import stage as caption
    from panda_spark.select import stage as select

    teachers = json.dumps([asdict(t) for t in load_config(None).caption.teachers
                           if t.name in ("blip2-tiny", "text-llm-tiny")])
    settings = [f"caption.teachers={teachers}", f"models.cache_dir={tmp_path / 'models'}",
                "select.scorer=text-consensus"]
    cfg, lake = copy_of(ingested, *settings)
    split.run(lake.spark, cfg, "split")
    split_done = tmp_path / "split_done"
    shutil.copytree(schema_dir(cfg), split_done)

    def run_both(cfg, lake, run_id):
        caption.run(lake.spark, cfg, run_id)
        select.run(lake.spark, cfg, run_id)

    with stop_after_commit(0) as commits:
        run_both(cfg, lake, "whole")
    reference = snapshot(lake)
    assert len(reference["candidate_captions"]) == 2 * len(reference["clips"]) > 0
    assert len(reference["captions"]) == len(reference["clips"])
    assert [t for t, _ in commits] == ["candidate_captions", "candidate_captions", "captions", "captions"]
    for n in range(1, len(commits)):
        cfg_n, lake_n = copy_of(ingested, *settings, state=split_done)
        with stop_after_commit(n), pytest.raises(Killed):
            run_both(cfg_n, lake_n, "killed")
        run_both(cfg_n, lake_n, "rerun")
        assert snapshot(lake_n) == reference, f"stopped after commit {n} ({commits[n - 1]})"

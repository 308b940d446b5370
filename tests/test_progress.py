"""Progress output: a stage's rows done / total, rate and ETA (one redrawn line on a terminal, log
lines otherwise), its running Spark tasks, the Spark UI address once, and a quiet start (no Ivy
banner, no log4j INFO lines, stdout holding only the result)."""
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from panda_spark import waves
from panda_spark.waves import Progress, task_progress

BIN = Path(sys.executable).parent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_redrawn_in_place(monkeypatch):
    clock = iter([110.0, 120.0])
    monkeypatch.setattr(waves.time, "monotonic", lambda: next(clock))
    term = Terminal()
    progress = Progress("split", "videos", total=8, waves=2, started=100.0, stream=term)
    progress.advance(0, 4)  # 4 videos in 10 s
    assert term.getvalue() == ("\rsplit  50%|##########          | 4/8 videos [0:00:10<0:00:10, 0.40 videos/s] "
                               "wave 1 of 2\x1b[K")
    progress.advance(1, 4)  # the last wave ends the line
    assert term.getvalue().endswith("\rsplit 100%|" + "#" * 20 + "| 8/8 videos [0:00:20<0:00:00, 0.40 videos/s] "
                                    "wave 2 of 2\x1b[K\n")
    assert term.getvalue().count("\n") == 1


def test_plain_output_logs_a_line_per_wave_and_running_tasks_at_most_every_30_s(monkeypatch, caplog):
    now = [0.0]
    monkeypatch.setattr(waves.time, "monotonic", lambda: now[0])
    progress = Progress("caption", "clips", total=300, waves=3, started=0.0, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="panda_spark"):
        now[0] = 50.0
        assert progress.advance(0, 100) == "caption: wave 1 of 3: 100/300 clips (2.00 clips/s, ETA 0:01:40)"
        now[0] = 60.0
        progress.running(1, 3, 8)  # 10 s after the last line: not logged
        now[0] = 85.0
        progress.running(1, 5, 8)
        now[0] = 95.0
        progress.running(1, 7, 8)
    assert caplog.messages == [
        "caption: wave 1 of 3: 100/300 clips (2.00 clips/s, ETA 0:01:40)",
        "caption: wave 2 of 3: 100/300 clips (1.18 clips/s, ETA 0:02:50), tasks 5/8",
    ]
    assert progress.running(0, 1, 2, done=150).startswith("caption: wave 1 of 3: 150/300 clips")


def test_work_without_waves_has_no_wave_label():
    progress = Progress("ingest", "videos", total=2, waves=0, stream=io.StringIO())
    assert re.fullmatch(r"ingest: 2/2 videos \(\d+\.\d\d videos/s, ETA 0:00:00\)", progress.advance(0, 2))


def test_running_job_tasks_are_reported_while_the_block_runs(spark):
    def slow(batches):
        for batch in batches:
            time.sleep(1.0)
            yield batch

    seen = []
    spark.sparkContext.setJobGroup("progress-test", "tasks reported")
    with task_progress(spark.sparkContext, lambda done, total: seen.append((done, total)), interval=0.2):
        spark.range(0, 6, numPartitions=6).mapInPandas(slow, "id long").collect()
    assert seen and {total for _, total in seen} == {6}  # local[2]: two at a time, about 3 s
    assert [done for done, _ in seen] == sorted({done for done, _ in seen}) and seen[0][0] < 6


def test_ingest_reports_videos_probed_of_total(spark, make_cfg, tmp_path, caplog):
    from panda_spark.demo.synthetic import render_demo_sources, write_manifest
    from panda_spark.ingest import stage

    from panda_spark.spark import get_spark

    manifest = write_manifest(render_demo_sources(tmp_path), tmp_path / "manifest.csv")
    cfg = make_cfg("ingest.partitions=2")
    with caplog.at_level(logging.INFO, logger="panda_spark"):
        stage.run(get_spark(cfg), cfg, "run-1", manifest=str(manifest))
    lines = [m for m in caplog.messages if re.match(r"ingest: \d", m)]
    assert lines[0] == "ingest: 3 videos to probe in 2 task(s)"
    assert re.fullmatch(r"ingest: 3/3 videos \(\d+\.\d\d videos/s, ETA 0:00:00\)", lines[-1]), lines
    running = [m for m in lines if "tasks" in m]  # the probe's tasks, where a poll saw them
    assert all(re.search(r": [0-3]/3 videos .*, tasks [0-2]/2$", m) for m in running), running


def test_cli_start_is_quiet_and_names_the_spark_ui_once(spark, tmp_path):
    """One process, one Spark start: a stage (its summary on stdout, logs on stderr), then `sql`
    in the same process (the result alone on stdout). After any earlier start (`make install`,
    the `spark` fixture) the Delta jars are recorded, so Ivy does not run."""
    flags = ["--set", f"paths.root={tmp_path / 'root'}", "--set", "spark.master=local[1]"]
    code = ("import sys; from panda_spark.cli import main; "
            f"rc = main(['create-views', *{flags!r}]); "
            # Delta's warning when its first MERGE scan was skipped (counted 0) is filtered, others
            # print (before `sql`, which sets the level to ERROR)
            "from pyspark.sql import SparkSession; "
            "log = SparkSession.getActiveSession()._jvm.org.apache.logging.log4j.LogManager.getLogger("
            "'org.apache.spark.sql.delta.commands.MergeIntoCommand'); "
            "log.warn('Merge source has SQLMetric(id: 1, name: Some(number of source rows), value: 0) rows in "
            "initial scan but SQLMetric(id: 2, name: Some(number of source rows (during repeated scan)), value: 3) "
            "rows in second scan'); "
            "log.warn('Merge source has SQLMetric(id: 1, value: 2) rows in initial scan but SQLMetric(id: 2, "
            "value: 3) rows in second scan'); "
            f"sys.exit(rc or main(['sql', 'SELECT 1 AS n', '--format', 'json', *{flags!r}]))")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    out, err = done.stdout.splitlines(), done.stderr.splitlines()
    assert out[0].startswith("create-views: ") and json.loads(out[-1]) == [{"n": 1}] and len(out) == 2, out
    assert len([line for line in err if re.search(r"Spark UI: http://\S+:\d+$", line)]) == 1, err
    ivy = [line for line in out + err if re.search(r":: (loading settings|resolving dependencies|resolution report)"
                                                    r"|Ivy Default Cache", line)]
    log4j_info = [line for line in out + err if re.match(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d INFO ", line)]
    assert not ivy and not log4j_info and not [line for line in err if "log4j profile" in line], err
    merge_warnings = [line for line in err if "Merge source has" in line]
    assert len(merge_warnings) == 1 and "value: 2) rows in initial scan" in merge_warnings[0], err

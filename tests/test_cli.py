"""The command line from outside the process: `panda-spark sql` and `spark-submit jobs/<stage>.py`
read tables by name that another process (this test session, still running) wrote."""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.ingest import stage
from panda_spark.spark import delta_package, get_spark
from tests.conftest import REPO, overrides_for
from tests.processes import stop_process_group

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ingested_schema(spark, state_root, tmp_path_factory):
    from panda_spark.config import load_config

    out = tmp_path_factory.mktemp("cli_sources")
    manifest = write_manifest(render_demo_sources(out), out / "manifest.csv")
    cfg = load_config(None, overrides_for(state_root, "cli_e2e"))
    stage.run(get_spark(cfg), cfg, "r", manifest=str(manifest))
    return overrides_for(state_root, "cli_e2e")


def _finish(cmd, cwd, timeout_s: float, env=None) -> tuple[int, str, str]:
    """Run `cmd` in its own process group: (exit status, stdout, stderr); the group (its JVM too)
    is stopped however the wait ends."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        stop_process_group(proc)
    return proc.returncode, out, err


def _run(cmd, tmp_path):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    status, out, err = _finish(cmd, tmp_path, 300, env)
    assert status == 0, err[-3000:]
    return out


def _set_flags(overrides):
    return [x for o in overrides for x in ("--set", o)]


def test_sql_command_reads_tables_another_process_holds_open(ingested_schema, spark, tmp_path):
    assert spark.sparkContext._jsc is not None  # this process's session is alive during the query
    out = _run([str(BIN / "panda-spark"), "sql", "SELECT count(*) AS n FROM cli_e2e.videos", "--format", "json",
                *_set_flags(ingested_schema)], tmp_path)
    assert json.loads(out) == [{"n": 3}]


def test_spark_submit_runs_the_same_entry_point(ingested_schema, tmp_path):
    out = _run([str(BIN / "spark-submit"), "--packages", delta_package(), str(REPO / "jobs" / "sql.py"),
                "SELECT video_id, frame_count FROM cli_e2e.videos ORDER BY video_id", "--format", "csv",
                *_set_flags(ingested_schema)], tmp_path)
    assert list(csv.reader(io.StringIO(out))) == [
        ["video_id", "frame_count"], ["-demo_dash", "480"], ["demo_city", "900"], ["demo_kitchen", "840"]]


def test_every_job_is_a_cli_command_and_every_stage_has_a_job():
    import re

    from panda_spark.cli import build_parser

    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    jobs = {}
    for path in (REPO / "jobs").glob("*.py"):
        match = re.search(r'cli_main\(\["([a-z-]+)"', path.read_text())
        assert match, f"{path.name} does not call the CLI"
        jobs[path.stem] = match.group(1)
    assert all(command in commands for command in jobs.values())
    assert {name.replace("_", "-") for name in jobs} == set(jobs.values())  # file name = command name
    assert commands - set(jobs.values()) == {"demo"}
    from panda_spark.pipeline import STAGES

    assert set(STAGES) | {"pipeline", "sql"} == set(jobs.values())


def test_sql_shell_runs_statements_until_exit_and_survives_a_bad_one(ingested_schema, spark):
    from panda_spark.config import load_config
    from panda_spark.sql_shell import sql_shell

    statements = io.StringIO("SELECT count(*) AS n\nFROM cli_e2e.videos;\nSELECT no_such_column FROM cli_e2e.videos;\n"
                             "SELECT video_id FROM cli_e2e.videos WHERE video_id LIKE '-%';\nexit\nSELECT 1;\n")
    out = io.StringIO()
    cfg = load_config(None, ingested_schema)
    assert sql_shell(spark, cfg, out, fmt="csv", lines=statements) == 1  # one statement failed
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["n", "3"] and lines[2].startswith("error: [UNRESOLVED_COLUMN")
    assert lines[3:] == ["video_id", "-demo_dash"]  # nothing after exit ran


def test_console_script_exits_with_the_commands_status(tmp_path):
    status, _, err = _finish([str(BIN / "panda-spark"), "pipeline", "--stages", "bogus"], tmp_path, 120)
    assert status == 2 and "unknown stage 'bogus'" in err

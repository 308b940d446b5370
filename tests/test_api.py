"""The Python API: `from panda_spark import load_config, run_stage, Lakehouse`."""
import subprocess
import sys

import pytest

from panda_spark.errors import ConfigError
from tests.conftest import overrides_for


def test_import_panda_spark_does_not_import_pyspark_until_a_name_is_used():
    code = ("import sys, panda_spark\n"
            "assert 'pyspark' not in sys.modules, 'import panda_spark'\n"
            "from panda_spark import load_config, run_stage\n"
            "assert 'pyspark' not in sys.modules, 'load_config, run_stage'\n"
            "from panda_spark import Lakehouse\n"
            "print(Lakehouse.__module__, 'pyspark' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["panda_spark.tables", "True"]
    with pytest.raises(ImportError):
        exec("from panda_spark import no_such_name")


def test_run_stage_refuses_an_unknown_stage_and_overrides_beside_a_config():
    from panda_spark import load_config, run_stage

    with pytest.raises(ConfigError, match="unknown stage 'spilt'; expected one of ingest, download, split"):
        run_stage("spilt")
    with pytest.raises(ConfigError, match="overrides apply to a conf file"):
        run_stage("create-views", load_config(), ["split.wave_videos=2"])


def test_run_stage_runs_a_stage_in_process_and_returns_its_report(spark, state_root, make_cfg):
    from panda_spark import load_config, run_stage

    # maintain over tables the fresh schema does not have yet: a cheap stage that reads its conf
    cfg = make_cfg("run.id=api-run", "maintain.tables=[videos, clips]")
    report = run_stage("maintain", cfg, spark=spark)
    assert (report.stage, report.run_id, report.rows_in, report.rows_out) == ("maintain", "api-run", 2, 0)
    assert (report.counts["tables"], report.counts["missing"], report.counts["maintained"]) == (2, 2, 0)

    # a conf file (here: none) with --set-style overrides, on the active session, under a fresh run id
    overrides = [*overrides_for(state_root, cfg.catalog.schema), "maintain.tables=[videos]"]
    again = run_stage("maintain", None, overrides)
    assert (again.counts["tables"], again.counts["missing"]) == (1, 1)
    assert again.run_id not in ("", "api-run") and load_config(None, overrides).run.id is None

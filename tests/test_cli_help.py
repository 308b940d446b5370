"""`panda-spark <stage> --help` and `--version`, and the one-line failures before Spark starts
(Java missing, an unwritable paths.root). No Spark session: the failures come before one starts."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from panda_spark.cli import build_parser
from panda_spark.config import load_config, parse_override
from panda_spark.errors import SetupError
from panda_spark.pipeline import STAGES
from panda_spark.spark import check_java
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_stage_help_says_what_it_reads_and_writes_its_conf_defaults_and_an_example(capsys):
    out = _help(capsys, "split")
    assert "\nreads:  videos (new or changed since their last split)\n" in out
    assert "\nwrites: shots, clips, clip_frames, commits; errors;" in out
    assert "\n  split.wave_videos = 256\n" in out
    assert "\n  split.preset = panda70m  (panda70m | released_code)\n" in out
    assert "\n  split.stitch_threshold = (empty)\n" in out
    assert "\n  split.materialize_clips = false\n" in out
    assert "caption.wave_clips" not in out  # another stage's section
    assert out.rstrip().endswith("example:\n  panda-spark split --conf conf/local.yaml --set split.wave_videos=64")

    out = _help(capsys, "load-selection-labels")
    assert "\n  select.labels = (empty)\n" in out and "select.scorer" not in out  # one key, not its section
    assert "\n  --labels PATH " in out  # the stage's own options stay listed


def test_every_stage_help_has_reads_writes_and_an_example_the_cli_accepts(capsys):
    for name, stage in STAGES.items():
        out = _help(capsys, name)
        assert f"\nreads:  {stage.reads[:40]}" in out and f"\nwrites: {stage.writes[:40]}" in out, name
        assert f"example:\n  panda-spark {name} " in out, name
        args = build_parser().parse_args([name, *shlex.split(stage.example)])
        assert args.command == name
        load_config(None, args.overrides)  # the example's --set keys are conf keys with valid values
        assert all(parse_override(o)[0].split(".")[0] in {k.split(".")[0] for k in stage.conf}
                   for o in args.overrides), f"{name}: the example sets a key of a section its help does not list"


def test_version_names_the_package_spark_and_delta(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    declared = re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (REPO / "constraints.txt").read_text(), re.M))
    assert out == f"panda-spark {declared} (pyspark {pins['pyspark']}, delta-spark {pins['delta-spark']})\n"


def _cli(argv, tmp_path, **env_changes):
    env = {**os.environ, **env_changes}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([str(BIN / "panda-spark"), *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_missing_java_is_one_line_before_spark_starts(tmp_path):
    assert shutil.which("java", path=str(BIN)) is None
    done = _cli(["create-views", "--set", f"paths.root={tmp_path / 'root'}"], tmp_path, PATH=str(BIN), JAVA_HOME=None)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "panda-spark create-views: Java 17+ is required by Spark and was not found (JAVA_HOME unset and no java "
        "on PATH): install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless"]
    assert done.stdout == ""


@pytest.mark.parametrize("under_file", [True, False])
def test_unwritable_root_is_one_line_naming_paths_root(tmp_path, under_file):
    # a path under a regular file cannot be created, by root either (chmod would not stop root)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    root = blocker / "root" if under_file else blocker
    done = _cli(["sql", "SELECT 1", "--set", f"paths.root={root}"], tmp_path)
    assert done.returncode == 2
    reason = "Not a directory" if under_file else "File exists"
    assert done.stderr.splitlines() == [
        f"panda-spark sql: configuration error: conf key 'paths.root': expected a writable directory, got {root} "
        f"({reason})"]


def _fake_java(home: Path, banner: str) -> Path:
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize("banner, major", [('openjdk version "11.0.2" 2019-01-15', 11),
                                           ('java version "1.8.0_392"', 8)])
def test_java_older_than_17_is_refused(tmp_path, monkeypatch, banner, major):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path / "jdk", banner)))
    with pytest.raises(SetupError, match=rf"found Java {major} \({tmp_path}/jdk/bin/java\): install a JDK 17\+"):
        check_java()


def test_java_17_or_later_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path / "jdk", 'openjdk version "21.0.4" 2024-07-16')))
    check_java()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "missing"))
    with pytest.raises(SetupError, match=r"JAVA_HOME=.*/missing has no bin/java"):
        check_java()

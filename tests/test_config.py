import subprocess
import sys
from pathlib import Path

import pytest

from panda_spark.config import Config, load_config, parse_override, to_dict
from panda_spark.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_local_yaml_spells_out_the_built_in_defaults():
    assert to_dict(load_config(REPO / "conf" / "local.yaml")) == to_dict(load_config(None))


@pytest.mark.parametrize("env", ["databricks", "emr"])
def test_cluster_confs_use_the_provided_session(env):
    cfg = load_config(REPO / "conf" / f"{env}.yaml")
    assert cfg.spark.mode == "cluster"
    assert cfg.catalog.schema == "panda"


def test_databricks_conf_names_a_unity_catalog():
    assert load_config(REPO / "conf" / "databricks.yaml").catalog.catalog == "main"


def test_set_overrides_nested_keys_with_typed_values(tmp_path):
    cfg = load_config(
        REPO / "conf" / "local.yaml",
        [f"paths.root={tmp_path}", "ingest.batch_rows=3", "paths.allowed_roots=[/data, s3://b/v]",
         "spark.conf={spark.driver.memory: 1g}", "run.id=abc"],
    )
    assert cfg.ingest.batch_rows == 3
    assert cfg.paths.allowed_roots == ["/data", "s3://b/v"]
    assert cfg.spark.conf == {"spark.driver.memory": "1g"}
    assert cfg.run.id == "abc"
    assert cfg.paths.root == str(tmp_path)


def test_relative_root_is_made_absolute_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.paths.root == str(tmp_path / ".panda")
    assert cfg.warehouse_dir == tmp_path / ".panda" / "warehouse"
    assert cfg.mlflow_tracking_uri == f"sqlite:///{tmp_path / '.panda' / 'mlflow' / 'mlflow.db'}"


@pytest.mark.parametrize(
    "override, message",
    [
        ("ingest.manifst=x.csv", "unknown conf key 'ingest.manifst' (known keys under 'ingest': batch_rows, manifest,"),
        ("ingestion.manifest=x.csv", "unknown conf key 'ingestion' (known keys at the top level: caption, catalog, download, export, finetune, ingest,"),
        ("ingest.batch_rows=abc", "conf key 'ingest.batch_rows': expected an integer, got 'abc'"),
        ("ingest.batch_rows=0", "conf key 'ingest.batch_rows': expected an integer ≥ 1, got 0"),
        ("ingest.batch_rows=2.5", "conf key 'ingest.batch_rows': expected an integer, got 2.5"),
        ("spark.mode=cloud", "conf key 'spark.mode': expected one of 'embedded', 'cluster', got 'cloud'"),
        ("ingest.manifest_format=xlsx", "conf key 'ingest.manifest_format': expected one of 'auto', 'csv', 'jsonl', 'parquet'"),
        ("paths.allowed_roots=/data", "conf key 'paths.allowed_roots': expected a list, e.g. [a, b], got '/data'"),
        ("spark.conf=4g", "conf key 'spark.conf': expected a mapping of key: value, got '4g'"),
        ("ingest=3", "conf key 'ingest': expected a mapping, got 3"),
        ("catalog.catalog=main", "conf key 'catalog.catalog': must be empty when spark.mode is 'embedded'"),
        ("spark.app_name=", "conf key 'spark.app_name': expected a non-empty string, got None"),
    ],
)
def test_bad_overrides_name_the_key_and_the_expected_form(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(
    "teachers, message",
    [
        ("[{name: a, adapter: blip2}]", "conf key 'caption.teachers[0].model' is required"),
        ("[{name: a, model: m, adapter: blip3}]", "conf key 'caption.teachers[0].adapter': expected one of 'blip2',"),
        ("[{name: a, model: m, adapter: blip2, inputs: [frame, video]}]", "'caption.teachers[0].inputs': expected one of"),
        ("[{name: a, model: m, adapter: blip2, inputs: [subtitles]}]", "'caption.teachers[0].inputs': expected one of"),
        ("[{name: a, model: m, adapter: blip2, inputs: [audio]}]", "'caption.teachers[0].inputs': expected one of"),
        ("[{name: a, model: m, adapter: blip2}, {name: a, model: n, adapter: git-video, inputs: [video]}]",
         "conf key 'caption.teachers[1].name': teacher names must be unique, 'a' repeats"),
        ("[{name: a, model: m, adapter: blip2, max_new_tokens: 0}]",
         "conf key 'caption.teachers[0].max_new_tokens': expected an integer ≥ 1, got 0"),
    ],
)
def test_teacher_registry_errors_name_the_teacher_and_key(teachers, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"caption.teachers={teachers}"])
    assert message in str(err.value)


def test_a_teacher_list_from_the_command_line_replaces_the_default():
    cfg = load_config(None, ["caption.teachers=[{name: t, model: Salesforce/blip2-opt-2.7b, adapter: blip2}]"])
    (teacher,) = cfg.caption.teachers
    assert (teacher.name, teacher.inputs, teacher.max_new_tokens, teacher.do_sample) == ("t", ["frame"], 40, False)


def test_override_without_equals_sign_explains_the_form():
    with pytest.raises(ConfigError, match=r"expected the form dotted.key=value"):
        parse_override("ingest.batch_rows")


def test_override_values_are_parsed_as_data_never_evaluated():
    assert parse_override("run.id=__import__('os').getcwd()") == ("run.id", "__import__('os').getcwd()")


def test_bad_conf_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark:\n  mode: embedded\n  materr: local\n")
    with pytest.raises(ConfigError, match="unknown conf key 'spark.materr'"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(bad)


def _cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "panda_spark.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_cli_rejects_bad_conf_before_spark_starts(tmp_path):
    done = _cli(tmp_path, "ingest", "--manifest", "m.csv", "--set", "ingest.batch_rows=many")
    assert done.returncode == 2
    assert "configuration error: conf key 'ingest.batch_rows': expected an integer" in done.stderr
    assert not (tmp_path / ".panda").exists()  # no warehouse, no session: it stopped before Spark


def test_cli_rejects_an_unknown_pipeline_stage_before_spark_starts(tmp_path):
    done = _cli(tmp_path, "pipeline", "--stages", "ingest,captoin")
    assert done.returncode == 2
    assert "configuration error: --stages: unknown stage 'captoin'; expected a comma-separated subset of ingest," \
        in done.stderr
    assert not (tmp_path / ".panda").exists()


def test_run_id_must_be_safe_for_rows_tags_and_filters():
    with pytest.raises(ConfigError, match="conf key 'run.id': expected letters, digits"):
        load_config(None, ["run.id=x' or '1'='1"])
    assert load_config(None, ["run.id=nightly-2026.11.26"]).run.id == "nightly-2026.11.26"


def test_config_dataclass_defaults_are_the_embedded_default():
    cfg = Config()
    assert (cfg.spark.mode, cfg.paths.root, cfg.catalog.schema) == ("embedded", ".panda", "panda")

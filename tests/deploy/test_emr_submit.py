"""deploy/emr/submit.py, offline: the steps, cluster request and pack commands it would send, checked
against the CLI, the jobs, conf/emr.yaml and the stage table (no aws CLI, nothing uploaded)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from panda_spark.cli import build_parser
from panda_spark.config import load_config
from panda_spark.errors import ConfigError
from panda_spark.pipeline import PIPELINE_STAGES, STAGES

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "emr" / "submit.py"
PREFIX = "s3://panda-deploy/panda-spark/0.1.0"
MANIFEST = "s3://panda-raw-videos/manifest.csv"
LABELS = "s3://panda-raw-videos/labels.csv"
GPU_KEYS = ("spark.executor.resource.gpu.amount", "spark.task.resource.gpu.amount",
            "spark.executor.resource.gpu.discoveryScript")


def _load_script():
    spec = importlib.util.spec_from_file_location("emr_submit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


submit = _load_script()


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "conf" / "emr.yaml")


@pytest.fixture(scope="module")
def steps(cfg):
    return submit.build_steps(cfg, "emr.yaml", PREFIX, manifest=MANIFEST, labels=LABELS)


def spark_submit(step: dict) -> tuple[dict[str, str], dict[str, str], str, list[str]]:
    """A step's command line → (spark-submit options, --conf settings, application file, its arguments)."""
    args = step["Args"]
    assert args[0] == "spark-submit"
    options, settings, i = {}, {}, 1
    while args[i].startswith("--"):  # every spark-submit option used here takes one value
        if args[i] == "--conf":
            key, _, value = args[i + 1].partition("=")
            assert key not in settings, f"{key} set twice"
            settings[key] = value
        else:
            options[args[i]] = args[i + 1]
        i += 2
    return options, settings, args[i], args[i + 1:]


def test_one_cluster_mode_step_per_pipeline_stage_in_order(steps):
    assert [s["Name"] for s in steps] == [f"panda-spark {stage}" for stage in PIPELINE_STAGES]
    for step in steps:
        options, _, _, _ = spark_submit(step)
        assert (step["Jar"], step["ActionOnFailure"]) == ("command-runner.jar", "CANCEL_AND_WAIT")
        assert (options["--master"], options["--deploy-mode"]) == ("yarn", "cluster")


def test_each_step_runs_its_job_with_arguments_the_cli_and_conf_accept(steps):
    for stage, step in zip(PIPELINE_STAGES, steps):
        options, _, job, app_args = spark_submit(step)
        job_name = stage.replace("-", "_") + ".py"
        assert job == f"{PREFIX}/jobs/{job_name}"
        assert (REPO / "jobs" / job_name).is_file(), f"jobs/{job_name} missing for stage {stage}"
        parsed = build_parser().parse_args([stage, *app_args])
        assert parsed.command == stage
        # --files puts the conf in the driver's working directory, where the relative --conf resolves
        assert options["--files"] == f"{PREFIX}/conf/{parsed.conf}"
        assert load_config(REPO / "conf" / parsed.conf, parsed.overrides).spark.mode == "cluster"
        if stage == "ingest":
            assert parsed.manifest == MANIFEST
        if stage == "load-selection-labels":
            assert parsed.labels == LABELS


def test_without_labels_the_steps_skip_the_stages_the_local_pipeline_skips(cfg):
    names = lambda steps: [s["Name"].removeprefix("panda-spark ") for s in steps]  # noqa: E731
    labelled = submit.build_steps(cfg, "emr.yaml", PREFIX, manifest=MANIFEST, labels=LABELS)
    assert names(labelled) == list(PIPELINE_STAGES)
    unlabelled = submit.build_steps(cfg, "emr.yaml", PREFIX, manifest=MANIFEST)
    assert names(unlabelled) == [s for s in PIPELINE_STAGES if s not in ("load-selection-labels", "finetune-retrieval")]
    assert all("--labels" not in s["Args"] for s in unlabelled)
    assert names(submit.build_steps(cfg, "emr.yaml", PREFIX, labels=LABELS)) == list(PIPELINE_STAGES[1:])  # no ingest
    # select.labels in the conf counts as labels, as for the local pipeline
    conf_labels = load_config(REPO / "conf" / "emr.yaml", [f"select.labels={LABELS}"])
    assert names(submit.build_steps(conf_labels, "emr.yaml", PREFIX, manifest=MANIFEST)) == list(PIPELINE_STAGES)
    # named explicitly: fine-tuning on labels loaded earlier runs; loading labels without a file is refused
    assert names(submit.build_steps(cfg, "emr.yaml", PREFIX, ("finetune-retrieval",))) == ["finetune-retrieval"]
    with pytest.raises(submit.DeployError, match="load-selection-labels: pass --labels"):
        submit.build_steps(cfg, "emr.yaml", PREFIX, ("select", "load-selection-labels"))


def test_steps_without_labels_say_what_they_leave_out(capsys):
    assert submit.main(["steps", "--dry-run", "--s3-prefix", PREFIX, "--cluster-id", "j-3AB12CD",
                        "--manifest", MANIFEST]) == 0
    captured = capsys.readouterr()
    (steps,) = json.loads(captured.out)["files"].values()
    names = [s["Name"] for s in steps]
    assert "panda-spark load-selection-labels" not in names and len(names) == len(PIPELINE_STAGES) - 2
    assert "no load-selection-labels step (no --labels or select.labels)" in captured.err


def test_maintain_is_a_cpu_step_only_when_asked_for(steps, cfg):
    assert "maintain" not in PIPELINE_STAGES and "panda-spark maintain" not in [s["Name"] for s in steps]
    (step,) = submit.build_steps(cfg, "emr.yaml", PREFIX, ("maintain",))
    options, settings, job, app_args = spark_submit(step)
    assert step["Name"] == "panda-spark maintain" and job == f"{PREFIX}/jobs/maintain.py"
    assert (REPO / "jobs" / "maintain.py").is_file()
    parsed = build_parser().parse_args(["maintain", *app_args])
    assert parsed.command == "maintain" and options["--files"] == f"{PREFIX}/conf/{parsed.conf}"
    maintain = load_config(REPO / "conf" / parsed.conf, parsed.overrides).maintain
    assert maintain.vacuum_retention_hours >= 168 and maintain.tables == []  # Delta's safe retention, every table
    assert not set(GPU_KEYS) & set(settings)
    # no GPU keys needed for it, as for the other CPU stages
    cpu_only = load_config(REPO / "conf" / "emr.yaml", ["spark.gpu.executor_gpus=0", "spark.gpu.task_gpus=0"])
    assert [s["Name"] for s in submit.build_steps(cpu_only, "emr.yaml", PREFIX, ("maintain",))] == \
        ["panda-spark maintain"]


def test_steps_use_delta_from_the_image_and_the_glue_catalog(steps):
    for step in steps:
        options, settings, _, _ = spark_submit(step)
        assert options["--jars"].split(",") == ["/usr/share/aws/delta/lib/delta-spark.jar",
                                                "/usr/share/aws/delta/lib/delta-storage.jar"]
        assert settings["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
        assert settings["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        assert settings["spark.hadoop.hive.metastore.client.factory.class"] == \
            "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"


def test_driver_and_executors_run_the_packed_environment(steps):
    for step in steps:
        options, settings, _, _ = spark_submit(step)
        archive, alias = options["--archives"].split("#")
        assert archive == f"{PREFIX}/panda-env.tar.gz"
        for key in ("spark.yarn.appMasterEnv.PYSPARK_PYTHON", "spark.executorEnv.PYSPARK_PYTHON"):
            assert settings[key] == f"./{alias}/bin/python"


def test_gpu_steps_carry_the_confs_gpu_scheduling_and_cpu_steps_none(steps, cfg):
    gpu = cfg.spark.gpu
    assert (gpu.executor_gpus, gpu.task_gpus) == (1, 1.0)
    assert gpu.discovery_script == "/usr/lib/spark/scripts/gpu/getGpusResources.sh"
    assert {s for s in PIPELINE_STAGES if STAGES[s].gpu} == {"caption", "select", "finetune-retrieval",
                                                            "train-student", "evaluate"}
    for stage, step in zip(PIPELINE_STAGES, steps):
        _, settings, _, _ = spark_submit(step)
        assert settings["spark.python.worker.reuse"] == "true"
        if STAGES[stage].gpu:
            assert int(settings["spark.executor.resource.gpu.amount"]) == gpu.executor_gpus
            assert float(settings["spark.task.resource.gpu.amount"]) == gpu.task_gpus
            assert settings["spark.executor.resource.gpu.discoveryScript"] == gpu.discovery_script
            assert settings["spark.dynamicAllocation.enabled"] == "false"
            assert settings["spark.executor.instances"] == "4"
        else:
            assert not set(GPU_KEYS) & set(settings), stage
    _, student, _, _ = spark_submit(steps[PIPELINE_STAGES.index("train-student")])
    assert student["spark.dynamicAllocation.enabled"] == "false"


def _groups(request: dict) -> dict[str, dict]:
    return {g["InstanceGroupType"]: g for g in request["instance-groups"]}


def _classified(configurations: list[dict]) -> dict[str, dict]:
    return {c["Classification"]: c for c in configurations}


def test_cluster_request_schedules_gpus_on_yarn_in_the_gpu_group(cfg):
    request = submit.cluster_request(cfg, PREFIX, release_label="emr-7.11.0")
    assert request["release-label"] == "emr-7.11.0"
    assert {a["Name"] for a in request["applications"]} == {"Hadoop", "Spark"}
    cluster = _classified(request["configurations"])
    assert cluster["spark-defaults"]["Properties"]["spark.executor.resource.gpu.discoveryScript"] == \
        cfg.spark.gpu.discovery_script
    assert cluster["yarn-site"]["Properties"]["yarn.resource-types"] == "yarn.io/gpu"
    assert cluster["capacity-scheduler"]["Properties"]["yarn.scheduler.capacity.resource-calculator"] == \
        "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"
    assert cluster["spark-hive-site"]["Properties"]["hive.metastore.client.factory.class"] == \
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"

    groups = _groups(request)
    assert set(groups) == {"MASTER", "CORE", "TASK"}
    assert groups["TASK"]["InstanceType"].startswith("g") and groups["TASK"]["InstanceCount"] >= 1
    assert "Configurations" not in groups["CORE"]  # CPU nodes: a NodeManager GPU plugin would not start there
    gpu_node = _classified(groups["TASK"]["Configurations"])
    yarn = gpu_node["yarn-site"]["Properties"]
    assert yarn["yarn.nodemanager.resource-plugins"] == "yarn.io/gpu"
    assert yarn["yarn.nodemanager.container-executor.class"].endswith(".LinuxContainerExecutor")
    executor = _classified(gpu_node["container-executor"]["Configurations"])
    assert executor["gpu"]["Properties"]["module.enabled"] == "true"
    mount = yarn["yarn.nodemanager.linux-container-executor.cgroups.mount-path"]
    assert executor["cgroups"]["Properties"]["root"] == mount

    (bootstrap,) = request["bootstrap-actions"]
    assert bootstrap["Path"] == f"{PREFIX}/bootstrap.sh"
    assert bootstrap["Args"] == ["python3.11", mount]  # the interpreter pack used; where YARN finds the cgroup


def test_cluster_command_reads_every_structured_option_from_a_written_file(cfg):
    request = submit.cluster_request(cfg, PREFIX)
    command, files = submit.cluster_command(request)
    assert command[:3] == ["aws", "emr", "create-cluster"]
    for path, content in files.items():
        option = command[command.index(f"file://{path}") - 1]
        assert request[option.removeprefix("--")] == content


def test_pack_builds_the_wheel_into_a_pinned_venv_and_venv_packs_it():
    commands = submit.pack_commands()
    assert commands[1][:3] == ["python3.11", "-m", "venv"]
    assert any(c[-5:] == ["wheel", "--no-deps", "-w", "build/emr/wheels", "."] for c in commands)
    installs = [c for c in commands if "install" in c and "panda-spark[ml,cloud]" in c]
    assert installs and all(c[c.index("-c") + 1] == "constraints.txt" for c in installs)
    assert any(c[-3:] == ["--no-deps", "scenedetect", "petastorm"] and "constraints.txt" in c for c in commands)
    pack = commands[-1]
    assert pack[0].endswith("/bin/venv-pack") and pack[pack.index("-o") + 1] == "dist/panda-env.tar.gz"
    assert (REPO / "constraints.txt").is_file()


def test_upload_puts_each_piece_where_the_steps_and_cluster_read_it(steps, cfg):
    copied = {c[-1] if "--recursive" not in c else c[4]: c[3] for c in submit.upload_commands(PREFIX, "conf/emr.yaml")}
    options, _, job, _ = spark_submit(steps[0])
    assert copied[options["--archives"].split("#")[0]] == "dist/panda-env.tar.gz"
    assert copied[options["--files"]] == "conf/emr.yaml"
    assert copied[job.rsplit("/", 1)[0]] == "jobs"
    assert copied[submit.cluster_request(cfg, PREFIX)["bootstrap-actions"][0]["Path"]] == "deploy/emr/bootstrap.sh"


def test_bootstrap_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / "deploy" / "emr" / "bootstrap.sh")], check=True)


def test_steps_dry_run_prints_the_add_steps_request_as_json():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "steps", "--dry-run", "--s3-prefix", PREFIX, "--cluster-id", "j-3AB12CD",
         "--manifest", MANIFEST, "--labels", LABELS, "--stages", "ingest,caption"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    plan = json.loads(out)
    (command,) = plan["commands"]
    assert command[:5] == ["aws", "emr", "add-steps", "--cluster-id", "j-3AB12CD"]
    (path,) = plan["files"]
    assert command[-1] == f"file://{path}"
    assert [s["Name"] for s in plan["files"][path]] == ["panda-spark ingest", "panda-spark caption"]


@pytest.mark.parametrize("overrides, stages, key", [
    (["spark.gpu.executor_gpus=0"], PIPELINE_STAGES, "spark.gpu.executor_gpus"),
    (["spark.gpu.task_gpus=0"], ("caption",), "spark.gpu.task_gpus"),
    (["spark.gpu.discovery_script="], ("evaluate",), "spark.gpu.discovery_script"),
    (["spark.dynamic_allocation=true"], ("train-student",), "spark.dynamic_allocation"),
    (["student.num_processes=5"], ("train-student",), "student.num_processes"),
    (["catalog.catalog=main"], ("ingest",), "catalog.catalog"),
])
def test_a_conf_the_steps_cannot_run_is_refused_naming_the_key(overrides, stages, key):
    cfg = load_config(REPO / "conf" / "emr.yaml", overrides)
    with pytest.raises(ConfigError, match=f"conf key '{key}': expected"):
        submit.build_steps(cfg, "emr.yaml", PREFIX, stages, manifest=MANIFEST, labels=LABELS)


def test_cpu_stages_need_no_gpu_keys():
    cfg = load_config(REPO / "conf" / "emr.yaml", ["spark.gpu.executor_gpus=0", "spark.gpu.task_gpus=0"])
    steps = submit.build_steps(cfg, "emr.yaml", PREFIX, ("ingest", "split"), manifest=MANIFEST)
    assert [s["Name"] for s in steps] == ["panda-spark ingest", "panda-spark split"]


@pytest.mark.parametrize("argv, message", [
    (["--cluster-id=--stages"], "--cluster-id '--stages': expected an EMR cluster id"),
    (["--cluster-id", "j-1A", "--manifest=-rf"], "--manifest '-rf': expected a path, URI or id that does not begin with '-'"),
    (["--cluster-id", "j-1A", "--stages", "ingest,caption-all"], "--stages: unknown stage 'caption-all'"),
    (["--cluster-id", "j-1A", "--stages", "ingest"], "ingest: pass --manifest s3://... or set conf key 'ingest.manifest'"),
])
def test_bad_options_are_refused_before_anything_runs(argv, message, capsys):
    assert submit.main(["steps", "--dry-run", "--s3-prefix", PREFIX, *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_the_conf_keeps_the_config_dataclass_keys():
    # emr.yaml spells out every GPU scheduling key the steps read (not left to the embedded defaults)
    import yaml

    spark = yaml.safe_load((REPO / "conf" / "emr.yaml").read_text())["spark"]
    gpu_fields = {f.name for f in dataclasses.fields(type(load_config(None).spark.gpu))}
    assert set(spark["gpu"]) == gpu_fields
    assert {"arrow_batch_rows", "python_worker_reuse", "dynamic_allocation"} <= set(spark)

"""databricks.yml checked offline against what its jobs run: the pipeline's stages (panda_pipeline)
and the table maintenance (panda_maintain), the CLI that parses each task's parameters, the conf
those parameters load, and the clusters the stages need.

`${var.*}` become the variables' defaults (or other values: the catalog and schema variables must
reach every conf key that names them) and `${workspace.file_path}` this checkout, which the bundle
syncs to the workspace. No Databricks CLI, no network.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import fnmatch
import importlib
import importlib.util
import io
import re
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from panda_spark.cli import build_parser
from panda_spark.config import Config, load_config, to_dict
from panda_spark.errors import ConfigError
from panda_spark.pipeline import PIPELINE_STAGES, STAGES

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "databricks.yaml"
OTHER_CATALOG = {"catalog": "lab", "schema": "panda_test"}
# GPU instance families: AWS, Azure (NC/ND/NV), GCP (a2, a3, g2)
GPU_NODE = re.compile(r"^(g4dn|g5|g6e?|p3|p4de?|p5e?)\.|^Standard_N[CDV]|^(a2|a3|g2)-")
REF = re.compile(r"\$\{([\w.-]+)\}")
JOB_PARAMETER = re.compile(r"\{\{job\.parameters\.([\w-]+)\}\}")
PIPELINE_JOB, MAINTAIN_JOB = "panda_pipeline", "panda_maintain"
# stage → the bundle job whose task runs it; the stages not here run by hand only (one-off loads)
JOB_OF = {**{stage: PIPELINE_JOB for stage in PIPELINE_STAGES}, "maintain": MAINTAIN_JOB}
# import-panda-csv needs a --csv of published metadata, calibrate-selection labels: run them when you have them
UNSCHEDULED = {"import-panda-csv", "calibrate-selection"}


# ---------------------------------------------------------------- the bundle, resolved


def load_bundle(**variables: str) -> tuple[dict, dict]:
    """databricks.yml with its references resolved, and the variable values used."""
    raw = yaml.safe_load((REPO / "databricks.yml").read_text(encoding="utf-8"))
    values = {name: spec["default"] for name, spec in raw["variables"].items()} | variables
    return _resolve(raw, values), values


def run_with(bundle: dict, name: str = PIPELINE_JOB, **parameters: str) -> dict:
    """The bundle as a run of job `name` sees it: `{{job.parameters.<p>}}` in its tasks replaced by
    `parameters` or else the job parameter's default."""
    values = {p["name"]: p["default"] for p in job(bundle, name).get("parameters", [])} | parameters
    run = copy.deepcopy(bundle)
    for task in tasks(run, name).values():
        wheel = task.get("python_wheel_task", {})
        wheel["parameters"] = [JOB_PARAMETER.sub(lambda m: values[m.group(1)], str(a)) if isinstance(a, str) else a
                               for a in wheel.get("parameters", [])]
    return run


def _resolve(node, values: dict):
    if isinstance(node, dict):
        return {key: _resolve(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, values) for value in node]
    if not isinstance(node, str):
        return node

    def value(ref: str):
        if ref == "workspace.file_path":
            return str(REPO)
        if ref.startswith("var."):
            if ref[4:] not in values:
                raise KeyError(f"${{{ref}}}: databricks.yml defines no variable '{ref[4:]}'")
            return values[ref[4:]]
        return f"${{{ref}}}"  # bundle.* / workspace.current_user.*: deploy-time names, no task reads them

    whole = REF.fullmatch(node)  # a lone reference keeps its type (num_workers: ${var.gpu_workers})
    return value(whole.group(1)) if whole else REF.sub(lambda m: str(value(m.group(1))), node)


def job(bundle: dict, name: str = PIPELINE_JOB) -> dict:
    return bundle["resources"]["jobs"][name]


def tasks(bundle: dict, name: str = PIPELINE_JOB) -> dict[str, dict]:
    return {task["task_key"]: task for task in job(bundle, name)["tasks"]}


def clusters(bundle: dict, name: str = PIPELINE_JOB) -> dict[str, dict]:
    return {c["job_cluster_key"]: c["new_cluster"] for c in job(bundle, name)["job_clusters"]}


@lru_cache
def setup_kwargs() -> dict:
    """The literal keyword arguments of setup() in setup.py: what the wheel is built from."""
    call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text(encoding="utf-8")))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    kwargs = {}
    for keyword in call.keywords:
        with contextlib.suppress(ValueError):  # find_packages(...) is not a literal
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
    return kwargs


def console_scripts() -> dict[str, str]:
    return dict(item.replace(" ", "").split("=", 1) for item in setup_kwargs()["entry_points"]["console_scripts"])


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


# ---------------------------------------------------------------- checks: each returns its problems


def failed(*checks: tuple[bool, str]) -> list[str]:
    """The messages of the (ok, message) checks that are not ok."""
    return [message for ok, message in checks if not ok]


def order_problems(bundle: dict) -> list[str]:
    keys = [task["task_key"] for task in job(bundle)["tasks"]]
    problems = failed((keys == list(PIPELINE_STAGES), f"tasks {keys} != PIPELINE_STAGES {list(PIPELINE_STAGES)}"))
    for before, task in zip([None, *keys], job(bundle)["tasks"]):
        wanted = [{"task_key": before}] if before else None
        problems += failed((task.get("depends_on") == wanted,
                            f"task '{task['task_key']}' depends_on {task.get('depends_on')}, expected {wanted}"))
    return problems


def artifact_problems(bundle: dict) -> list[str]:
    [(name, artifact)] = bundle["artifacts"].items()
    build = artifact.get("build", "")
    dist = re.search(r"(?:-w|--wheel-dir)[ =](\S+)", build)
    problems = failed(
        (artifact.get("type") == "whl", f"artifact {name}: type {artifact.get('type')!r}, expected whl"),
        ((REPO / artifact.get("path", "?") / "setup.py").is_file(),
         f"artifact {name}: path {artifact.get('path')!r} holds no setup.py"),
        ("pip wheel" in build and "--no-deps" in build and dist is not None,
         f"artifact {name}: build {build!r} is not a `pip wheel --no-deps -w <dir>`"),
    )
    if dist:
        setup = setup_kwargs()
        built = f"{dist.group(1).strip('./')}/{normalized(setup['name'])}-{setup['version']}-py3-none-any.whl"
        for key, task in [item for name in bundle["resources"]["jobs"] for item in tasks(bundle, name).items()]:
            globs = [lib["whl"].removeprefix("./") for lib in task.get("libraries", []) if "whl" in lib]
            problems += failed((len(globs) == 1 and fnmatch.fnmatch(built, globs[0]),
                                f"task '{key}': libraries {task.get('libraries')} do not install the built {built}"))
    return problems


def parse_parameters(parameters: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    parser = build_parser()
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if not parameters or parameters[0] not in commands:
        return None, f"{parameters[:1]} is not a panda-spark command (known: {', '.join(commands)})"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(parameters), None
    except SystemExit:
        return None, f"panda-spark rejects {parameters}: {stderr.getvalue().strip().splitlines()[-1]}"


def task_problems(bundle: dict, values: dict, stage: str) -> list[str]:
    task = tasks(run_with(bundle, JOB_OF[stage]), JOB_OF[stage]).get(stage)
    if task is None:
        return [f"no task '{stage}' in job {JOB_OF[stage]}"]
    wheel, setup = task.get("python_wheel_task", {}), setup_kwargs()
    package = wheel.get("package_name", "")
    cluster = clusters(bundle, JOB_OF[stage]).get(task.get("job_cluster_key"), {})
    problems = failed(
        (wheel.get("entry_point") in console_scripts(),
         f"entry_point {wheel.get('entry_point')!r} is not a console script of setup.py {sorted(console_scripts())}"),
        # Databricks finds the entry point in the metadata of the distribution named package_name
        (bool(package) and importlib.util.find_spec(package) is not None
         and normalized(package) == normalized(setup["name"]),
         f"package_name {package!r} is not the importable package of the '{setup['name']}' distribution"),
    ) + cluster_problems(stage, task.get("job_cluster_key"), cluster)
    args, problem = parse_parameters(wheel.get("parameters", []))
    if problem:
        return [f"{stage}: {p}" for p in problems + [problem]]
    problems += failed((args.command == stage, f"the task runs `panda-spark {args.command}`"))
    if not args.conf or Path(args.conf).resolve() != CONF:
        return [f"{stage}: {p}" for p in problems + [f"--conf {args.conf} is not the synced {CONF.relative_to(REPO)}"]]
    try:
        cfg = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        return [f"{stage}: {p}" for p in problems + [f"the conf with its --set overrides is rejected: {exc}"]]
    catalog, schema = values["catalog"], values["schema"]
    volume = f"/Volumes/{catalog}/{schema}"
    env = cluster.get("spark_env_vars", {})
    stale = stale_references(cfg)
    problems += failed(
        (cfg.spark.mode == "cluster", f"spark.mode {cfg.spark.mode!r}, expected cluster"),
        ((cfg.catalog.catalog, cfg.catalog.schema) == (catalog, schema),
         f"catalog {cfg.catalog.catalog}.{cfg.catalog.schema}, expected {catalog}.{schema}"),
        (cfg.models.cache_dir == f"{volume}/models",
         f"models.cache_dir {cfg.models.cache_dir}, expected {volume}/models"),
        (cfg.paths.root.startswith(f"{volume}/"),
         f"paths.root {cfg.paths.root} is not on a Volume of {catalog}.{schema}"),
        (str(env.get("HF_HOME", "")).startswith(f"{cfg.models.cache_dir}/"),
         f"HF_HOME {env.get('HF_HOME')} is not under models.cache_dir {cfg.models.cache_dir}"),
        ("HF_HUB_OFFLINE" not in env, "HF_HUB_OFFLINE is forced: a first run could not fetch the checkpoints"),
        (not stale, f"conf keys still name {default_catalog()}: {stale}"),
    )
    problems += spark_conf_problems(cfg, cluster.get("spark_conf", {}), STAGES[stage].gpu)
    problems += stage_problems(stage, args, cfg, values, cluster)
    return [f"{stage}: {p}" for p in problems]


def cluster_problems(stage: str, key: str | None, cluster: dict) -> list[str]:
    runtime, node = cluster.get("spark_version", ""), cluster.get("node_type_id", "")
    gpu_runtime, gpu_node = "-gpu-ml-" in runtime, bool(GPU_NODE.search(node))
    where = f"job cluster {key!r} ({runtime or 'no runtime'}, {node or 'no node type'})"
    return failed(
        (not STAGES[stage].gpu or (gpu_runtime and gpu_node), f"{where} has no GPU ML runtime and GPU nodes"),
        (STAGES[stage].gpu or not (gpu_runtime or gpu_node), f"{where} is a GPU cluster for a CPU stage"),
        ("-ml-" in runtime, f"{where} is no ML runtime: the wheel installs no torch / transformers / mlflow"),
    )


def _agrees(conf_value, spark_value) -> bool:
    if conf_value is None:
        return spark_value is None
    if isinstance(conf_value, bool):
        return str(spark_value).lower() == str(conf_value).lower()
    with contextlib.suppress(TypeError, ValueError):
        return float(spark_value) == float(conf_value)
    return False


def spark_conf_problems(cfg: Config, spark_conf: dict, gpu: bool) -> list[str]:
    """The cluster's Spark settings equal the conf's, which GPU stages compare with the live session."""
    wanted = {"spark.python.worker.reuse": cfg.spark.python_worker_reuse,
              "spark.sql.execution.arrow.maxRecordsPerBatch": cfg.spark.arrow_batch_rows}
    if gpu:
        wanted |= {"spark.executor.resource.gpu.amount": cfg.spark.gpu.executor_gpus,
                   "spark.task.resource.gpu.amount": cfg.spark.gpu.task_gpus,
                   "spark.executor.resource.gpu.discoveryScript": cfg.spark.gpu.discovery_script,
                   "spark.dynamicAllocation.enabled": cfg.spark.dynamic_allocation}
    return failed(*[(_agrees(value, spark_conf.get(key)),
                     f"spark_conf {key}={spark_conf.get(key)!r}, the conf says {value!r}")
                    for key, value in wanted.items()])


def stage_problems(stage: str, args: argparse.Namespace, cfg: Config, values: dict, cluster: dict) -> list[str]:
    gpus = cfg.spark.gpu
    if stage == "ingest":
        return failed((args.manifest == values["manifest"],
                       f"--manifest {args.manifest}, expected the job parameter manifest (default ${{var.manifest}})"))
    if stage == "load-selection-labels":  # the stage needs a labels file: --labels or select.labels
        return failed((args.labels == values["labels"],
                       f"--labels {args.labels}, expected the job parameter labels (default ${{var.labels}})"))
    if stage in ("caption", "select"):
        section = getattr(cfg, stage)
        return failed((0 < section.task_gpus <= gpus.executor_gpus and section.executor_gpus == gpus.executor_gpus,
                       f"{stage}.task_gpus {section.task_gpus} / executor_gpus {section.executor_gpus} do not fit "
                       f"the executors' {gpus.executor_gpus} GPUs (spark.gpu.executor_gpus)"))
    if stage == "train-student" and not cfg.student.local_mode:
        # TorchDistributor's barrier stage starts every process at once: one GPU slot each
        slots = cluster.get("num_workers", 0) * int(gpus.executor_gpus // gpus.task_gpus) if gpus.task_gpus else 0
        return failed(
            (not cfg.student.use_gpu or slots >= cfg.student.num_processes,
             f"{cluster.get('num_workers')} workers x {gpus.executor_gpus} GPUs / {gpus.task_gpus} per task = "
             f"{slots} slots < student.num_processes {cfg.student.num_processes}"),
            (not cfg.spark.dynamic_allocation, "spark.dynamic_allocation is on: a barrier stage needs it off"),
        )
    if stage == "maintain":  # a scheduled VACUUM below Delta's 7 days breaks readers of older snapshots
        return failed((cfg.maintain.vacuum_retention_hours >= 168 and not cfg.maintain.tables,
                       f"maintain.vacuum_retention_hours {cfg.maintain.vacuum_retention_hours} (expected ≥ 168) / "
                       f"maintain.tables {cfg.maintain.tables} (expected empty: every table)"))
    return []


@lru_cache
def default_catalog() -> str:
    defaults = load_bundle()[1]
    return f"{defaults['catalog']}.{defaults['schema']}"


def stale_references(cfg: Config) -> list[str]:
    """Conf keys that still name the default catalog/schema although the variables name another."""
    catalog, schema = default_catalog().split(".")
    if (cfg.catalog.catalog, cfg.catalog.schema) == (catalog, schema):
        return []
    pattern = re.compile(rf"(?:^|/){re.escape(catalog)}[./]{re.escape(schema)}(?:[./]|$)")

    def walk(node, key):
        if isinstance(node, dict):
            return [hit for k, v in node.items() for hit in walk(v, f"{key}.{k}" if key else k)]
        if isinstance(node, list):
            return [hit for i, v in enumerate(node) for hit in walk(v, f"{key}[{i}]")]
        return [key] if isinstance(node, str) and pattern.search(node) else []

    return walk(to_dict(cfg), "")


# ---------------------------------------------------------------- tests


def test_the_job_runs_the_pipeline_stages_in_order():
    assert order_problems(load_bundle()[0]) == []


def test_every_stage_is_a_task_of_the_job_it_belongs_to_and_of_no_other():
    bundle, _ = load_bundle()
    assert set(bundle["resources"]["jobs"]) == {PIPELINE_JOB, MAINTAIN_JOB}
    assert set(STAGES) == set(JOB_OF) | UNSCHEDULED and not set(JOB_OF) & UNSCHEDULED
    for stage in STAGES:
        jobs = {name for name in bundle["resources"]["jobs"] if stage in tasks(bundle, name)}
        assert jobs == ({JOB_OF[stage]} if stage in JOB_OF else set()), stage
    assert list(tasks(bundle, MAINTAIN_JOB)) == ["maintain"] and not STAGES["maintain"].in_pipeline


def test_the_maintenance_job_runs_daily_on_the_pipelines_cpu_cluster():
    bundle, values = load_bundle()
    maintenance = job(bundle, MAINTAIN_JOB)
    schedule = maintenance["schedule"]
    seconds, minutes, hours, day, month, weekday = schedule["quartz_cron_expression"].split()
    assert (seconds, minutes, day, month, weekday) == ("0", "0", "*", "*", "?") and 0 <= int(hours) <= 23  # daily
    assert schedule["timezone_id"] == "UTC"
    assert schedule["pause_status"] == values["maintain_pause_status"] == "UNPAUSED"
    assert job(load_bundle(maintain_pause_status="PAUSED")[0], MAINTAIN_JOB)["schedule"]["pause_status"] == "PAUSED"
    raw = yaml.safe_load((REPO / "databricks.yml").read_text(encoding="utf-8"))
    assert raw["targets"]["dev"]["variables"]["maintain_pause_status"] == "PAUSED"  # dev keeps it paused
    assert maintenance["max_concurrent_runs"] == 1
    assert clusters(bundle, MAINTAIN_JOB) == {"cpu": clusters(bundle)["cpu"]}
    assert tasks(bundle, MAINTAIN_JOB)["maintain"]["job_cluster_key"] == "cpu"


@pytest.mark.parametrize("variables", [{}, OTHER_CATALOG], ids=["defaults", "other-catalog"])
@pytest.mark.parametrize("stage", tuple(JOB_OF))
def test_each_task_runs_its_stage_on_its_cluster_with_the_bundles_conf(stage, variables):
    bundle, values = load_bundle(**variables)
    assert task_problems(bundle, values, stage) == []


def test_manifest_and_labels_are_job_parameters_chosen_per_run():
    bundle, values = load_bundle()
    assert job(bundle)["parameters"] == [{"name": "manifest", "default": values["manifest"]},
                                         {"name": "labels", "default": values["labels"]}]

    def passed(run: dict, stage: str, option: str) -> str:
        arguments = tasks(run)[stage]["python_wheel_task"]["parameters"]
        return arguments[arguments.index(option) + 1]

    # the tasks read the run's parameters, not a path fixed at deploy time
    assert passed(bundle, "ingest", "--manifest") == "{{job.parameters.manifest}}"
    assert passed(bundle, "load-selection-labels", "--labels") == "{{job.parameters.labels}}"
    run = run_with(bundle, manifest="/Volumes/main/panda/raw/batch-7.csv", labels="/Volumes/main/panda/raw/l7.csv")
    assert passed(run, "ingest", "--manifest") == "/Volumes/main/panda/raw/batch-7.csv"
    assert passed(run, "load-selection-labels", "--labels") == "/Volumes/main/panda/raw/l7.csv"
    assert passed(run_with(bundle), "ingest", "--manifest") == values["manifest"]


def test_prod_runs_as_a_service_principal_with_permissions():
    bundle, _ = load_bundle(service_principal="6b1e2c4d-0000-4000-8000-00000000abcd", operators_group="video-ml")
    prod, dev = bundle["targets"]["prod"], bundle["targets"]["dev"]
    assert prod["mode"] == "production"
    assert prod["run_as"] == {"service_principal_name": "6b1e2c4d-0000-4000-8000-00000000abcd"}
    assert prod["permissions"] == [
        {"service_principal_name": "6b1e2c4d-0000-4000-8000-00000000abcd", "level": "CAN_MANAGE"},
        {"group_name": "video-ml", "level": "CAN_RUN"}]
    assert "run_as" not in dev and "permissions" not in dev  # dev runs as its deployer


def test_every_task_installs_the_wheel_built_from_setup_py():
    assert artifact_problems(load_bundle()[0]) == []
    module, function = console_scripts()["panda-spark"].split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_every_task_installs_the_cloud_extra_at_the_pins_of_constraints_txt():
    bundle, _ = load_bundle()
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    wanted = sorted(f"{name}=={pins[name]}" for name in setup_kwargs()["extras_require"]["cloud"])
    for name in bundle["resources"]["jobs"]:
        for key, task in tasks(bundle, name).items():
            got = sorted(lib["pypi"]["package"] for lib in task.get("libraries", []) if "pypi" in lib)
            assert got == wanted, key


def test_the_gpu_cluster_is_the_ml_runtime_of_the_cpu_clusters_release():
    bundle, _ = load_bundle()
    releases = {key: cluster["spark_version"].split("-")[0] for key, cluster in clusters(bundle).items()}
    assert len(set(releases.values())) == 1, releases
    # a fixed size: a barrier stage cannot wait for autoscaling to add workers
    assert isinstance(clusters(bundle)["gpu"]["num_workers"], int)


def test_the_checks_catch_a_broken_bundle():
    bundle, values = load_bundle()
    broken = copy.deepcopy(bundle)
    broken_tasks = tasks(broken)
    broken_tasks["caption"]["python_wheel_task"]["parameters"][0] = "captions"
    broken_tasks["select"]["python_wheel_task"]["parameters"] += ["--set", "select.beam_width=4"]
    broken_tasks["split"]["python_wheel_task"]["entry_point"] = "panda_spark"
    broken_tasks["train-student"]["job_cluster_key"] = "cpu"
    broken_tasks["evaluate"]["libraries"] = [{"whl": "./build/*.whl"}]
    clusters(broken)["gpu"]["spark_conf"]["spark.dynamicAllocation.enabled"] = "true"
    job(broken)["tasks"][2:4] = job(broken)["tasks"][3:1:-1]

    def found(problems: list[str], text: str) -> bool:
        return any(text in problem for problem in problems)

    assert found(task_problems(broken, values, "caption"), "['captions'] is not a panda-spark command")
    assert found(task_problems(broken, values, "select"), "unknown conf key 'select.beam_width'")
    assert found(task_problems(broken, values, "split"), "entry_point 'panda_spark' is not a console script")
    assert found(task_problems(broken, values, "train-student"), "has no GPU ML runtime and GPU nodes")
    assert found(task_problems(broken, values, "finetune-retrieval"),
                 "spark_conf spark.dynamicAllocation.enabled='true', the conf says False")
    assert found(artifact_problems(broken), "task 'evaluate': libraries [{'whl': './build/*.whl'}] do not install")
    assert found(order_problems(broken),
                 "task 'select' depends_on [{'task_key': 'caption'}], expected [{'task_key': 'split'}]")
    assert task_problems(broken, values, "ingest") == []  # the untouched task stays clean
    # the maintenance job: a VACUUM below 7 days, or its task moved into the pipeline job
    maintenance = tasks(broken, MAINTAIN_JOB)["maintain"]
    maintenance["python_wheel_task"]["parameters"] += ["--set", "maintain.vacuum_retention_hours=24"]
    assert found(task_problems(broken, values, "maintain"), "maintain.vacuum_retention_hours 24 (expected ≥ 168)")
    job(broken, MAINTAIN_JOB)["tasks"] = []
    job(broken)["tasks"].append(maintenance)
    assert task_problems(broken, values, "maintain") == ["no task 'maintain' in job panda_maintain"]
    assert found(order_problems(broken), "!= PIPELINE_STAGES")
    # the GPU cluster shrunk to one worker: too few GPU slots for the student's processes
    gpu_stage, _ = load_bundle()
    clusters(gpu_stage)["gpu"]["num_workers"] = 1
    assert found(task_problems(gpu_stage, values, "train-student"), "slots < student.num_processes 8")
    # a conf key left on the default catalog when the variables name another
    other, other_values = load_bundle(**OTHER_CATALOG)
    params = tasks(other)["train-student"]["python_wheel_task"]["parameters"]
    at = next(i for i, p in enumerate(params) if p.startswith("student.registered_model="))
    del params[at - 1:at + 1]
    assert found(task_problems(other, other_values, "train-student"),
                 "conf keys still name main.panda: ['student.registered_model']")

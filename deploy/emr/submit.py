#!/usr/bin/env python3
"""Run panda-spark on EMR on EC2: pack the Python environment, upload it, create a cluster with a
GPU instance group, and submit the pipeline's stages as spark-submit steps (deploy/emr/README.md).

    python deploy/emr/submit.py pack                                  # Linux x86-64, e.g. amazonlinux:2023
    python deploy/emr/submit.py upload  --s3-prefix s3://bucket/panda-spark/0.1.0
    python deploy/emr/submit.py cluster --s3-prefix s3://bucket/panda-spark/0.1.0
    python deploy/emr/submit.py steps   --s3-prefix s3://bucket/panda-spark/0.1.0 --cluster-id j-XXXX \\
        --manifest s3://panda-raw-videos/manifest.csv
    python deploy/emr/submit.py steps   --s3-prefix s3://bucket/panda-spark/0.1.0 --cluster-id j-XXXX \\
        --stages maintain                                             # table maintenance, e.g. nightly

`--dry-run` prints, as one JSON document, the commands and the files they would read instead of
writing and running them. The step and cluster settings come from the conf (conf/emr.yaml).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runs from a checkout: the packing container has no panda_spark installed

from panda_spark.config import Config, load_config  # noqa: E402
from panda_spark.errors import ConfigError  # noqa: E402
from panda_spark.pipeline import PIPELINE_STAGES, STAGES  # noqa: E402

ENV_ARCHIVE = "dist/panda-env.tar.gz"
ENV_ALIAS = "environment"  # --archives <env>#environment: unpacked as ./environment in every container
PYTHON_IN_ARCHIVE = f"./{ENV_ALIAS}/bin/python"
BOOTSTRAP = "deploy/emr/bootstrap.sh"
BUILD = "build/emr"
# EMR 7.x images ship Delta 3 under this name (delta-core.jar before 7.0); delta-storage-s3-dynamodb
# is only needed for writers on several clusters at once.
DELTA_JARS = ("/usr/share/aws/delta/lib/delta-spark.jar", "/usr/share/aws/delta/lib/delta-storage.jar")
GLUE_FACTORY = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
# EMR 7.x (Amazon Linux 2023, cgroup v2): YARN's GPU isolation needs cgroup v1's devices controller,
# which bootstrap.sh mounts here (AWS's Spark-RAPIDS page for 7.x).
CGROUP_ROOT = "/spark-rapids-cgroup"
RELEASE_LABEL = "emr-7.11.0"  # Spark 3.5.6, Delta 3.3.2: no EMR release ships Spark 4 (tested: make test-spark35)
GPU_NODES = 4  # g5 nodes have one GPU each: emr.yaml's student.num_processes needs four task slots
VENV_PACK = "venv-pack==0.2.0"
GLUE_DATABASE = re.compile(r"[a-z0-9_]{1,255}")
CLUSTER_ID = re.compile(r"j-[A-Z0-9]+")


class DeployError(Exception):
    """A wrong option of this script (conf mistakes raise ConfigError, naming the key)."""


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _plain(option: str, value: str) -> str:
    # these travel as option values to spark-submit, the CLI and aws: one beginning with '-' would be read as an option
    if not value or value.startswith("-"):
        raise DeployError(f"{option} {value!r}: expected a path, URI or id that does not begin with '-'")
    return value


def s3_paths(s3_prefix: str) -> dict[str, str]:
    """Where `upload` puts each piece and where the cluster and steps read it."""
    prefix = _plain("--s3-prefix", s3_prefix).rstrip("/")
    if not prefix.startswith("s3://") or prefix == "s3:/":
        raise DeployError(f"--s3-prefix {s3_prefix!r}: expected s3://bucket/path, e.g. s3://bucket/panda-spark/0.1.0")
    return {"env": f"{prefix}/panda-env.tar.gz", "jobs": f"{prefix}/jobs", "conf": f"{prefix}/conf",
            "bootstrap": f"{prefix}/bootstrap.sh"}


def check_conf(cfg: Config, stages: tuple[str, ...], gpu_executors: int | None = None) -> None:
    """Refuse a conf that cannot run `stages` as EMR steps, naming the key and the expected form."""
    def fail(key: str, expected: str, got: object) -> None:
        raise ConfigError(f"conf key '{key}': expected {expected} on EMR, got {got!r}")

    if cfg.spark.mode != "cluster":
        fail("spark.mode", "'cluster' (the session spark-submit starts)", cfg.spark.mode)
    if cfg.catalog.catalog:
        fail("catalog.catalog", "empty (Glue databases hold the tables: <schema>.<table>)", cfg.catalog.catalog)
    if not GLUE_DATABASE.fullmatch(cfg.catalog.schema):
        fail("catalog.schema", "a Glue database name (lowercase letters, digits, _)", cfg.catalog.schema)
    if not (cfg.catalog.location or "").startswith("s3://"):
        fail("catalog.location", "an s3:// URI (the tables outlive the cluster)", cfg.catalog.location)
    gpu_stages = [s for s in stages if STAGES[s].gpu]
    if not gpu_stages:
        return
    gpu, needs = cfg.spark.gpu, f" for the GPU stages ({', '.join(gpu_stages)})"
    if gpu.executor_gpus < 1:
        fail("spark.gpu.executor_gpus", "an integer ≥ 1 (GPUs per executor on the GPU nodes)" + needs,
             gpu.executor_gpus)
    if not 0 < gpu.task_gpus <= gpu.executor_gpus:
        fail("spark.gpu.task_gpus", "a number > 0 and ≤ spark.gpu.executor_gpus" + needs, gpu.task_gpus)
    if not gpu.discovery_script:
        fail("spark.gpu.discovery_script", "the GPU discovery script on the nodes, e.g. "
             "/usr/lib/spark/scripts/gpu/getGpusResources.sh" + needs, gpu.discovery_script)
    if "train-student" in stages and not cfg.student.local_mode:
        if cfg.spark.dynamic_allocation:
            fail("spark.dynamic_allocation", "false for train-student (TorchDistributor's barrier stage)", True)
        slots = None if gpu_executors is None else gpu_executors * int(gpu.executor_gpus // gpu.task_gpus)
        if cfg.student.use_gpu and slots is not None and cfg.student.num_processes > slots:
            fail("student.num_processes", f"≤ {slots} GPU task slots ({gpu_executors} GPU executors; a barrier "
                 "stage starts all its tasks at once)", cfg.student.num_processes)


def gpu_settings(cfg: Config, gpu_executors: int) -> dict[str, str]:
    """The GPU scheduling of a GPU step, from the conf: what a cluster-mode stage checks its session against."""
    gpu = cfg.spark.gpu
    settings = {
        "spark.executor.resource.gpu.amount": str(gpu.executor_gpus),
        "spark.task.resource.gpu.amount": f"{gpu.task_gpus:g}",
        "spark.executor.resource.gpu.discoveryScript": str(gpu.discovery_script),
        "spark.dynamicAllocation.enabled": _flag(cfg.spark.dynamic_allocation),
    }
    if not cfg.spark.dynamic_allocation:
        settings["spark.executor.instances"] = str(gpu_executors)  # else YARN starts Spark's default of 2
    return settings


def pipeline_stages(cfg: Config, manifest: str | None = None, labels: str | None = None) -> dict[str, str]:
    """The stages of PIPELINE_STAGES `steps` leaves out for want of input, with the reason, as
    `panda-spark pipeline` skips them: ingest without a manifest (--manifest or ingest.manifest),
    load-selection-labels without a labels file (--labels or select.labels) and, with it,
    finetune-retrieval. The local pipeline runs finetune-retrieval whenever `selection_labels` has
    rows; a step list is made before the run and cannot look, and a fine-tuning step on an empty
    table would fail and cancel the steps after it. Name it in --stages to fine-tune on labels
    loaded earlier."""
    skipped = {}
    if not (manifest or cfg.ingest.manifest):
        skipped["ingest"] = "no --manifest or ingest.manifest"
    if not (labels or cfg.select.labels):
        skipped["load-selection-labels"] = skipped["finetune-retrieval"] = "no --labels or select.labels"
    return skipped


def build_steps(cfg: Config, conf_name: str, s3_prefix: str, stages: tuple[str, ...] | None = None, *,
                overrides: tuple[str, ...] = (), manifest: str | None = None, labels: str | None = None,
                gpu_executors: int = GPU_NODES) -> list[dict]:
    """One command-runner step per stage: spark-submit in cluster mode of jobs/<stage>.py, the packed
    environment as Python, Delta from the image, the Glue metastore, GPU scheduling on GPU stages.
    `cfg` is the conf `conf_name` loaded with `overrides`, which the steps pass on with --set.
    `stages` None: the pipeline's stages less those pipeline_stages leaves out; a stage named in
    `stages` that lacks its input is refused."""
    if stages is None:
        skipped = pipeline_stages(cfg, manifest, labels)
        stages = tuple(s for s in PIPELINE_STAGES if s not in skipped)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise DeployError(f"--stages: unknown stage {unknown[0] if unknown else '(none)'!r} "
                          f"(expected a comma-separated list of: {', '.join(STAGES)})")
    check_conf(cfg, tuple(stages), gpu_executors)
    s3 = s3_paths(s3_prefix)
    inputs = {"ingest": ("--manifest", manifest, "ingest.manifest", cfg.ingest.manifest),
              "load-selection-labels": ("--labels", labels, "select.labels", cfg.select.labels)}
    common = {
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON": PYTHON_IN_ARCHIVE,  # the driver: cluster mode runs it in the AM
        "spark.executorEnv.PYSPARK_PYTHON": PYTHON_IN_ARCHIVE,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.hadoop.hive.metastore.client.factory.class": GLUE_FACTORY,
        "spark.python.worker.reuse": _flag(cfg.spark.python_worker_reuse),
    }
    passed_on = ["--conf", _plain("--conf", conf_name), *[a for o in overrides for a in ("--set", _plain("--set", o))]]
    steps = []
    for stage in stages:
        settings = {**common, **(gpu_settings(cfg, gpu_executors) if STAGES[stage].gpu else {})}
        stage_args = list(passed_on)
        if stage in inputs:
            option, value, key, from_conf = inputs[stage]
            if value:
                stage_args += [option, _plain(option, value)]
            elif not from_conf:
                raise DeployError(f"{stage}: pass {option} s3://... or set conf key '{key}'")
        steps.append({
            "Type": "CUSTOM_JAR",  # command-runner.jar with the whole spark-submit line: what runs is what is shown
            "Name": f"panda-spark {stage}",
            "ActionOnFailure": "CANCEL_AND_WAIT",  # a later stage reads what the failed one did not write
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit", "--master", "yarn", "--deploy-mode", "cluster", "--name", f"panda-spark-{stage}",
                "--archives", f"{s3['env']}#{ENV_ALIAS}",
                "--files", f"{s3['conf']}/{conf_name}",  # into the driver's working dir, where --conf finds it
                "--jars", ",".join(DELTA_JARS),
                *[a for k, v in settings.items() for a in ("--conf", f"{k}={v}")],
                f"{s3['jobs']}/{stage.replace('-', '_')}.py", *stage_args,
            ],
        })
    return steps


def cluster_request(cfg: Config, s3_prefix: str, *, release_label: str = RELEASE_LABEL, name: str = "panda-spark",
                    python: str = "python3.11", master_type: str = "m5.xlarge", core_type: str = "m5.2xlarge",
                    core_count: int = 2, gpu_type: str = "g5.2xlarge", gpu_count: int = GPU_NODES,
                    service_role: str = "EMR_DefaultRole", instance_profile: str = "EMR_EC2_DefaultRole",
                    subnet_id: str | None = None, key_name: str | None = None, log_uri: str | None = None) -> dict:
    """`aws emr create-cluster` options (name → value; lists and maps go in as JSON files): CPU core
    nodes for the drivers and CPU stages, a TASK group of GPU nodes, GPU scheduling on YARN as on
    AWS's Spark-RAPIDS page for EMR 7.x, the Glue Data Catalog as metastore."""
    check_conf(cfg, PIPELINE_STAGES)
    if not re.fullmatch(r"emr-7\.\d+\.\d+", release_label):
        # the cgroup mount, Delta jar names and Amazon Linux 2023 Python all follow the 7.x images
        raise DeployError(f"--release-label {release_label!r}: expected an EMR 7.x label, e.g. {RELEASE_LABEL}")
    s3 = s3_paths(s3_prefix)
    # Only GPU nodes get the NodeManager GPU plugin: auto-discovery stops a NodeManager without nvidia-smi.
    gpu_node = [
        {"Classification": "yarn-site", "Properties": {
            "yarn.nodemanager.resource-plugins": "yarn.io/gpu",
            "yarn.nodemanager.resource-plugins.gpu.allowed-gpu-devices": "auto",
            "yarn.nodemanager.resource-plugins.gpu.path-to-discovery-executables": "/usr/bin",
            "yarn.nodemanager.linux-container-executor.cgroups.mount": "true",
            "yarn.nodemanager.linux-container-executor.cgroups.mount-path": CGROUP_ROOT,
            "yarn.nodemanager.linux-container-executor.cgroups.hierarchy": "yarn",
            "yarn.nodemanager.container-executor.class": "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor",
        }},
        {"Classification": "container-executor", "Properties": {}, "Configurations": [
            {"Classification": "gpu", "Properties": {"module.enabled": "true"}},
            {"Classification": "cgroups", "Properties": {"root": CGROUP_ROOT, "yarn-hierarchy": "yarn"}},
        ]},
    ]
    request = {
        "name": name,
        "release-label": release_label,
        "applications": [{"Name": "Hadoop"}, {"Name": "Spark"}],
        "instance-groups": [
            {"InstanceGroupType": "MASTER", "Name": "master", "InstanceType": master_type, "InstanceCount": 1},
            {"InstanceGroupType": "CORE", "Name": "cpu", "InstanceType": core_type, "InstanceCount": core_count},
            {"InstanceGroupType": "TASK", "Name": "gpu", "InstanceType": gpu_type, "InstanceCount": gpu_count,
             "Configurations": gpu_node},
        ],
        "configurations": [
            # the ResourceManager (master) must know the resource type the GPU steps ask for
            {"Classification": "yarn-site", "Properties": {"yarn.resource-types": "yarn.io/gpu"}},
            {"Classification": "capacity-scheduler", "Properties": {
                "yarn.scheduler.capacity.resource-calculator": "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"}},
            {"Classification": "spark-defaults", "Properties": {
                "spark.executor.resource.gpu.discoveryScript": str(cfg.spark.gpu.discovery_script),
                "spark.python.worker.reuse": _flag(cfg.spark.python_worker_reuse)}},
            {"Classification": "spark-hive-site", "Properties": {"hive.metastore.client.factory.class": GLUE_FACTORY}},
        ],
        "bootstrap-actions": [{"Name": "python and GPU cgroups", "Path": s3["bootstrap"],
                               "Args": [_plain("--python", python), CGROUP_ROOT]}],
        "service-role": _plain("--service-role", service_role),
        "ec2-attributes": {"InstanceProfile": _plain("--instance-profile", instance_profile),
                           **({"SubnetId": _plain("--subnet-id", subnet_id)} if subnet_id else {}),
                           **({"KeyName": _plain("--key-name", key_name)} if key_name else {})},
    }
    if log_uri:
        request["log-uri"] = _plain("--log-uri", log_uri)
    return request


def cluster_command(request: dict) -> tuple[list[str], dict[str, object]]:
    """The create-cluster command line for `request`, and the JSON files its file:// options read."""
    command, files = ["aws", "emr", "create-cluster"], {}
    for option, value in request.items():
        if isinstance(value, (list, dict)):
            path = f"{BUILD}/{option}.json"
            files[path] = value
            value = f"file://{path}"
        command += [f"--{option}", str(value)]
    return command, files


def pack_commands(python: str = "python3.11", out: str = ENV_ARCHIVE, env_dir: str = f"{BUILD}/env",
                  wheel_dir: str = f"{BUILD}/wheels") -> list[list[str]]:
    """Build the wheel, install it with the ml and cloud extras into a fresh venv under the pins, and venv-pack it."""
    pip = [f"{env_dir}/bin/python", "-m", "pip"]
    return [
        ["rm", "-rf", wheel_dir],
        [_plain("--python", python), "-m", "venv", "--clear", env_dir],
        [*pip, "install", "--upgrade", "pip"],
        [*pip, "wheel", "--no-deps", "-w", wheel_dir, "."],
        # ours from the local wheel only, so a same-named project on PyPI never stands in for it
        [*pip, "install", "--no-deps", "--no-index", "--find-links", wheel_dir, "panda-spark"],
        [*pip, "install", "-c", "constraints.txt", "--find-links", wheel_dir, "panda-spark[ml,cloud]"],
        [*pip, "install", "-c", "constraints.txt", "--no-deps", "scenedetect", "petastorm"],  # see the Makefile
        [*pip, "install", VENV_PACK],
        [f"{env_dir}/bin/venv-pack", "-p", env_dir, "-o", _plain("--out", out), "--force"],
    ]


def upload_commands(s3_prefix: str, conf_file: str, archive: str = ENV_ARCHIVE) -> list[list[str]]:
    s3 = s3_paths(s3_prefix)
    return [
        ["aws", "s3", "cp", _plain("--archive", archive), s3["env"]],
        ["aws", "s3", "cp", "jobs", s3["jobs"], "--recursive", "--exclude", "*", "--include", "*.py"],
        ["aws", "s3", "cp", _plain("--conf", conf_file), f"{s3['conf']}/{Path(conf_file).name}"],
        ["aws", "s3", "cp", BOOTSTRAP, s3["bootstrap"]],
    ]


def execute(commands: list[list[str]], files: dict[str, object], dry_run: bool) -> None:
    if dry_run:
        print(json.dumps({"commands": commands, "files": files}, indent=2))
        return
    for path, content in files.items():
        (REPO / path).parent.mkdir(parents=True, exist_ok=True)
        (REPO / path).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    for command in commands:
        print("+", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True, cwd=REPO)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="deploy/emr/submit.py", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("--dry-run", action="store_true", help="print the commands and files as JSON; run nothing")
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("--conf", default="conf/emr.yaml", help="the conf the steps run with (default conf/emr.yaml)")
    conf.add_argument("--s3-prefix", required=True, help="s3://bucket/panda-spark/<version>: where the pieces live")

    pack = sub.add_parser("pack", parents=[base], help=f"venv-pack the environment into {ENV_ARCHIVE} (Linux x86-64)")
    pack.add_argument("--python", default="python3.11", help="interpreter of the venv; bootstrap.sh installs the same")
    pack.add_argument("--out", default=ENV_ARCHIVE)
    upload = sub.add_parser("upload", parents=[base, conf], help="copy the env archive, jobs/, conf, bootstrap to S3")
    upload.add_argument("--archive", default=ENV_ARCHIVE)
    cluster = sub.add_parser("cluster", parents=[base, conf], help="aws emr create-cluster with a GPU task group")
    cluster.add_argument("--release-label", default=RELEASE_LABEL)
    cluster.add_argument("--name", default="panda-spark")
    cluster.add_argument("--python", default="python3.11", help="the interpreter `pack` used")
    cluster.add_argument("--master-type", default="m5.xlarge")
    cluster.add_argument("--core-type", default="m5.2xlarge")
    cluster.add_argument("--core-count", type=int, default=2)
    cluster.add_argument("--gpu-type", default="g5.2xlarge")
    cluster.add_argument("--gpu-count", type=int, default=GPU_NODES)
    cluster.add_argument("--service-role", default="EMR_DefaultRole")
    cluster.add_argument("--instance-profile", default="EMR_EC2_DefaultRole")
    cluster.add_argument("--subnet-id")
    cluster.add_argument("--key-name")
    cluster.add_argument("--log-uri", help="s3:// prefix for the cluster's and steps' logs")
    steps = sub.add_parser("steps", parents=[base, conf], help="aws emr add-steps: one spark-submit step per stage")
    steps.add_argument("--cluster-id", required=True, help="j-...")
    steps.add_argument("--stages", help=(
        "comma-separated (default: the pipeline, less ingest without a manifest and load-selection-labels "
        "and finetune-retrieval without labels; run only when named: "
        f"{', '.join(s for s in STAGES if s not in PIPELINE_STAGES)})"))
    steps.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                       help="conf override passed to every step (repeatable)")
    steps.add_argument("--manifest", help="ingest's manifest (default: conf key ingest.manifest)")
    steps.add_argument("--labels", help="load-selection-labels' file (default: conf key select.labels)")
    steps.add_argument("--gpu-executors", type=int, default=GPU_NODES, help="executors of a GPU step")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        files: dict[str, object] = {}
        if args.command == "pack":
            if not args.dry_run and (platform.system(), platform.machine()) != ("Linux", "x86_64"):
                raise DeployError("pack: run on Linux x86-64 like the cluster's nodes (e.g. in an amazonlinux:2023 "
                                  "container): the archive holds compiled wheels and links to the interpreter's path")
            commands = pack_commands(args.python, args.out)
        elif args.command == "upload":
            load_config(args.conf)  # a conf that does not load fails here, not in the first step
            if not args.dry_run and not (REPO / args.archive).is_file():
                raise DeployError(f"--archive {args.archive}: no such file (run `pack` first)")
            commands = upload_commands(args.s3_prefix, args.conf, args.archive)
        elif args.command == "cluster":
            request = cluster_request(
                load_config(args.conf), args.s3_prefix, release_label=args.release_label, name=args.name,
                python=args.python, master_type=args.master_type, core_type=args.core_type,
                core_count=args.core_count, gpu_type=args.gpu_type, gpu_count=args.gpu_count,
                service_role=args.service_role, instance_profile=args.instance_profile,
                subnet_id=args.subnet_id, key_name=args.key_name, log_uri=args.log_uri)
            command, files = cluster_command(request)
            commands = [command]
        else:
            if not CLUSTER_ID.fullmatch(args.cluster_id):
                raise DeployError(f"--cluster-id {args.cluster_id!r}: expected an EMR cluster id, e.g. j-2AXXXXXXGAPLF")
            cfg = load_config(args.conf, args.overrides)
            if args.stages is None:
                stages = None
                for stage, reason in pipeline_stages(cfg, args.manifest, args.labels).items():
                    print(f"submit.py steps: no {stage} step ({reason})", file=sys.stderr)
            else:
                stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
            path = f"{BUILD}/steps.json"
            files = {path: build_steps(cfg, Path(args.conf).name, args.s3_prefix, stages,
                                       overrides=tuple(args.overrides), manifest=args.manifest, labels=args.labels,
                                       gpu_executors=args.gpu_executors)}
            commands = [["aws", "emr", "add-steps", "--cluster-id", args.cluster_id, "--steps", f"file://{path}"]]
        execute(commands, files, args.dry_run)
    except (ConfigError, DeployError) as exc:
        print(f"submit.py {args.command}: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"submit.py {args.command}: {' '.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr)
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

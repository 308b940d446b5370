"""Spark session factory: the embedded lakehouse, or the session a cluster provides.

Embedded (`spark.mode: embedded`): local Spark with Delta, a warehouse under `<paths.root>/warehouse`.
Table names persist without a metastore service: the warehouse directory *is* the metastore. Every
Delta table found under `<warehouse>/<schema>.db/` is registered by name at session start in
Spark's in-memory catalog. An embedded Derby metastore would admit one process at a time, so a
`panda-spark sql` beside a running stage would fail; directory registration has no such lock.

Cluster (`spark.mode: cluster`): the active session (spark-submit, Databricks, EMR) is used as is;
no jars are fetched and no catalog settings are touched.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from panda_spark.config import Config
from panda_spark.errors import ConfigError, SetupError

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
JAVA_MIN = 17  # Spark 4
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
_announced_ui: set[str] = set()


def get_spark(cfg: Config, session: SparkSession | None = None) -> SparkSession:
    """The session stages run on, with the conf's schema (embedded: the warehouse's tables and
    views registered). `session`: use it (a notebook's `spark`) rather than the active or a new one.

    Before an embedded session starts: ConfigError naming `paths.root` where it cannot be
    written, SetupError where Java is missing or older than 17 (one line each, no JVM trace)."""
    if cfg.spark.mode == "embedded":
        check_root(cfg)
    spark = session or (_cluster_session(cfg) if cfg.spark.mode == "cluster" else _embedded_session(cfg))
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    _ansi_as_in_spark4(spark)
    _announce_ui(spark.sparkContext.uiWebUrl)
    _create_schema(spark, cfg)
    if cfg.spark.mode == "embedded":
        from panda_spark.views import create_views  # views name tables, and tables import this module

        register_warehouse_tables(spark, cfg)
        create_views(spark, cfg, only_existing_tables=True)
    return spark


def _ansi_as_in_spark4(spark: SparkSession) -> None:
    """Spark 4 runs SQL in ANSI mode by default: a bad cast or an overflow fails (and the row goes
    to `errors`) where Spark 3.5 (EMR 7.x) returns NULL. The stages are written for Spark 4's
    behaviour, so on 3.5 ANSI mode is switched on too, unless the session's conf sets it."""
    if int(spark.version.split(".")[0]) < 4 and not spark.sparkContext.getConf().contains("spark.sql.ansi.enabled"):
        spark.conf.set("spark.sql.ansi.enabled", "true")


def _cluster_session(cfg: Config) -> SparkSession:
    return SparkSession.getActiveSession() or SparkSession.builder.appName(cfg.spark.app_name).getOrCreate()


def _embedded_session(cfg: Config) -> SparkSession:
    from delta import configure_spark_with_delta_pip

    active = SparkSession.getActiveSession()
    if active is not None:
        # Same process, another conf (a test schema, the demo after a stage): table locations
        # come from the conf, so the running session serves it; its static settings stay.
        return active
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not launched_by_spark_submit:  # else the JVM runs already
        check_java()

    # Spark otherwise binds the first non-loopback address; a laptop's Wi-Fi address changes.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers must run this interpreter (the venv), not whatever `python3` is on PATH;
    # PySpark reads only the environment variable for that.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warehouse = cfg.warehouse_dir.resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    settings = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        # Delta rebuilds a table's state with 50 tasks by default: seconds of overhead per
        # read on a laptop, for tables of a few files.
        "spark.databricks.delta.snapshotPartitions": "2",
        # A laptop's tables are below the runtime bloom filter's 10 MB creation-side limit, so Spark
        # would scan a table once more to build a 1 MiB filter for the few ids of a wave (a
        # checkpointed key set, whose size it does not know) and warn of the task binaries that
        # carry it. Cluster tables are past that limit.
        "spark.sql.optimizer.runtime.bloomFilter.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": str(cfg.spark.python_worker_reuse).lower(),
        "spark.sql.session.timeZone": "UTC",
        **cfg.spark.conf,
    }
    if not launched_by_spark_submit:
        # The driver JVM starts here: our log4j2 file applies from its first line (setLogLevel
        # comes only after the ~70 INFO lines of a context's startup).
        java_options = f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}"
        settings["spark.driver.extraJavaOptions"] = (
            f"{java_options} {settings.get('spark.driver.extraJavaOptions', '')}".strip())
    builder = SparkSession.builder.master(cfg.spark.master).appName(cfg.spark.app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    jars = [] if launched_by_spark_submit else _cached_delta_jars()
    if jars:
        # Ivy does not run at all: no resolution banner on every start.
        builder = builder.config("spark.jars", ",".join(jars))
    elif not launched_by_spark_submit:
        # Resolves io.delta:delta-spark matching the installed delta-spark through Spark's Ivy
        # (fetched once by `make install`, then read from the Ivy cache); the jar files it
        # resolved are recorded, and later starts pass them directly.
        builder = configure_spark_with_delta_pip(builder)
    spark = builder.getOrCreate()
    if not launched_by_spark_submit and not jars:
        _record_delta_jars(spark.sparkContext.getConf().get("spark.jars") or "")
    if launched_by_spark_submit and not _has_delta(spark):
        spark.stop()
        raise ConfigError(
            "spark.mode 'embedded' under spark-submit needs the Delta jars on the command line: "
            f"spark-submit --packages {delta_package()} jobs/<stage>.py ... "
            "(or run `panda-spark <stage>`, which adds them)"
        )
    return spark


def check_root(cfg: Config) -> None:
    """ConfigError naming `paths.root` unless a file can be created in it (made if missing)."""
    try:
        cfg.root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=cfg.root).close()
    except OSError as exc:
        raise ConfigError(f"conf key 'paths.root': expected a writable directory, got {cfg.paths.root} "
                          f"({exc.strerror or type(exc).__name__})") from None


def check_java() -> None:
    """SetupError unless the java Spark launches ($JAVA_HOME/bin/java, else java on PATH, as
    spark-class picks it) is there and reports version 17 or later."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    install = f"install a JDK {JAVA_MIN}+, e.g. apt-get install openjdk-{JAVA_MIN}-jdk-headless"
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "JAVA_HOME unset and no java on PATH"
        raise SetupError(f"Java {JAVA_MIN}+ is required by Spark and was not found ({where}): {install}")
    try:
        banner = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return  # a java that does not answer: Spark's own error says more
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if match:
        major = int(match.group(2) or 0) if match.group(1) == "1" else int(match.group(1))  # "1.8.0" is Java 8
        if major < JAVA_MIN:
            raise SetupError(f"Java {JAVA_MIN}+ is required by Spark, found Java {major} ({java}): {install}")


def delta_package() -> str:
    """The Maven coordinate of the Delta jars matching the installed delta-spark: Scala 2.13 for
    Delta 4 (Spark 4), 2.12 for Delta 3 (Spark 3.5, whose PyPI build is Scala 2.12)."""
    from importlib.metadata import version

    delta = version("delta-spark")
    return f"io.delta:delta-spark_{'2.13' if int(delta.split('.')[0]) >= 4 else '2.12'}:{delta}"


def _jar_record() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "panda-spark" / f"{delta_package().replace(':', '_')}.jars"


def _cached_delta_jars() -> list[str]:
    """The local Delta jar files an earlier Ivy resolution of :func:`delta_package` recorded; none
    where there is no record or a recorded file is gone (Ivy then resolves them again)."""
    try:
        jars = _jar_record().read_text().split()
    except OSError:
        return []
    return jars if jars and all(Path(jar.removeprefix("file:")).is_file() for jar in jars) else []


def _record_delta_jars(spark_jars: str) -> None:
    jars = [jar for jar in spark_jars.split(",") if jar.startswith("file:") and jar.endswith(".jar")]
    if not any("delta-spark" in jar for jar in jars):
        return
    try:
        _jar_record().parent.mkdir(parents=True, exist_ok=True)
        _jar_record().write_text("\n".join(jars) + "\n")
    except OSError as exc:  # a read-only home: Ivy resolves on each start, as before
        log.debug("cannot record the Delta jars: %s", exc)


def _announce_ui(url: str | None) -> None:
    """Log the Spark UI address once per process (get_spark runs once per stage of a pipeline)."""
    if url and url not in _announced_ui:
        _announced_ui.add(url)
        log.info("Spark UI: %s", url)


def _has_delta(spark: SparkSession) -> bool:
    from py4j.java_gateway import JavaClass

    # py4j resolves names through the context class loader, which holds --packages jars.
    return isinstance(spark._jvm.io.delta.sql.DeltaSparkSessionExtension, JavaClass)


def _create_schema(spark: SparkSession, cfg: Config) -> None:
    name = f"{cfg.catalog.catalog}.{cfg.catalog.schema}" if cfg.catalog.catalog else cfg.catalog.schema
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quote_name(name)}")


def schema_dir(cfg: Config) -> Path:
    return cfg.warehouse_dir.resolve() / f"{cfg.catalog.schema}.db"


def register_warehouse_tables(spark: SparkSession, cfg: Config) -> list[str]:
    """Register every Delta table under the schema's warehouse directory by name; returns the names."""
    names = []
    root = schema_dir(cfg)
    for table_dir in sorted(root.glob("*/_delta_log")):
        name = f"{cfg.catalog.schema}.{table_dir.parent.name}"
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {quote_name(name)} USING DELTA LOCATION '{sql_string(table_dir.parent)}'"
        )
        names.append(name)
    return names


def gpu_profile(cfg: Config, task_gpus: float, executor_gpus: int) -> dict:
    """`profile=` keyword for mapInPandas: a stage-level resource profile asking `task_gpus` per
    task, on clusters only (local mode has no GPU scheduling and rejects profiles); else none.

    With dynamic allocation off (the conf's spark.dynamic_allocation, as TorchDistributor needs),
    Spark accepts task-only profiles on the executors it has; only with it on may a profile ask for
    new executors with `executor_gpus` each."""
    if cfg.spark.mode != "cluster" or not task_gpus:
        return {}
    from pyspark.resource import ExecutorResourceRequests, ResourceProfileBuilder, TaskResourceRequests

    builder = ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", task_gpus))
    if cfg.spark.dynamic_allocation:
        builder = builder.require(ExecutorResourceRequests().resource("gpu", executor_gpus))
    return {"profile": builder.build}


# Spark's own defaults of the cluster settings the conf describes (spark.python.worker.reuse is on).
_CLUSTER_DEFAULTS = {"spark.dynamicAllocation.enabled": "false", "spark.python.worker.reuse": "true",
                     "spark.executor.resource.gpu.amount": "0", "spark.task.resource.gpu.amount": "0"}


def check_cluster(settings: Mapping[str, str | None], cfg: Config, stage: str, gpu: bool) -> list[str]:
    """Compare the running cluster's Spark settings (`settings`: key → value, None when unset)
    with what the conf says the cluster is, before `stage` runs there. Raises ConfigError where
    the stage cannot work (a barrier stage under dynamic allocation, GPU resource profiles on
    executors without GPUs); returns warnings for the other differences."""
    have = {key: str(settings.get(key) or default).lower() for key, default in _CLUSTER_DEFAULTS.items()}
    executor_gpus = float(have["spark.executor.resource.gpu.amount"])
    barrier = stage == "train-student" and not cfg.student.local_mode
    if barrier and have["spark.dynamicAllocation.enabled"] == "true":
        raise ConfigError(
            "train-student with student.local_mode false runs TorchDistributor's barrier stage, which fails "
            "with spark.dynamicAllocation.enabled=true: create the cluster with it false (conf key "
            "'spark.dynamic_allocation': false documents that)")
    profiled = {"caption": cfg.caption.task_gpus, "select": cfg.select.task_gpus}.get(stage, 0)
    if profiled and not executor_gpus:
        raise ConfigError(
            f"conf key '{stage}.task_gpus' is {profiled}: a GPU resource profile, but this cluster's executors "
            "have no GPUs (spark.executor.resource.gpu.amount unset): run the stage on the GPU cluster or set "
            f"{stage}.task_gpus to 0")
    if barrier and cfg.student.use_gpu and not executor_gpus:
        raise ConfigError("conf key 'student.use_gpu' is true with student.local_mode false, but this cluster's "
                          "executors have no GPUs (spark.executor.resource.gpu.amount unset)")
    want = {"spark.python.worker.reuse": str(cfg.spark.python_worker_reuse).lower(),
            "spark.dynamicAllocation.enabled": str(cfg.spark.dynamic_allocation).lower()}
    if gpu:
        want["spark.executor.resource.gpu.amount"] = str(cfg.spark.gpu.executor_gpus)
        want["spark.task.resource.gpu.amount"] = str(cfg.spark.gpu.task_gpus)
    return [f"{stage}: the cluster has {key}={have[key]}, the conf describes {value}"
            for key, value in want.items() if not _same_setting(have[key], value)]


def _same_setting(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def cluster_settings(spark: SparkSession) -> dict[str, str | None]:
    conf = spark.sparkContext.getConf()
    return {key: conf.get(key) for key in _CLUSTER_DEFAULTS}


def content_fingerprint(rows: DataFrame, settings: object) -> str:
    """A short hash of every row of `rows` (order-free) and of the JSON of `settings`: what a
    training or evaluation run depends on, to find out whether it ran on the same inputs before.

    Distributed and order-independent: each row's sha256 (its first 60 bits, twice) is summed in
    partial aggregates, with the row count; no task ever holds all rows."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.to_json(F.struct(*rows.columns)), 256)
    bits = [F.conv(F.substring(digest, start, 15), 16, 10).cast("decimal(38,0)") for start in (1, 16)]
    count, low, high = rows.agg(F.count(F.lit(1)), *[F.coalesce(F.sum(b), F.lit(0)) for b in bits]).first()
    return hashlib.sha256(f"{count}|{low}|{high}|{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()[:32]


def ddl_schema(ddl: str) -> StructType:
    """The StructType of a DDL column list (`a STRING NOT NULL, b INT`); parsed by the running
    session's JVM. Spark 3.5 (EMR 7.x) has no StructType.fromDDL: there its parser is reached
    through pyspark's own helper."""
    if hasattr(StructType, "fromDDL"):
        return StructType.fromDDL(ddl)
    from pyspark.sql.types import _parse_datatype_string

    return _parse_datatype_string(ddl)


def quote_name(dotted: str) -> str:
    return ".".join(f"`{part.replace('`', '``')}`" for part in dotted.split("."))


def sql_string(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def fetch_jars() -> None:
    """Start and stop an embedded session once, so Spark's Ivy caches the Delta jars (`make install`)."""
    import tempfile

    from panda_spark.config import load_config

    with tempfile.TemporaryDirectory() as root:
        cfg = load_config(None, [f"paths.root={root}", "spark.master=local[1]"])
        get_spark(cfg).stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["--fetch-jars"]:
        sys.exit("usage: python -m panda_spark.spark --fetch-jars")
    fetch_jars()

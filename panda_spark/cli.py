"""`panda-spark <stage>|pipeline [--conf FILE] [--set dotted.key=value ...]`, `panda-spark sql ["<query>"]`.

Every `jobs/<stage>.py` calls :func:`main` with its stage name, so `spark-submit jobs/<stage>.py
--conf conf/<env>.yaml` and `panda-spark <stage> --conf conf/<env>.yaml` run the same code.
The conf is loaded and validated before Spark starts.
"""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from typing import Callable, Sequence

from panda_spark.config import Config, describe_defaults, load_config
from panda_spark.errors import ConfigError, SetupError, WriteConflict
from panda_spark.pipeline import PIPELINE_STAGES, STAGES, StageDef
from panda_spark.select.calibrate import OBJECTIVES

log = logging.getLogger("panda_spark")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", metavar="FILE", help="YAML conf, e.g. conf/local.yaml (default: built-in embedded defaults)")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one conf key, e.g. --set ingest.batch_rows=16 (repeatable)",
    )


def _manifest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", metavar="PATH", help="CSV, JSON lines or Parquet with video_id, path, ... "
                                                            "(default: ingest.manifest)")


def _labels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", metavar="PATH", help="CSV or JSON lines with clip_id, annotator, chosen_teacher "
                        "or chosen_caption, and optionally created_at (default: select.labels)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panda-spark", description="Panda-70M video-captioning pipeline on Spark",
                                     epilog="panda-spark <stage> --help: what a stage reads and writes, its conf keys "
                                            "with their defaults, an example")
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>|pipeline|sql|demo")
    stages = {name: sub.add_parser(name, help=stage.help, **_stage_help(stage)) for name, stage in STAGES.items()}
    _manifest(stages["ingest"])
    _labels(stages["load-selection-labels"])
    stages["evaluate"].add_argument("--source", default="student", help="student (default), gold, or teacher:<name>")
    stages["evaluate"].add_argument("--reference", default="heldout", help="heldout (gold captions of the "
                                    "held-out clips, default) or an MSR-VTT-style JSON file")
    stages["split"].add_argument("--mode", choices=("published", "detect"),
                                 help="published: imported Panda-70M videos are cut at their published timestamps, "
                                      "others detected; detect: detect every video (default: split.mode)")
    stages["download"].add_argument("--retry-failed", action="store_true",
                                    help="also fetch the videos whose last download failed for good "
                                         "(NotFound, Private, ...; a plain run retries only transient failures)")
    stages["import-panda-csv"].add_argument("--csv", required=True, metavar="PATH",
                                            help="a Panda-70M CSV file, or a directory of them")
    stages["calibrate-selection"].add_argument(
        "--objective", choices=OBJECTIVES, default="youden",
        help="what the threshold maximises: youden (TPR - FPR, default) or f1 of picked candidates above it")
    pipeline = sub.add_parser("pipeline", help="run the stages in order under one run id; a summary per stage")
    pipeline.add_argument("--stages", type=_stage_list, default=list(PIPELINE_STAGES), metavar="A,B,...",
                          help=f"comma-separated, run in pipeline order (default: {','.join(PIPELINE_STAGES)})")
    _manifest(pipeline)
    _labels(pipeline)
    sql = sub.add_parser("sql", help="run one SQL query over the tables, or an interactive SQL shell without one")
    sql.add_argument("query", nargs="?")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    for command in (*stages.values(), pipeline, sql, sub.add_parser("demo", help=(
            "render a synthetic source set and run the whole pipeline on it"))):
        _common(command)
    return parser


def _stage_help(stage: StageDef) -> dict:
    """`description` and `epilog` of `panda-spark <stage> --help`, from the stage's STAGES entry and
    the conf defaults of the sections it reads."""
    def field(label: str, text: str) -> str:
        return textwrap.fill(text, 100, initial_indent=f"{label:8}", subsequent_indent=" " * 8)

    description = "\n".join([stage.help, "", field("reads:", stage.reads), field("writes:", stage.writes)])
    conf = [f"  {line}" for key in stage.conf for line in describe_defaults(key)]
    epilog = "\n".join([
        *(["conf, with the defaults (change: --set KEY=VALUE or --conf FILE):", *conf, ""] if conf else []),
        "example:", f"  panda-spark {stage.name} {stage.example}".rstrip()])
    return {"description": description, "epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}


def version() -> str:
    """`panda-spark --version`: this package's version and those of the Spark and Delta it runs on,
    from the installed packages' metadata (no session)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    import pyspark

    try:
        delta = installed("delta-spark")
    except PackageNotFoundError:  # a cluster runtime with Delta built in
        delta = "built into the runtime"
    try:
        own = installed("panda-spark")
    except PackageNotFoundError:  # run from a source tree
        own = "(not installed)"
    return f"panda-spark {own} (pyspark {pyspark.__version__}, delta-spark {delta})"


def _stage_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(quiet=args.command == "sql")
    try:
        cfg = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        print(f"panda-spark {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    command: Callable[[Config, argparse.Namespace], int] = _COMMANDS.get(args.command, _stage)
    try:
        return command(cfg, args)
    except ConfigError as exc:
        print(f"panda-spark {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except WriteConflict as exc:
        print(f"panda-spark {args.command}: write conflict: {exc}", file=sys.stderr)
        return 3
    except SetupError as exc:
        print(f"panda-spark {args.command}: {exc}", file=sys.stderr)
        return 2


def console_main() -> None:
    """The `panda-spark` console script: the exit status of :func:`main`, raised, so that runners
    that call the entry point without looking at its return value (Databricks wheel tasks) see a
    failure as one."""
    status = main()
    if status:
        raise SystemExit(status)


def _configure_logging(quiet: bool) -> None:
    """Progress of our stages on stderr; other libraries (py4j) keep their own, quieter level.

    `sql` logs warnings only: under spark-submit, Python's stderr is merged into stdout, where
    the query result goes."""
    for previous in [h for h in log.handlers if h.get_name() == "panda-spark"]:  # main() called again
        log.removeHandler(previous)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("panda-spark")
    handler.setFormatter(logging.Formatter("%(asctime)s panda-spark %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    # MLflow logs its store's schema migrations at INFO on first use of a tracking store.
    logging.getLogger("mlflow").setLevel(logging.WARNING)


# stage → its keyword arguments from the command line
_OPTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "ingest": lambda a: {"manifest": a.manifest},
    "load-selection-labels": lambda a: {"labels": a.labels},
    "evaluate": lambda a: {"source": a.source, "reference": a.reference},
    "download": lambda a: {"retry_failed": a.retry_failed},
    "import-panda-csv": lambda a: {"csv": a.csv},
    "split": lambda a: {"mode": a.mode},
    "calibrate-selection": lambda a: {"objective": a.objective},
}


def _stage(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.api import run_stage

    print(run_stage(args.command, cfg, **_OPTIONS.get(args.command, lambda a: {})(args)).summary())
    return 0


def _pipeline(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.pipeline import check_stages, run_pipeline
    from panda_spark.runs import new_run_id
    from panda_spark.spark import get_spark

    check_stages(args.stages)  # before Spark starts
    report = run_pipeline(get_spark(cfg), cfg, new_run_id(cfg), args.stages, manifest=args.manifest,
                          labels=args.labels)
    print(report.summary())
    return 0 if report.ok else 1


def _sql(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.spark import get_spark
    from panda_spark.sql_shell import run_sql

    return run_sql(get_spark(cfg), cfg, args.query, args.format)


def _demo(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.demo.run import run_demo

    return run_demo(cfg)


_COMMANDS = {"pipeline": _pipeline, "sql": _sql, "demo": _demo}


if __name__ == "__main__":
    sys.exit(main())

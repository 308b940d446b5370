"""`panda-spark <stage> [--conf FILE] [--set dotted.key=value ...]` and `panda-spark sql "<query>"`.

Every `jobs/<stage>.py` calls :func:`main` with its stage name, so `spark-submit jobs/<stage>.py
--conf conf/<env>.yaml` and `panda-spark <stage> --conf conf/<env>.yaml` run the same code.
The conf is loaded and validated before Spark starts.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from typing import Callable, Sequence

from panda_spark.config import Config, load_config
from panda_spark.errors import ConfigError

log = logging.getLogger("panda_spark")

# Stages that later issues build: the CLI names them now so scripts and jobs can be written
# against one interface; running one says plainly that it is not there yet.
PLANNED_STAGES = {
    "export": "#7 (Panda-70M CSV and webdataset export)",
    "import-panda-csv": "#7 (Panda-70M CSV import)",
    "pipeline": "#7 (all stages in order)",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", metavar="FILE", help="YAML conf, e.g. conf/local.yaml (default: built-in embedded defaults)")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one conf key, e.g. --set ingest.batch_rows=16 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panda-spark", description="Panda-70M video-captioning pipeline on Spark")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>|sql|demo")
    ingest = sub.add_parser("ingest", help="probe the videos of a manifest into the videos table")
    ingest.add_argument("--manifest", metavar="PATH", help="CSV, JSON lines or Parquet with video_id, path, ...")
    _common(ingest)
    _common(sub.add_parser("split", help="split new videos into shots and clips, with frames for the teachers"))
    _common(sub.add_parser("caption", help="caption new clips with every teacher in caption.teachers"))
    _common(sub.add_parser("select", help="pick each clip's best candidate caption into the captions table"))
    labels = sub.add_parser("load-selection-labels", help="load human picks of the best caption (CSV / JSON lines)")
    labels.add_argument("--labels", metavar="PATH", help="CSV or JSON lines with clip_id, annotator, "
                        "chosen_teacher or chosen_caption, and optionally created_at (default: select.labels)")
    _common(labels)
    _common(sub.add_parser("finetune-retrieval", help="fine-tune the selector on selection_labels; register it in MLflow"))
    _common(sub.add_parser("train-student", help="train the student captioner (TorchDistributor); register it in MLflow"))
    evaluate = sub.add_parser("evaluate", help="BLEU-4, METEOR, ROUGE-L, CIDEr of a caption source → evaluations")
    evaluate.add_argument("--source", default="student", help="student (default), gold, or teacher:<name>")
    evaluate.add_argument("--reference", default="heldout",
                          help="heldout (gold captions of the held-out clips, default) or an MSR-VTT-style JSON file")
    _common(evaluate)
    for stage, issue in PLANNED_STAGES.items():
        _common(sub.add_parser(stage, help=f"not built yet: issue {issue}"))
    sql = sub.add_parser("sql", help="run one SQL query over the tables")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _common(sql)
    demo = sub.add_parser("demo", help="render a synthetic source set and run every built stage on it")
    _common(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(quiet=args.command == "sql")
    if args.command in PLANNED_STAGES:
        print(
            f"panda-spark {args.command}: this stage is not built yet (it arrives with issue "
            f"{PLANNED_STAGES[args.command]}); nothing was run.",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        print(f"panda-spark {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    command: Callable[[Config, argparse.Namespace], int] = _COMMANDS[args.command]
    try:
        return command(cfg, args)
    except ConfigError as exc:
        print(f"panda-spark {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2


def _configure_logging(quiet: bool) -> None:
    """Progress of our stages on stderr; other libraries (py4j) keep their own, quieter level.

    `sql` logs warnings only: under spark-submit, Python's stderr is merged into stdout, where
    the query result goes."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s panda-spark %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


# command → (module, function, keyword arguments taken from the command line)
_STAGE_RUNS: dict[str, tuple[str, str, Callable[[argparse.Namespace], dict]]] = {
    "ingest": ("panda_spark.ingest.stage", "run", lambda a: {"manifest": a.manifest}),
    "split": ("panda_spark.split.stage", "run", lambda a: {}),
    "caption": ("panda_spark.caption.stage", "run", lambda a: {}),
    "select": ("panda_spark.select.stage", "run", lambda a: {}),
    "load-selection-labels": ("panda_spark.select.stage", "load_labels", lambda a: {"labels": a.labels}),
    "finetune-retrieval": ("panda_spark.select.finetune_stage", "run", lambda a: {}),
    "train-student": ("panda_spark.student.stage", "run", lambda a: {}),
    "evaluate": ("panda_spark.student.evaluate_stage", "run",
                 lambda a: {"source": a.source, "reference": a.reference}),
}


def _stage(cfg: Config, args: argparse.Namespace) -> int:
    import importlib

    module, function, kwargs = _STAGE_RUNS[args.command]
    return _run_stage(getattr(importlib.import_module(module), function), cfg, **kwargs(args))


def _run_stage(run: Callable, cfg: Config, **kwargs) -> int:
    from panda_spark.runs import new_run_id
    from panda_spark.spark import get_spark

    print(run(get_spark(cfg), cfg, new_run_id(cfg), **kwargs).summary())
    return 0


def _sql(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.spark import get_spark

    df = get_spark(cfg).sql(args.query)
    rows = [r.asDict(recursive=True) for r in df.collect()]
    write_rows(df.columns, rows, args.format, sys.stdout)
    return 0


def write_rows(columns: list[str], rows: list[dict], fmt: str, out) -> None:
    """Print query results as an aligned table, CSV with a header, or a JSON array of objects."""
    if fmt == "json":
        json.dump(rows, out, default=str, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(r[c]) for c in columns] for r in rows])
    else:
        cells = [[_cell(r[c]) for c in columns] for r in rows]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
        line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
        out.write(line(columns) + "\n" + "-+-".join("-" * w for w in widths) + "\n")
        out.writelines(line(row) + "\n" for row in cells)
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _demo(cfg: Config, args: argparse.Namespace) -> int:
    from panda_spark.demo.run import run_demo

    return run_demo(cfg)


_COMMANDS = {**{command: _stage for command in _STAGE_RUNS}, "sql": _sql, "demo": _demo}


if __name__ == "__main__":
    sys.exit(main())

"""One code path for the notebooks in `notebooks/`, on Databricks and on a laptop.

Each notebook starts with `nb = open_notebook(globals())`:

- on Databricks (the notebook's globals hold `dbutils`): the cluster's `spark`, the schema from a
  `schema` widget (default `main.panda`), `display` for tables and figures;
- run as a script (`python notebooks/03_dataset_overview.py --conf conf/local.yaml`): the embedded
  lakehouse of that conf, tables printed, figures saved as PNGs under `<paths.root>/notebooks/`;
- run by a caller that passes `panda_conf` (a Config) in the globals, e.g. a test: as a script,
  with that conf.

`nb.figures` keeps every figure by name, so a caller can check what was drawn.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from panda_spark.config import Config, load_config


@dataclass
class Notebook:
    spark: Any
    schema: str  # qualified schema of the tables and views, e.g. main.panda
    _display: Callable[[Any], None]
    plot_dir: Path | None = None  # None: figures are displayed, not saved
    figures: dict[str, Any] = field(default_factory=dict)

    def sql(self, query: str):
        """`query` with `{schema}` replaced, as a pandas DataFrame (results here are aggregates: small)."""
        return self.spark.sql(query.format(schema=self.schema)).toPandas()

    def show(self, frame) -> None:
        self._display(frame)

    def plot(self, name: str, fig) -> None:
        self.figures[name] = fig
        if self.plot_dir is None:
            self._display(fig)
            return
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.plot_dir / f"{name}.png", dpi=100, bbox_inches="tight")
        print(f"figure {name}: {self.plot_dir / f'{name}.png'}")


def open_notebook(namespace: dict) -> Notebook:
    import matplotlib

    if "dbutils" in namespace:
        dbutils = namespace["dbutils"]
        dbutils.widgets.text("schema", "main.panda")
        return Notebook(namespace["spark"], dbutils.widgets.get("schema"), namespace["display"])
    matplotlib.use("Agg")  # a script or a test: no display, figures go to files
    cfg = namespace.get("panda_conf") or _conf_from_argv(sys.argv[1:])
    from panda_spark.spark import get_spark

    schema = ".".join(p for p in (cfg.catalog.catalog, cfg.catalog.schema) if p)
    return Notebook(get_spark(cfg), schema, _print, plot_dir=cfg.root / "notebooks")


def _conf_from_argv(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="run a panda-spark notebook as a script")
    parser.add_argument("--conf", metavar="FILE")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    return load_config(args.conf, args.overrides)


def _print(frame) -> None:
    print(frame.to_string(index=False) if hasattr(frame, "to_string") else frame)

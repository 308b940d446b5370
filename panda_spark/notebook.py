"""One code path for the notebooks in `notebooks/`, on Databricks and on a laptop.

Each notebook starts with `nb = open_notebook(globals())`:

- on Databricks (the notebook's globals hold `dbutils`): the cluster's `spark`, the schema from a
  `schema` widget (default `main.panda`), `display` for tables and figures;
- run as a script (`python notebooks/03_dataset_overview.py --conf conf/local.yaml`): the embedded
  lakehouse of that conf, tables printed, figures saved as PNGs under `<paths.root>/notebooks/`;
- run by a caller that passes `panda_conf` (a Config) in the globals, e.g. a test: as a script,
  with that conf.

`nb.figures` keeps every figure by name, so a caller can check what was drawn. The plots are
functions of pandas frames (`plot_clip_lengths`, `plot_teacher_win_rates`, `plot_matching_scores`):
they sort their rows themselves (a query over a view need not keep the view's order) and put integer
ticks on count axes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from panda_spark.config import Config, load_config
from panda_spark.select.calibrate import GOOD_MATCH


@dataclass
class Notebook:
    spark: Any
    schema: str  # qualified schema of the tables and views, e.g. main.panda
    _display: Callable[[Any], None]
    plot_dir: Path | None = None  # None: figures are displayed, not saved
    figures: dict[str, Any] = field(default_factory=dict)
    threshold_setting: float | None = None  # select.good_match_threshold of the conf / the widget; None: calibrated

    def good_match_threshold(self) -> float | None:
        """The threshold select grades `good_match` by: the setting when there is one, else the value
        calibrate-selection stored for the scorer that selected most captions; None while there is none."""
        if self.threshold_setting is not None:
            return self.threshold_setting
        if not self.spark.catalog.tableExists(f"{self.schema}.calibrations"):
            return None
        found = self.sql(f"""
            SELECT c.value FROM {{schema}}.calibrations c
            JOIN (SELECT scorer_version, count(*) AS n FROM {{schema}}.captions GROUP BY 1) s
            ON c.scorer_version = s.scorer_version
            WHERE c.name = '{GOOD_MATCH}' ORDER BY s.n DESC LIMIT 1""")
        return None if found.empty else float(found["value"].iloc[0])

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
        dbutils.widgets.text("good_match_threshold", "")  # empty: the calibrated one, as conf/databricks.yaml
        threshold = dbutils.widgets.get("good_match_threshold").strip()
        return Notebook(namespace["spark"], dbutils.widgets.get("schema"), namespace["display"],
                        threshold_setting=float(threshold) if threshold else None)
    matplotlib.use("Agg")  # a script or a test: no display, figures go to files
    cfg = namespace.get("panda_conf") or _conf_from_argv(sys.argv[1:])
    from panda_spark.spark import get_spark

    schema = ".".join(p for p in (cfg.catalog.catalog, cfg.catalog.schema) if p)
    return Notebook(get_spark(cfg), schema, _print, plot_dir=cfg.root / "notebooks",
                    threshold_setting=cfg.select.good_match_threshold)


def _conf_from_argv(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="run a panda-spark notebook as a script")
    parser.add_argument("--conf", metavar="FILE")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    return load_config(args.conf, args.overrides)


def _print(frame) -> None:
    print(frame.to_string(index=False) if hasattr(frame, "to_string") else frame)


def _figure(title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.set_title(title)
    return fig, ax


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5-clip ticks on small tables


def plot_clip_lengths(lengths):
    """Bars of `clips` per one-second `length_s` bucket (view clip_length_distribution)."""
    lengths = lengths.sort_values("length_s")
    fig, ax = _figure("Clip lengths")
    ax.bar(lengths["length_s"], lengths["clips"], width=0.9, align="edge")
    ax.set(xlabel="clip length (s)", ylabel="clips")
    _integer_ticks(ax.yaxis)
    return fig


def plot_teacher_win_rates(wins):
    """Horizontal bars of each teacher's `win_rate`, highest on top, teachers without wins included
    (view teacher_win_rates, one scope)."""
    wins = wins.sort_values(["win_rate", "teacher"], ascending=[False, True])
    fig, ax = _figure("Teacher win rates")
    ax.barh(wins["teacher"], wins["win_rate"])
    ax.invert_yaxis()
    ax.set(xlabel="win rate", xlim=(0, 1))
    return fig


def plot_matching_scores(scores, threshold: float | None):
    """Bars of `clips` per 0.05 `bucket_start` (view matching_score_distribution), with a vertical
    line at the good-match `threshold` (none while select has no threshold to grade by)."""
    scores = scores.sort_values("bucket_start")
    fig, ax = _figure("Matching scores of the selected captions")
    ax.bar(scores["bucket_start"], scores["clips"], width=0.05, align="edge")
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"good match > {threshold:g}")
        ax.legend()
    ax.set(xlabel="matching score", ylabel="clips")
    _integer_ticks(ax.yaxis)
    return fig

"""The Python API (`from panda_spark import run_stage`): what `panda-spark <stage>` does, in-process,
on a notebook's session or the embedded lakehouse. The command line runs its stages through it."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from panda_spark.config import Config, load_config
from panda_spark.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from panda_spark.runs import StageReport


def run_stage(stage: str, conf: Config | str | os.PathLike | None = None, overrides: Sequence[str] = (),
              spark: SparkSession | None = None, run_id: str | None = None, **options) -> StageReport:
    """Run one stage of `panda_spark.pipeline.STAGES` as `panda-spark <stage>` does and return its
    report (`rows_in`, `rows_out`, `errored`, `counts`, `run_id`).

    `conf`: a Config, or a YAML file loaded with `overrides` (`dotted.key=value`, as `--set`);
    None: the embedded defaults. `spark`: the session to run on (a notebook's `spark`); None: the
    active session in cluster mode, the embedded lakehouse under `paths.root` otherwise. `run_id`:
    None: `run.id`, else a fresh uuid. `options`: the stage's command-line options by name
    (`manifest=`, `labels=`, `source=`, `reference=`, `csv=`, `objective=`).
    ConfigError for an unknown stage, or for overrides given with a Config."""
    from panda_spark import pipeline
    from panda_spark.runs import new_run_id
    from panda_spark.spark import get_spark

    if stage not in pipeline.STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(pipeline.STAGES)}")
    if isinstance(conf, Config):
        if overrides:
            raise ConfigError("overrides apply to a conf file: pass a Config, or a file (or None) with overrides")
        cfg = conf
    else:
        cfg = load_config(conf, list(overrides))
    return pipeline.run_stage(get_spark(cfg, spark), cfg, run_id or new_run_id(cfg), stage, **options)

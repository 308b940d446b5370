"""panda-spark: the Panda-70M video-captioning pipeline as Spark ETL jobs over Delta Lake.

The Python API for notebooks and scripts (README, "Python API")::

    from panda_spark import Lakehouse, load_config, run_stage

Its names are imported on first use: `import panda_spark` alone imports neither pyspark nor
the stages.
"""
from __future__ import annotations

import importlib
from typing import Any

_API = {"load_config": "panda_spark.config", "Config": "panda_spark.config", "run_stage": "panda_spark.api",
        "Lakehouse": "panda_spark.tables", "StageReport": "panda_spark.runs"}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'panda_spark' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

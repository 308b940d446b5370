"""The scratch set-up the Spark benches share: a fresh paths.root and an embedded session on it."""
from __future__ import annotations

import tempfile
from pathlib import Path

from panda_spark.config import Config, load_config
from panda_spark.spark import get_spark


def scratch_session(prefix: str, *overrides: str) -> tuple[Path, Config, object]:
    """(root, cfg, spark) under a new temporary root, Spark UI off and quiet, plus `overrides`."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cfg = load_config(None, [f"paths.root={root}", 'spark.conf={"spark.ui.enabled": "false"}', "spark.log_level=ERROR",
                             *overrides])
    return root, cfg, get_spark(cfg)

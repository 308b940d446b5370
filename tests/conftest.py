"""Shared fixtures: one real local Spark session with Delta for the whole test run.

Tests that write tables get their own schema (`lakehouse` fixture), so they stay independent
while sharing the session (starting Spark costs ~10 s).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from panda_spark.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test where the shared data is absent (a user's clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (shared test data lives beside the repository)")
    return path


@pytest.fixture(scope="session")
def state_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("panda_root")


def overrides_for(root: Path, schema: str = "panda") -> list[str]:
    return [
        f"paths.root={root}",
        f"catalog.schema={schema}",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        'spark.conf={"spark.ui.enabled": "false", "spark.driver.memory": "2g"}',
    ]


@pytest.fixture(scope="session")
def spark(state_root):
    from panda_spark.spark import get_spark

    session = get_spark(load_config(None, overrides_for(state_root)))
    yield session
    session.stop()


_schemas = itertools.count()


@pytest.fixture
def make_cfg(state_root):
    """Config in a fresh schema of the shared warehouse: `make_cfg("ingest.batch_rows=2", ...)`."""

    def make(*overrides: str) -> Config:
        schema = f"t{os.getpid()}_{next(_schemas)}"
        return load_config(None, [*overrides_for(state_root, schema), *overrides])

    return make


@pytest.fixture
def lakehouse(spark, make_cfg):
    from panda_spark.spark import get_spark
    from panda_spark.tables import Lakehouse

    cfg = make_cfg()
    return Lakehouse(get_spark(cfg), cfg, run_id="test-run")


def commit_split(lake, video_ids, version: str = "seed") -> None:
    """Mark the videos' split as committed with params hash `version`, as split does after writing
    their shots, clips and frames: tests that write `clips` rows directly (params_hash `version`)
    call this so that readers see them."""
    rows = lake.spark.createDataFrame([(v, version) for v in video_ids], "key string, version string")
    lake.commit("split", rows.selectExpr("*", "CAST(NULL AS STRING) AS input_hash",
                                         "CAST(NULL AS MAP<STRING, BIGINT>) AS outputs"))

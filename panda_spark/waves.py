"""Bounded waves over a stage's pending work, with progress.

A heavy stage (split, caption, select, export) does not run one Spark job over all of its pending
rows and commit once at the end: it splits the pending keys into waves of at most about `size`
keys (a hash of the key picks the wave, so no driver-side list and no global sort), runs and
commits each wave, and logs rows done / total and the rate after each. A killed job loses only
the wave in flight; a plain rerun finds the committed waves done and goes on with the rest.

Why not Structured Streaming (`trigger(availableNow=True)` + `foreachBatch`)? What is pending is
not "rows appended since a checkpoint": a changed parameter, teacher version or source file makes
old rows pending again, and a wave's outputs are the stage's own tables. The tables themselves are
the checkpoint here, so there is no second state (a streaming checkpoint directory) to keep in
step with them, to clear on a conf change, or to lose.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterator

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger("panda_spark")


@dataclass
class Progress:
    """Rows done of a stage's total, logged as `stage: wave k of n: done/total what (rate, ETA)`."""

    stage: str
    what: str
    total: int
    waves: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def advance(self, wave: int, rows: int) -> str:
        self.done += rows
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        line = (f"{self.stage}: wave {wave + 1} of {self.waves}: {self.done}/{self.total} {self.what} "
                f"({rate:.2f} {self.what}/s, ETA {_duration(eta)})")
        log.info("%s", line)
        return line


@dataclass
class Wave:
    index: int
    keys: DataFrame  # one column: the wave's keys
    progress: Progress

    def done(self, rows: int) -> str:
        """Log the wave as finished with `rows` rows processed."""
        return self.progress.advance(self.index, rows)


def waves(pending: DataFrame, key: str, size: int, stage: str, what: str) -> Iterator[Wave]:
    """The distinct `key`s of `pending` in waves of about `size` (none when nothing is pending).

    The keys are materialised once (one narrow column); wave k holds the keys whose hash is k
    modulo the number of waves, so waves are disjoint and together cover every pending key."""
    keys = pending.select(key).distinct().localCheckpoint(eager=True)
    total = keys.count()
    count = math.ceil(total / size) if total else 0
    progress = Progress(stage, what, total, count)
    if total:
        log.info("%s: %d %s pending, in %d wave(s) of about %d", stage, total, what, count, min(size, total))
    for index in range(count):
        wave_keys = keys if count == 1 else keys.filter(F.pmod(F.xxhash64(key), F.lit(count)) == index)
        yield Wave(index, wave_keys, progress)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

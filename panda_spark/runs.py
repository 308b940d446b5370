"""Run identity and the per-stage summary every stage returns and prints."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from panda_spark.config import Config

log = logging.getLogger("panda_spark")
T = TypeVar("T")
R = TypeVar("R")

# Namespace of every deterministic id the pipeline derives (uuid5 of natural key + algorithm version).
PANDA_NAMESPACE = uuid.UUID("5d6c0c4e-58a3-4c59-9a57-0d5e1b7a6a70")


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(PANDA_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def new_run_id(cfg: Config) -> str:
    return cfg.run.id or str(uuid.uuid4())


@dataclass
class StageReport:
    """What a stage did. `rows_in` (inputs it took up this run), `rows_out` (rows it wrote or
    changed) and `errored` (inputs that went to `errors`) are the same three numbers for every
    stage, summed up by `panda-spark pipeline`; `counts` holds the stage's own detail."""
    stage: str
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    errored: int = 0

    def finish(self, rows_in: int, rows_out: int, errored: int = 0) -> "StageReport":
        self.rows_in, self.rows_out, self.errored = rows_in, rows_out, errored
        self.seconds = round(time.time() - self.started, 2)
        log.info("%s", self.summary())
        return self

    def summary(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"{self.stage}: {counts} ({self.seconds:.1f} s, run {self.run_id})"


def process_in_halves(items: list[T], process: Callable[[list[T]], list[R]],
                      failed: Callable[[T, Exception], R], what: str = "batch") -> list[R]:
    """`process(items)`; if it raises, each half again, down to single items that become
    `failed(item, exc)`. One bad input (or an out-of-memory batch) costs a few calls, not the batch."""
    try:
        return process(items)
    except Exception as exc:  # any model or processor failure: narrow it down to the item
        if len(items) == 1:
            return [failed(items[0], exc)]
        log.warning("%s of %d failed (%s: %s); retrying in halves", what, len(items), type(exc).__name__, exc)
        half = len(items) // 2
        return (process_in_halves(items[:half], process, failed, what)
                + process_in_halves(items[half:], process, failed, what))

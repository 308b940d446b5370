"""Run identity and the per-stage summary every stage returns and prints."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from panda_spark.config import Config

log = logging.getLogger("panda_spark")

# Namespace of every deterministic id the pipeline derives (uuid5 of natural key + algorithm version).
PANDA_NAMESPACE = uuid.UUID("5d6c0c4e-58a3-4c59-9a57-0d5e1b7a6a70")


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(PANDA_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def new_run_id(cfg: Config) -> str:
    return cfg.run.id or str(uuid.uuid4())


@dataclass
class StageReport:
    stage: str
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def finish(self) -> "StageReport":
        self.seconds = round(time.time() - self.started, 2)
        log.info("%s", self.summary())
        return self

    def summary(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"{self.stage}: {counts} ({self.seconds:.1f} s, run {self.run_id})"

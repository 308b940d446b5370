"""Bounded waves over a stage's pending work, with progress.

A heavy stage (split, caption, select, export) does not run one Spark job over all of its pending
rows and commit once at the end: it splits the pending keys into waves of at most about `size`
keys (a hash of the key picks the wave, so no driver-side list and no global sort), runs and
commits each wave, and reports rows done / total, the rate and the ETA after each (see
:class:`Progress`), and the running wave's Spark tasks done / total while it runs. A killed job loses only
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
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger("panda_spark")

LOG_EVERY_S = 30.0  # plain output: at most one line per this many seconds while a wave runs
POLL_S = 1.0  # how often the running job's tasks are looked at
_BAR = 20


@dataclass
class Progress:
    """Rows done of a stage's total, with rate and ETA.

    On a terminal (`stream.isatty()`, stderr by default) one line is redrawn in place, tqdm-style:
    `split  40%|########            | 2/5 videos [0:00:08<0:00:12, 0.25 videos/s] wave 1 of 3`.
    Otherwise each finished wave is one log line: `split: wave 1 of 3: 2/5 videos (0.25
    videos/s, ETA 0:00:12)`, and a running wave's tasks at most every LOG_EVERY_S seconds.
    `waves` 0: work that is not done in waves (ingest), the wave label is left out."""

    stage: str
    what: str
    total: int
    waves: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    stream: TextIO | None = None
    _logged: float = 0.0

    def advance(self, wave: int, rows: int) -> str:
        """Count `rows` more done at the end of wave `wave` (0-based); returns the plain line."""
        self.done += rows
        return self._show(wave, None, final=self.done >= self.total or wave + 1 >= self.waves)

    def running(self, wave: int, tasks_done: int, tasks_total: int, done: int | None = None) -> str:
        """Wave `wave` runs, its Spark job at `tasks_done` of `tasks_total` tasks; `done`: an
        estimate of the rows done by now, where the tasks tell it (else the finished waves')."""
        if done is not None:
            self.done = min(done, self.total)
        return self._show(wave, (tasks_done, tasks_total), final=False)

    def _show(self, wave: int, tasks: tuple[int, int] | None, final: bool) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        label = f"wave {wave + 1} of {self.waves}" if self.waves else ""
        running = f", tasks {tasks[0]}/{tasks[1]}" if tasks else ""
        stream = self.stream or sys.stderr
        if stream.isatty():
            pct = self.done / self.total if self.total else 1.0
            filled = int(pct * _BAR)
            line = (f"{self.stage} {pct:4.0%}|{'#' * filled}{' ' * (_BAR - filled)}| {self.done}/{self.total} "
                    f"{self.what} [{_duration(elapsed)}<{_duration(eta)}, {rate:.2f} {self.what}/s] {label}{running}")
            stream.write(f"\r{line.rstrip()}\x1b[K" + ("\n" if final else ""))
            stream.flush()
            return line
        line = (f"{self.stage}: {label + ': ' if label else ''}{self.done}/{self.total} {self.what} "
                f"({rate:.2f} {self.what}/s, ETA {_duration(eta)}){running}")
        now = time.monotonic()
        if tasks is None or now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.info("%s", line)
        return line


@contextmanager
def task_progress(spark_context, report: Callable[[int, int], object], interval: float = POLL_S) -> Iterator[None]:
    """While the block runs, a daemon thread reports `report(tasks_done, tasks_total)` every
    `interval` seconds: the final stage of the newest running job of the calling thread's job
    group (where a stage's mapInPandas runs), from Spark's StatusTracker."""
    group = spark_context.getLocalProperty("spark.jobGroup.id")
    tracker = spark_context.statusTracker()
    before = set(tracker.getJobIdsForGroup(group))
    stop = threading.Event()

    def poll() -> None:
        last = None
        while not stop.wait(interval):
            try:
                running = [j for j in tracker.getActiveJobsIds() if j not in before
                           and j in set(tracker.getJobIdsForGroup(group))]
                job = tracker.getJobInfo(max(running)) if running else None
                stage = tracker.getStageInfo(max(job.stageIds)) if job and job.stageIds else None
            except Exception:  # the context stops under us (end of a test session): nothing to show
                return
            if stage and stage.numTasks and (stage.numCompletedTasks, stage.numTasks) != last:
                last = (stage.numCompletedTasks, stage.numTasks)
                report(*last)

    thread = threading.Thread(target=poll, name="panda-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval * 5)


@dataclass
class Wave:
    index: int
    keys: DataFrame  # one column: the wave's keys
    progress: Progress

    def done(self, rows: int) -> str:
        """Report the wave as finished with `rows` rows processed."""
        return self.progress.advance(self.index, rows)


def waves(pending: DataFrame, key: str, size: int, stage: str, what: str) -> Iterator[Wave]:
    """The distinct `key`s of `pending` in waves of about `size` (none when nothing is pending).

    The keys are materialised once (one narrow column); wave k holds the keys whose hash is k
    modulo the number of waves, so waves are disjoint and together cover every pending key.
    While the caller works on a wave, its Spark tasks are reported (:func:`task_progress`)."""
    keys = pending.select(key).distinct().localCheckpoint(eager=True)
    total = keys.count()
    count = math.ceil(total / size) if total else 0
    progress = Progress(stage, what, total, count)
    if total:
        log.info("%s: %d %s pending, in %d wave(s) of about %d", stage, total, what, count, min(size, total))
    sc = pending.sparkSession.sparkContext
    for index in range(count):
        wave_keys = keys if count == 1 else keys.filter(F.pmod(F.xxhash64(key), F.lit(count)) == index)
        with task_progress(sc, lambda done, tasks, index=index: progress.running(index, done, tasks)):
            yield Wave(index, wave_keys, progress)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

"""Stopping what tests start: a child and everything it started (a JVM, mlflow's gunicorn workers)."""
from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the process group of `proc` (started with `start_new_session=True`), SIGKILL after
    `grace_s`; returns once it is gone, without raising on a loaded machine."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=grace_s)  # reaped: SIGKILL cannot be refused

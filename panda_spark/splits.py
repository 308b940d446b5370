"""The held-out split by clip: the same clips in every run, on every machine, in Python and in Spark.

A clip is held out when the first 32 bits of sha256(clip_id), read as a fraction of 2^32, fall
below the split's fraction. Selector fine-tuning and student training use it alike.
"""
from __future__ import annotations

import hashlib


def is_held_out(clip_id: str, fraction: float) -> bool:
    return int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def held_out_column(fraction: float, column: str = "clip_id"):
    """Spark's form of :func:`is_held_out`."""
    from pyspark.sql import functions as F

    bucket = F.conv(F.substring(F.sha2(F.col(column), 256), 1, 8), 16, 10).cast("double") / 2**32
    return bucket < F.lit(fraction)

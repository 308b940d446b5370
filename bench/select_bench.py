"""Clips/s of the selector through Spark's mapInPandas path against a plain batched Python loop,
on the same clips and the same cores, in one run.

It fills a scratch lakehouse with `--clips` clips of the colour task of tests/select (two stored
JPEG frames and four candidate captions each), then scores them (a) with `select_batch` inside
`mapInPandas` on local[*] — the stage's own code path, the scorer resident per worker — and (b)
with the same scorer in one Python process, batch by batch. JPEG decoding is part of the work on
both sides; writing to Delta is not timed. Prints clips/s and the ratio Spark/loop (target ≥ 0.8).

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python bench/select_bench.py [--clips 800] [--scorer tiny:clip]
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from bench_session import scratch_session
from panda_spark.select.core import RESULT_SCHEMA, prepare_clip, select_batch
from panda_spark.select.registry import scorer_spec
from panda_spark.select.scorers import load_scorer
from panda_spark.select.stage import candidate_sets
from panda_spark.tables import Lakehouse
from tests.select.test_stage import seed_tables


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=800)
    parser.add_argument("--scorer", default="tiny:clip")
    args = parser.parse_args(argv)
    root, cfg, spark = scratch_session("select_bench_", f"select.scorer={args.scorer}", "select.num_frames=2")
    lake = Lakehouse(spark, cfg, "bench")
    seed_tables(lake, args.clips)
    spec = scorer_spec(cfg)
    rows = (candidate_sets(lake).join(lake.frames_per_clip(), "clip_id")
            .filter("size(candidates) > 0").localCheckpoint(eager=True))
    n = rows.count()
    clips = rows.toPandas().to_dict("records")

    scorer = load_scorer(spec)
    scorer.score([prepare_clip(c, spec)[0] for c in clips[: spec.batch_size]])  # warm-up, as workers load once
    start = time.perf_counter()
    for i in range(0, n, spec.batch_size):
        scorer.score([prepare_clip(c, spec)[0] for c in clips[i: i + spec.batch_size]])
    loop_s = time.perf_counter() - start

    udf = partial(select_batch, spec=spec, threshold=cfg.select.good_match_threshold)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(spec.batch_size, 16)))
    parts = spark.sparkContext.defaultParallelism
    rows.repartition(parts).mapInPandas(udf, RESULT_SCHEMA).count()  # start the workers, load their scorers
    start = time.perf_counter()
    selected = rows.repartition(parts).mapInPandas(udf, RESULT_SCHEMA).filter("status = 'selected'").count()
    spark_s = time.perf_counter() - start

    print(f"scorer {spec.version}, {n} clips, {parts} cores, batch {spec.batch_size}")
    print(f"plain batched loop : {n / loop_s:8.1f} clips/s ({loop_s:.1f} s)")
    print(f"Spark mapInPandas  : {selected / spark_s:8.1f} clips/s ({spark_s:.1f} s, {selected} selected)")
    print(f"ratio Spark/loop   : {(selected / spark_s) / (n / loop_s):8.2f}  (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Captions/s of one teacher through Spark's mapInPandas path against a plain batched Python loop,
on the same clips and the same cores, in one run.

It renders the synthetic demo set, ingests and splits it into a scratch lakehouse, repeats its
clips to `--clips` rows (new ids, same frames and text), then captions them (a) with
`caption_batch` inside `mapInPandas` on local[*] — the stage's own code path, models resident per
worker — and (b) with the same `Teacher` in one Python process, batch by batch. Writing to Delta is
not timed (it is the same for both). Prints captions/s and the ratio Spark/loop (target ≥ 0.8).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/caption_bench.py [--teacher git-video-tiny] [--clips 400]
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from pyspark.sql import functions as F

from bench_session import scratch_session
from panda_spark.caption.inputs import teacher_inputs
from panda_spark.caption.stage import RESULT_SCHEMA, caption_batch, clip_rows
from panda_spark.caption.teachers import Teacher
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.ingest import stage as ingest
from panda_spark.split import stage as split
from panda_spark.tables import Lakehouse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="git-video-tiny")
    parser.add_argument("--clips", type=int, default=400)
    args = parser.parse_args(argv)
    root, cfg, spark = scratch_session("caption_bench_")
    lake = Lakehouse(spark, cfg, "bench")
    ingest.run(spark, cfg, "bench", manifest=str(write_manifest(render_demo_sources(root / "src"), root / "m.csv")))
    split.run(spark, cfg, "bench")
    teacher = next(t for t in cfg.caption.teachers if t.name == args.teacher)

    base = clip_rows(lake).localCheckpoint(eager=True)
    copies = -(-args.clips // base.count())
    rows = (base.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
            .withColumn("clip_id", F.concat_ws("#", "clip_id", "copy")).drop("copy")
            .limit(args.clips).localCheckpoint(eager=True))
    n = rows.count()
    clips = rows.toPandas().to_dict("records")

    model = Teacher(teacher, cfg.model_cache_dir)

    def inputs(batch):  # JPEG decoding and prompts are part of the work on both sides
        return [teacher_inputs(c["clip_id"], list(c["frames"]), list(c["subtitles"] or []), c["start_s"], c["end_s"],
                               c["title"], c["description"], teacher, 200, 100) for c in batch]

    model.caption(inputs(clips[: teacher.batch_size]))  # warm-up, as the Spark workers load theirs once
    start = time.perf_counter()
    for i in range(0, len(clips), teacher.batch_size):
        model.caption(inputs(clips[i: i + teacher.batch_size]))
    loop_s = time.perf_counter() - start

    udf = partial(caption_batch, teacher=teacher, cache_dir=cfg.model_cache_dir, trust_remote_code=False,
                  max_subtitle_tokens=200, max_metadata_tokens=100)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
    parts = spark.sparkContext.defaultParallelism
    rows.repartition(parts).mapInPandas(udf, RESULT_SCHEMA).count()  # start the workers, load their models
    start = time.perf_counter()
    captioned = rows.repartition(parts).mapInPandas(udf, RESULT_SCHEMA).filter("status = 'captioned'").count()
    spark_s = time.perf_counter() - start

    print(f"teacher {teacher.name}, {n} clips, {parts} cores")
    print(f"plain batched loop : {n / loop_s:8.1f} captions/s ({loop_s:.1f} s)")
    print(f"Spark mapInPandas  : {captioned / spark_s:8.1f} captions/s ({spark_s:.1f} s, {captioned} captioned)")
    print(f"ratio Spark/loop   : {(captioned / spark_s) / (n / loop_s):8.2f}  (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

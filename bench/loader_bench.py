"""The student's data path, side by side in one run:

1. samples/s of the petastorm loader (make_spark_converter → torch DataLoader) against an
   in-memory tensor loader on the same rows (ratio petastorm/memory), one process;
2. training samples/s of train-student's `train_fn` under TorchDistributor with 1 and 2 local
   processes (gloo on CPU), one epoch over the same rows.

Rows are the colour task of tests/select (tiny CLIP features, tiny GPT-2 token ids), repeated to
`--rows`.

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python bench/loader_bench.py [--rows 4096]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from bench_session import scratch_session
from panda_spark.student.data import NUMERIC_COLUMNS, MemoryLoader, PetastormLoader, RowBuilder
from panda_spark.student.model import StudentConfig
from panda_spark.tiny_models import resolve_model
from tests.select.colors import COLORS, color_frames


def read_all(loader, batch_size: int) -> tuple[int, float]:
    started, n = time.perf_counter(), 0
    with loader.batches(0, 1, batch_size, epoch=1) as batches:
        for batch in batches:
            n += len(batch["caption_ids"])
    return n, time.perf_counter() - started


def main(argv: list[str]) -> int:
    import mlflow
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.ml.torch.distributor import TorchDistributor

    from panda_spark.student.train import TrainJob, train_fn

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    root, cfg, spark = scratch_session("loader_bench_")
    vision, lm = resolve_model("tiny:clip", cfg.model_cache_dir), resolve_model("tiny:gpt2", cfg.model_cache_dir)
    builder = RowBuilder(vision, lm, num_frames=8, max_text_tokens=64, max_caption_tokens=32, device="cpu")
    rng = np.random.default_rng(0)
    base = builder.rows([color_frames(c, 8, rng) for c in COLORS], [f"a {c} scene in the video" for c in COLORS],
                        ["A title. A description"] * len(COLORS), ["hello and welcome back"] * len(COLORS))
    rows = pd.concat([base] * -(-args.rows // len(base)), ignore_index=True).iloc[: args.rows]

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, (root / "petastorm").as_uri())
    df = spark.createDataFrame(rows[list(NUMERIC_COLUMNS)]).repartition(4)
    converter = make_spark_converter(df)
    memory, petastorm = MemoryLoader(rows), PetastormLoader(converter)
    read_all(petastorm, args.batch_size)  # warm-up: reader threads, file cache
    n_mem, s_mem = read_all(memory, args.batch_size)
    n_pt, s_pt = read_all(petastorm, args.batch_size)
    print(f"{args.rows} rows, batch {args.batch_size}")
    print(f"in-memory tensors : {n_mem / s_mem:10.0f} samples/s")
    print(f"petastorm         : {n_pt / s_pt:10.0f} samples/s")
    print(f"ratio petastorm/memory : {(n_pt / s_pt) / (n_mem / s_mem):.2f}")

    tracking = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    config = StudentConfig(vision_model=vision, language_model=lm, num_frames=8, vision_dim=builder.encoder.dim,
                           video_queries=8, text_queries=8, hidden=64, layers=1, heads=4, max_text_tokens=64,
                           max_caption_tokens=32, train_language_model=True)
    for processes in (1, 2):
        run = mlflow.MlflowClient().create_run(experiment)
        job = TrainJob(config=config, train=petastorm, val=MemoryLoader(rows.iloc[:8]), eval_rows=rows.iloc[:0],
                       epochs=1, batch_size=args.batch_size // processes, learning_rate=1e-3, weight_decay=0.0,
                       seed=0, use_gpu=False, tracking_uri=tracking, mlflow_run_id=run.info.run_id,
                       checkpoint_dir=str(root / f"ckpt{processes}"), output_dir=str(root / f"out{processes}"))
        result = TorchDistributor(num_processes=processes, local_mode=True, use_gpu=False).run(train_fn, job)
        print(f"training, {processes} process{'es' if processes > 1 else ''}: {result['samples_per_s']:8.0f} samples/s "
              f"(global batch {args.batch_size})")
    converter.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

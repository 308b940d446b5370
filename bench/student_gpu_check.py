"""GPU check of the student (no Spark, no MLflow): run it on a machine with a CUDA GPU.

Random-weight models of real sizes, built from configs (nothing downloaded): a ViT-B/32 CLIP as
the frozen encoder and a GPT-2 (124M) as the language model. It builds rows with the encoder on
the GPU, trains `train_fn` as a world of one on nccl (bf16 autocast) and on gloo/CPU over the same
rows (samples/s and the ratio), then captions with the saved student on the GPU.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/student_gpu_check.py [--rows 256]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.select_gpu_check import build_base_clip
from panda_spark.student.data import MemoryLoader, RowBuilder
from panda_spark.student.infer import StudentRunner
from panda_spark.student.model import StudentConfig
from panda_spark.student.train import TrainJob
from panda_spark.tiny_models import _bpe_tokenizer
from tests.student.test_core import run_train_fn_alone


def build_base_gpt2(directory: Path) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _bpe_tokenizer(["<|endoftext|>"], bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check is for a GPU machine")
        return 2
    root = Path(tempfile.mkdtemp(prefix="student_gpu_"))
    vision, lm = build_base_clip(root / "clip"), build_base_gpt2(root / "gpt2")
    report: dict = {"gpu": torch.cuda.get_device_name(0)}
    builder = RowBuilder(vision, lm, num_frames=8, max_text_tokens=64, max_caption_tokens=32, device="cuda")
    rng = np.random.default_rng(0)
    words = "a man woman dog runs walks on the beach street kitchen cooks plays guitar".split()
    started = time.perf_counter()
    frames = [[rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(8)] for _ in range(args.rows)]
    rows = builder.rows(frames, [" ".join(rng.choice(words, 8)) for _ in range(args.rows)],
                        ["A title. A description"] * args.rows, ["hello and welcome back"] * args.rows)
    report["rows_per_s_encoder_gpu"] = round(args.rows / (time.perf_counter() - started), 1)
    config = StudentConfig(vision_model=vision, language_model=lm, num_frames=8, vision_dim=builder.encoder.dim,
                           video_queries=32, text_queries=32, hidden=768, layers=2, heads=12, max_text_tokens=64,
                           max_caption_tokens=32, train_language_model=False)
    for name, use_gpu, subset in (("gpu_nccl", True, rows), ("cpu_gloo", False, rows.iloc[:64])):
        job = TrainJob(config=config, train=MemoryLoader(subset), val=MemoryLoader(subset.iloc[:16]),
                       eval_rows=pd.DataFrame(), epochs=2, batch_size=16, learning_rate=1e-4, weight_decay=0.0,
                       seed=0, use_gpu=use_gpu, tracking_uri=None, mlflow_run_id=None,
                       checkpoint_dir=str(root / f"ckpt_{name}"), output_dir=str(root / f"student_{name}"))
        result = run_train_fn_alone(job)
        report[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(name, json.dumps(report[name]), flush=True)
    report["gpu_over_cpu_training"] = round(report["gpu_nccl"]["samples_per_s"] / report["cpu_gloo"]["samples_per_s"], 1)
    runner = StudentRunner(str(root / "student_gpu_nccl"), device="cuda", max_new_tokens=12)
    captions = runner.caption(frames[:8], ["A title"] * 8, [""] * 8)
    report["runner"] = {"device": runner.device, "captions": len(captions), "all_str": all(isinstance(c, str) for c in captions)}
    print(json.dumps(report, default=str), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

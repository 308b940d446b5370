"""GPU check of the model paths of select, finetune-retrieval and caption (no Spark): run it on a
machine with a CUDA GPU. Everything is built from configs with random weights, nothing downloaded.

1. Scoring: the same clips scored by `DualEncoderScorer` on CPU (float32) and on the GPU
   (`dtype: auto` → bfloat16): largest score difference, how often the chosen candidate agrees,
   and clips/s on each side (ratio GPU/CPU) — for the tiny CLIP and for a ViT-B/32-sized CLIP.
2. Fine-tuning: the colour task of tests/select on the GPU (bf16 autocast): R@1 before → after.
3. Teachers: each tiny teacher family captions a batch on the GPU.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/select_gpu_check.py [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from panda_spark.select.finetune import FinetuneParams, train_selector
from panda_spark.select.scorers import DualEncoder, DualEncoderScorer, ScorerSpec, ScoringInput
from panda_spark.tiny_models import _wordpiece_tokenizer
from tests.select.colors import color_clips


def build_base_clip(directory: Path) -> str:
    """CLIP with ViT-B/32 sizes (the default CLIPConfig), random weights, the tiny tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _wordpiece_tokenizer()
    config = CLIPConfig(text_config=dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.cls_token_id,
                                         eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id))
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(directory)
    return str(directory)


def random_clips(n: int, frames: int, candidates: int, seed: int = 0) -> list[ScoringInput]:
    rng = np.random.default_rng(seed)
    words = "a man woman dog cat runs walks on the beach street kitchen cooks plays guitar red blue".split()
    return [ScoringInput(f"c{i}", [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(frames)],
                         [" ".join(rng.choice(words, 8)) for _ in range(candidates)]) for i in range(n)]


def scoring(location: str, cache: str, clips: list[ScoringInput], batch: int, cpu_clips: int) -> dict:
    result = {}
    scores = {}
    for device, dtype in (("cpu", "float32"), ("cuda", "auto")):
        scorer = DualEncoderScorer(ScorerSpec(kind="dual-encoder", location=location, name=location, num_frames=8,
                                              batch_size=batch, device=device, dtype=dtype, cache_dir=cache))
        subset = clips if device == "cuda" else clips[:cpu_clips]
        scorer.score(subset[:batch])  # warm-up (CUDA context, kernels)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = [s for i in range(0, len(subset), batch) for s in scorer.score(subset[i:i + batch])]
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        result[f"{device}_clips_per_s"] = round(len(subset) / seconds, 1)
        result[f"{device}_dtype"] = str(scorer.encoder.dtype)
        scores[device] = out
    n = cpu_clips
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(scores["cpu"][:n], scores["cuda"][:n])]
    agree = np.mean([int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(scores["cpu"][:n], scores["cuda"][:n])])
    result.update(max_abs_score_diff=round(max(diffs), 4), argmax_agreement=float(agree),
                  gpu_over_cpu=round(result["cuda_clips_per_s"] / result["cpu_clips_per_s"], 1))
    return result


def finetune_on_gpu(cache: str) -> dict:
    encoder = DualEncoder("tiny:clip", cache_dir=cache, device="cuda", dtype="float32")
    train, val = color_clips(48, seed=1), color_clips(16, seed=2)
    started = time.perf_counter()
    result = train_selector(encoder, lambda e: train, lambda e: val,
                            FinetuneParams(num_frames=2, epochs=4, batch_size=8, learning_rate=2e-3))
    return {"r1_before": result.r1_before, "r1_after": result.r1_after, "losses": [round(x, 4) for x in result.epoch_losses],
            "seconds": round(time.perf_counter() - started, 1), "device": encoder.device}


def teachers_on_gpu(cache: str, names: list[str] | None = None, device: str = "auto") -> dict:
    from panda_spark.caption.inputs import TeacherInput
    from panda_spark.caption.teachers import Teacher
    from panda_spark.config import load_config

    out = {}
    rng = np.random.default_rng(0)
    for spec in load_config(None).caption.teachers:
        if names and spec.name not in names:
            continue
        spec.device = device
        try:
            teacher = Teacher(spec, cache)
            frames = 1 if "frame" in spec.inputs else (spec.num_frames if "video" in spec.inputs else 0)
            items = [TeacherInput(f"c{i}", [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(frames)],
                                  "Describe the video in one sentence.", spec.inputs) for i in range(4)]
            captions = teacher.caption(items)
            out[spec.name] = {"device": teacher.adapter.device, "dtype": str(teacher.adapter.dtype),
                              "captions": captions, "ok": all(isinstance(c, str) for c in captions)}
        except Exception as exc:  # report every family, do not stop at the first
            out[spec.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                              "trace": traceback.format_exc()[-1500:]}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--teacher", action="append", help="only caption with these teachers (repeatable)")
    parser.add_argument("--teacher-device", default="auto", help="cpu to compare a teacher's CPU path")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check is for a GPU machine")
        return 2
    cache = tempfile.mkdtemp(prefix="gpu_check_")
    if args.teacher:  # one process per family: a CUDA device-side assert poisons the whole process
        print(json.dumps(teachers_on_gpu(cache, args.teacher, args.teacher_device), default=str))
        return 0
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers

    report["transformers"] = transformers.__version__
    clips = random_clips(256, frames=8, candidates=8)
    for name, location, cpu_clips in (("tiny_clip", "tiny:clip", 64),
                                      ("vit_b32_clip", build_base_clip(Path(cache) / "base-clip"), 16)):
        try:
            report[f"scoring_{name}"] = scoring(location, cache, clips, batch=16, cpu_clips=cpu_clips)
        except Exception as exc:
            report[f"scoring_{name}"] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
        print(name, json.dumps(report[f"scoring_{name}"]), flush=True)
    for key, check in (("finetune", finetune_on_gpu), ("teachers", teachers_on_gpu)):
        try:
            report[key] = check(cache)
        except Exception as exc:
            report[key] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
        print(key, json.dumps(report[key], default=str), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

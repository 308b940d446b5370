"""The distributed training function of train-student: what each TorchDistributor process runs.

Every process joins the DDP group (gloo on CPU, nccl on GPU), reads its shard of the training rows
from the loader, and steps AdamW on the student's trainable parameters. Rank 0 logs to the MLflow
run the driver opened: per step `loss`, `lr`, `samples_per_s` (all processes); per epoch
`val_loss` (all shards) and caption metrics of generated captions on up to `eval_clips` held-out
clips; the generations of the last epoch as an artifact. After every epoch rank 0 writes a
checkpoint (trainable weights, optimiser, epoch); a job started again resumes after the last one.
Rank 0 saves the final model directory and returns its metrics.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from panda_spark.student.data import StudentLoader, to_model_batch
from panda_spark.student.model import Decoding, StudentCaptioner, StudentConfig


@dataclass
class TrainJob:
    config: StudentConfig
    train: StudentLoader
    val: StudentLoader
    eval_rows: pd.DataFrame  # held-out rows with clip_id and caption, for generated-caption metrics
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    use_gpu: bool
    tracking_uri: str | None  # None: no MLflow logging (benchmarks, device checks)
    mlflow_run_id: str | None
    checkpoint_dir: str
    output_dir: str
    max_new_tokens: int = 30
    decoding: Decoding = Decoding()


def train_fn(job: TrainJob) -> dict:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    backend = "nccl" if job.use_gpu else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if job.use_gpu else "cpu"
    if not job.use_gpu:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(job.seed)
    model = StudentCaptioner(job.config).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device] if job.use_gpu else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=job.learning_rate, weight_decay=job.weight_decay)
    start_epoch, step = _resume(model, optimizer, job.checkpoint_dir, device)
    tracker = _Tracker(job) if rank == 0 else None
    bf16 = job.use_gpu and torch.cuda.is_bf16_supported()
    generator = torch.Generator().manual_seed(job.seed * 1000 + rank)
    result: dict = {}
    for epoch in range(start_epoch, job.epochs + 1):
        ddp.train()
        started, seen = time.perf_counter(), 0
        # shards differ in length: join() lets a rank that ran out shadow the others' all-reduces.
        # Join's exit calls warnings.simplefilter("once") process-wide, which would unmute the
        # reader's threads (petastorm's FutureWarnings): it runs inside catch_warnings, after the
        # reader has stopped.
        with warnings.catch_warnings(), ddp.join(), job.train.batches(rank, world, job.batch_size, epoch) as batches:
            for raw in batches:
                batch = to_model_batch(raw, job.config.num_frames, device, True, job.config.subtitles_dropout,
                                       job.config.metadata_dropout, generator)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    loss = ddp(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                seen += len(batch["caption_ids"])
                if tracker:
                    tracker.step(step, loss.item(), optimizer.param_groups[0]["lr"],
                                 seen * world / (time.perf_counter() - started))
        epoch_samples_per_s = seen * world / (time.perf_counter() - started)
        val_loss = _validation_loss(model, job, rank, world, device)
        if tracker:
            result = {**tracker.epoch(epoch, val_loss, model, device), "samples_per_s": epoch_samples_per_s}
            _save_checkpoint(model, optimizer, epoch, step, job.checkpoint_dir)
        dist.barrier()
    if tracker:
        model.save(job.output_dir)
        tracker.finish()
    dist.destroy_process_group()
    return result


def _validation_loss(model, job: TrainJob, rank: int, world: int, device: str) -> float:
    import torch
    import torch.distributed as dist

    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # nccl reduces GPU tensors only
    with torch.no_grad(), job.val.batches(rank, world, job.batch_size, 0) as batches:
        for raw in batches:
            batch = to_model_batch(raw, job.config.num_frames, device, False, 0.0, 0.0)
            n = len(batch["caption_ids"])
            total += torch.tensor([model(batch).item() * n, n], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total[0] / total[1]) if total[1] else float("nan")


def finish_caption(text: str) -> str:
    """A generated caption as the released student hands it out: first letter capitalised, ending
    in a period (one is added unless it ends in . ! or ?; the released code always adds one and
    lowercases the rest)."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def generate_captions(model, rows: pd.DataFrame, num_frames: int, device: str, max_new_tokens: int,
                      decoding: Decoding = Decoding(), batch_size: int = 16) -> list[str]:
    """Finished captions for rows of numeric student inputs (metadata and subtitles kept)."""
    import numpy as np
    import torch

    from panda_spark.student.data import NUMERIC_COLUMNS

    captions = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows.iloc[start:start + batch_size]
            raw = {c: torch.from_numpy(np.stack(chunk[c].to_numpy())) for c in NUMERIC_COLUMNS}
            batch = to_model_batch(raw, num_frames, device, False, 0.0, 0.0)
            ids = model.generate(batch, max_new_tokens, decoding)
            captions += [finish_caption(t) for t in model.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return captions


class _Tracker:
    """Rank 0's MLflow logging into the run the driver opened."""

    def __init__(self, job: TrainJob):
        self.job, self.mlflow = job, None
        if job.mlflow_run_id is not None:
            import mlflow

            self.mlflow = mlflow
            mlflow.set_tracking_uri(job.tracking_uri)
            mlflow.start_run(run_id=job.mlflow_run_id)
        self.samples: list[dict] = []

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if self.mlflow:
            self.mlflow.log_metrics({"loss": loss, "lr": lr, "samples_per_s": samples_per_s}, step=step)

    def epoch(self, epoch: int, val_loss: float, model, device: str) -> dict:
        from panda_spark.student.metrics import caption_metrics

        metrics = {"val_loss": val_loss}
        rows = self.job.eval_rows
        if len(rows):
            generated = generate_captions(model, rows, self.job.config.num_frames, device, self.job.max_new_tokens,
                                          self.job.decoding)
            scores = caption_metrics({c: [r] for c, r in zip(rows["clip_id"], rows["caption"])},
                                     dict(zip(rows["clip_id"], generated)))
            metrics.update({f"val_{k.replace('-', '')}": v for k, v in scores.items()})
            self.samples = [{"clip_id": c, "reference": r, "generated": g, "epoch": epoch}
                            for c, r, g in zip(rows["clip_id"], rows["caption"], generated)]
        if self.mlflow:
            self.mlflow.log_metrics(metrics, step=epoch)
        return {**metrics, "epoch": epoch}

    def finish(self) -> None:
        if self.mlflow:
            self.mlflow.log_dict({"samples": self.samples}, "sample_generations.json")
            self.mlflow.end_run()


def _checkpoint_path(directory: str) -> Path:
    return Path(directory) / "last.pt"


def _save_checkpoint(model, optimizer, epoch: int, step: int, directory: str) -> None:
    import torch

    path = _checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save({"model": model.trainable_state(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                "config": dataclasses.asdict(model.config)}, staging)
    os.replace(staging, path)  # a job killed mid-write keeps the previous checkpoint


def _resume(model, optimizer, directory: str, device: str) -> tuple[int, int]:
    """(first epoch to run, steps done): after the checkpoint's epoch, or (1, 0) without one."""
    import torch

    path = _checkpoint_path(directory)
    if not path.exists():
        return 1, 0
    state = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, state["step"]


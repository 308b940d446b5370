"""Selector fine-tuning core: a dual encoder trained on annotated best captions. No Spark, no MLflow.

Each example is one labelled clip: its frames, its candidate captions and the index of the one an
annotator chose. The loss is the paper's video→text contrastive loss with weighted negatives: for
a clip, softmax over every caption in the batch, where its own other candidates (hard negatives)
count with weight `hard_negative_weight` (1) and other clips' captions with
`in_batch_negative_weight` (0.01) — a weight w enters as log(w) added to that logit. AdamW.
R@1 on the held-out split = how often the annotated caption scores highest among its clip's
candidates, measured before training and after each epoch.

Examples arrive as streams (`epoch → iterator`), so the training set need not fit in memory:
:func:`parquet_examples` reads the snapshot the Spark wrapper writes, shuffled per epoch.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from panda_spark.select.scorers import DualEncoder, ScoringInput
from panda_spark.video.frames import uniform_frames


@dataclass
class LabeledClip:
    clip_id: str
    frames: list[np.ndarray]  # num_frames RGB uint8
    captions: list[str]
    chosen: int  # index into captions


@dataclass(frozen=True)
class FinetuneParams:
    num_frames: int = 8
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 2e-5
    weight_decay: float = 0.02
    hard_negative_weight: float = 1.0
    in_batch_negative_weight: float = 0.01
    seed: int = 0


@dataclass
class FinetuneResult:
    r1_before: float
    r1_after: float
    epoch_losses: list[float]
    train_examples: int
    val_examples: int


Examples = Callable[[int], Iterable[LabeledClip]]  # epoch → that epoch's examples


def retrieval_loss(videos, texts, owner, positive, scale, hard_negative_weight: float,
                   in_batch_negative_weight: float):
    """videos (B, d), texts (N, d), both L2-normalised; owner (N,) the clip of each caption;
    positive (B,) the index in texts of each clip's chosen caption. Mean cross-entropy over clips."""
    import torch
    import torch.nn.functional as F

    logits = scale * videos @ texts.T  # (B, N)
    own = owner.unsqueeze(0) == torch.arange(len(videos), device=owner.device).unsqueeze(1)
    weights = torch.where(own, hard_negative_weight, in_batch_negative_weight).to(logits.dtype)
    weights[torch.arange(len(videos)), positive] = 1.0
    # weight 0 drops a negative; log(0) = -inf gives it no probability mass
    return F.cross_entropy(logits + torch.log(weights), positive)


def recall_at_1(encoder: DualEncoder, clips: Iterable[LabeledClip], num_frames: int, batch_size: int) -> tuple[float, int]:
    """(fraction of clips whose chosen caption scores highest, number of clips)."""
    import torch

    hits = total = 0
    encoder.model.eval()
    with torch.inference_mode():
        for batch in _batches(clips, batch_size):
            scores = encoder.score([ScoringInput(c.clip_id, c.frames, c.captions) for c in batch], num_frames)
            hits += sum(int(np.argmax(s)) == c.chosen for s, c in zip(scores, batch))
            total += len(batch)
    return (hits / total if total else float("nan")), total


def train_selector(encoder: DualEncoder, train: Examples, val: Examples, params: FinetuneParams,
                   on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
                   on_step: Callable[[int, dict[str, float]], None] = lambda step, metrics: None) -> FinetuneResult:
    """Fine-tune `encoder` in place; `on_epoch(0, {val_r1})` before training, then per epoch
    `on_epoch(e, {train_loss, val_r1})`; `on_step(step, {loss})` every batch."""
    import torch

    torch.manual_seed(params.seed)
    r1_before, val_examples = recall_at_1(encoder, val(0), params.num_frames, params.batch_size)
    on_epoch(0, {"val_r1": r1_before})
    optimizer = torch.optim.AdamW(encoder.model.parameters(), lr=params.learning_rate,
                                  weight_decay=params.weight_decay)
    use_bf16 = encoder.device.startswith("cuda") and torch.cuda.is_bf16_supported()
    losses, step, r1, train_examples = [], 0, r1_before, 0
    for epoch in range(1, params.epochs + 1):
        encoder.model.train()
        total, seen = 0.0, 0
        for batch in _batches(train(epoch), params.batch_size):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                loss = _batch_loss(encoder, batch, params)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            value = loss.item()
            total += value * len(batch)
            seen += len(batch)
            on_step(step, {"loss": value})
        train_examples = seen
        losses.append(total / seen if seen else float("nan"))
        r1, _ = recall_at_1(encoder, val(epoch), params.num_frames, params.batch_size)
        on_epoch(epoch, {"train_loss": losses[-1], "val_r1": r1})
    return FinetuneResult(r1_before, r1, losses, train_examples, val_examples)


def _batch_loss(encoder: DualEncoder, batch: list[LabeledClip], params: FinetuneParams):
    import torch

    captions = [caption for clip in batch for caption in clip.captions]
    owner = torch.tensor([n for n, clip in enumerate(batch) for _ in clip.captions], device=encoder.device)
    offsets = np.cumsum([0] + [len(clip.captions) for clip in batch[:-1]])
    positive = torch.tensor([int(o) + clip.chosen for o, clip in zip(offsets, batch)], device=encoder.device)
    videos = encoder.video_embeddings(encoder.pixel_values([clip.frames for clip in batch]), params.num_frames)
    texts = encoder.text_embeddings(encoder.text_tokens(captions))
    return retrieval_loss(videos, texts, owner, positive, encoder.logit_scale(), params.hard_negative_weight,
                          params.in_batch_negative_weight)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------ the snapshot the Spark wrapper writes

SNAPSHOT_COLUMNS = ("clip_id", "captions", "chosen", "frames", "held_out")  # frames: clip_frames rows


def parquet_examples(path: str, num_frames: int, held_out: bool, seed: int, shuffle_buffer: int = 1024) -> Examples:
    """Examples of one split of a parquet snapshot, streamed; each epoch in another seeded order
    (fragment order shuffled, then a shuffle buffer). Frames are decoded as they are read."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")

    def examples(epoch: int) -> Iterator[LabeledClip]:
        rng = random.Random(seed * 1_000_003 + epoch)
        fragments = list(dataset.get_fragments())
        if not held_out:
            rng.shuffle(fragments)
        buffer: list[LabeledClip] = []
        for fragment in fragments:
            for record_batch in fragment.to_batches(filter=ds.field("held_out") == held_out, batch_size=256):
                for row in record_batch.to_pylist():
                    buffer.append(LabeledClip(row["clip_id"], uniform_frames(row["frames"], num_frames),
                                              list(row["captions"]), int(row["chosen"])))
                if len(buffer) >= shuffle_buffer and not held_out:
                    yield buffer.pop(rng.randrange(len(buffer)))
        if not held_out:
            rng.shuffle(buffer)
        yield from buffer

    return examples


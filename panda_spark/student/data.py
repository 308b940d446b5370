"""Student training rows and the loaders that feed them to torch. No Spark in the cores.

:func:`student_rows` (the `mapInPandas` function of train-student) turns clips — uniform frames,
gold caption, subtitles, title, description — into fixed-shape numeric rows: the frozen encoder's
per-frame features, and the caption, metadata and subtitles as padded token ids with masks
(strings are tokenised here, before petastorm, whose torch loader takes no strings).

Loaders hide where batches come from behind one method, `batches(rank, world, batch_size, epoch)`:
:class:`PetastormLoader` (petastorm's `make_spark_converter`, sharded by rank; Databricks has
deprecated petastorm, so it stays replaceable) and :class:`MemoryLoader` (rows in memory).
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import numpy as np
import pandas as pd

from panda_spark.text.clip_text import clip_subtitles
from panda_spark.video.frames import uniform_frames

TOKEN_COLUMNS = ("caption", "metadata", "subtitles")
NUMERIC_COLUMNS = ("frame_features", *[f"{c}_{k}" for c in TOKEN_COLUMNS for k in ("ids", "mask")])


def row_schema() -> str:
    return ("clip_id STRING, caption STRING, held_out BOOLEAN, status STRING, error_class STRING, message STRING, "
            + ", ".join(f"{c} ARRAY<{'FLOAT' if c == 'frame_features' else 'INT'}>" for c in NUMERIC_COLUMNS))


def metadata_text(title: str | None, description: str | None) -> str:
    return re.sub(r"\s+", " ", ". ".join(t for t in (title, description) if t)).strip()


def pad(ids: list[int], length: int, pad_id: int) -> tuple[list[int], list[int]]:
    ids = ids[:length]
    return ids + [pad_id] * (length - len(ids)), [1] * len(ids) + [0] * (length - len(ids))


class RowBuilder:
    """Frozen encoder + LM tokenizer, loaded once per worker; clips → numeric rows."""

    def __init__(self, vision_model: str, language_model: str, num_frames: int, max_text_tokens: int,
                 max_caption_tokens: int, device: str = "auto"):
        from transformers import AutoTokenizer

        from panda_spark.student.model import FrameEncoder

        self.encoder = FrameEncoder(vision_model, device=device)
        self.tokenizer = AutoTokenizer.from_pretrained(language_model)
        self.num_frames, self.max_text, self.max_caption = num_frames, max_text_tokens, max_caption_tokens
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def tokens(self, texts: list[str], length: int, eos: bool = False) -> list[tuple[list[int], list[int]]]:
        suffix = (self.tokenizer.eos_token or "") if eos else ""
        encoded = self.tokenizer([t + suffix if t else "" for t in texts], add_special_tokens=False)["input_ids"]
        return [pad(list(ids), length, self.pad_id) for ids in encoded]

    def rows(self, frames: list[list[np.ndarray]], captions: list[str], metadata: list[str],
             subtitles: list[str]) -> pd.DataFrame:
        """NUMERIC_COLUMNS for clips given as `num_frames` RGB frames each and their texts."""
        features = self.encoder.encode(frames)
        half = self.max_text // 2
        out = pd.DataFrame({"frame_features": [f.reshape(-1).astype(np.float32).tolist() for f in features]})
        for name, texts, length, eos in (("caption", captions, self.max_caption, True),
                                         ("metadata", metadata, half, False), ("subtitles", subtitles, half, False)):
            encoded = self.tokens(texts, length, eos)
            out[f"{name}_ids"] = [ids for ids, _ in encoded]
            out[f"{name}_mask"] = [mask for _, mask in encoded]
        return out


_BUILDERS: dict[tuple, RowBuilder] = {}  # per Python worker


def student_rows(batches: Iterator[pd.DataFrame], vision_model: str, language_model: str, num_frames: int,
                 max_text_tokens: int, max_caption_tokens: int, device: str = "auto") -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: clips (clip_id, caption, frames, cues, start_s, end_s, title, description,
    held_out) → row_schema() rows; a clip without usable frames becomes an error row."""
    from panda_spark.errors import InputError

    key = (vision_model, language_model, num_frames, max_text_tokens, max_caption_tokens, device)
    if key not in _BUILDERS:
        _BUILDERS.clear()
        _BUILDERS[key] = RowBuilder(*key)
    builder = _BUILDERS[key]
    half = max_text_tokens // 2
    for batch in batches:
        good, frames, errors = [], [], []
        for clip in batch.to_dict("records"):
            try:
                frames.append(uniform_frames(list(clip["frames"] if clip["frames"] is not None else []), num_frames))
                good.append(clip)
            except InputError as exc:
                errors.append({**{c: None for c in NUMERIC_COLUMNS}, "clip_id": clip["clip_id"],
                               "caption": clip["caption"], "held_out": bool(clip["held_out"]),
                               "status": "error", "error_class": exc.error_class, "message": exc.message})
        out = builder.rows(frames, [c["caption"] or "" for c in good],
                           [metadata_text(c["title"], c["description"]) for c in good],
                           [clip_subtitles(list(c["cues"] if c["cues"] is not None else []), c["start_s"], c["end_s"],
                                           half) for c in good]).to_dict("records") if good else []
        ok = [{**row, "clip_id": c["clip_id"], "caption": c["caption"], "held_out": bool(c["held_out"]),
               "status": "ok", "error_class": None, "message": None} for row, c in zip(out, good)]
        # records, not a concat of frames: an all-error batch must not turn held_out into floats
        yield pd.DataFrame(ok + errors, columns=[c.split()[0] for c in row_schema().split(", ")])


def text_inputs(batch: dict, training: bool, subtitles_dropout: float, metadata_dropout: float, generator=None):
    """metadata + subtitles → (text_ids, text_mask); in training each part is dropped per clip
    with its probability, so the student learns to caption without them too."""
    import torch

    meta_mask, subs_mask = batch["metadata_mask"], batch["subtitles_mask"]
    if training:
        n = len(meta_mask)
        keep_meta = torch.rand(n, 1, generator=generator) >= metadata_dropout
        keep_subs = torch.rand(n, 1, generator=generator) >= subtitles_dropout
        meta_mask = meta_mask * keep_meta.to(meta_mask.device, meta_mask.dtype)
        subs_mask = subs_mask * keep_subs.to(subs_mask.device, subs_mask.dtype)
    return (torch.cat([batch["metadata_ids"], batch["subtitles_ids"]], dim=1),
            torch.cat([meta_mask, subs_mask], dim=1))


def to_model_batch(batch: dict, num_frames: int, device: str, training: bool, subtitles_dropout: float,
                   metadata_dropout: float, generator=None) -> dict:
    """A loader batch (tensors per column) → the model's inputs on `device`."""
    import torch

    features = torch.as_tensor(batch["frame_features"], dtype=torch.float32)
    text_ids, text_mask = text_inputs({k: torch.as_tensor(batch[k]).long() for k in
                                       ("metadata_ids", "metadata_mask", "subtitles_ids", "subtitles_mask")},
                                      training, subtitles_dropout, metadata_dropout, generator)
    return {"frame_features": features.view(len(features), num_frames, -1).to(device),
            "text_ids": text_ids.to(device), "text_mask": text_mask.to(device),
            "caption_ids": torch.as_tensor(batch["caption_ids"]).long().to(device),
            "caption_mask": torch.as_tensor(batch["caption_mask"]).long().to(device)}


class StudentLoader:
    def batches(self, rank: int, world: int, batch_size: int, epoch: int):
        """A context manager yielding dict batches of NUMERIC_COLUMNS for this rank's shard."""
        raise NotImplementedError


class PetastormLoader(StudentLoader):
    def __init__(self, converter, seed: int = 0):
        self.converter, self.seed = converter, seed

    def batches(self, rank: int, world: int, batch_size: int, epoch: int):
        return self.converter.make_torch_dataloader(
            batch_size=batch_size, num_epochs=1, cur_shard=rank, shard_count=world, workers_count=1,
            shuffling_queue_capacity=0, seed=self.seed + epoch)

    def __len__(self) -> int:
        return len(self.converter)


class MemoryLoader(StudentLoader):
    """Rows held in memory (a DataFrame of NUMERIC_COLUMNS), sharded by position."""

    def __init__(self, rows: pd.DataFrame):
        self.arrays = {c: np.stack(rows[c].to_numpy()) for c in NUMERIC_COLUMNS}

    @contextlib.contextmanager
    def batches(self, rank: int, world: int, batch_size: int, epoch: int) -> Iterator:
        import torch

        n = len(next(iter(self.arrays.values())))
        mine = np.arange(rank, n, world)

        def generate():
            for start in range(0, len(mine), batch_size):
                picks = mine[start:start + batch_size]
                yield {c: torch.from_numpy(a[picks]) for c, a in self.arrays.items()}

        yield generate()

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

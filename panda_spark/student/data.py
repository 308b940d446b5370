"""Student training rows and the loaders that feed them to torch. No Spark in the cores.

:func:`student_rows` (the `mapInPandas` function of train-student) turns clips — uniform frames,
gold caption, subtitles, title, description — into fixed-shape numeric rows: the frozen encoder's
per-frame features, and the caption, metadata and subtitles as padded token ids with masks
(strings are tokenised here, before petastorm, whose torch loader takes no strings).

The student reads the released Panda-70M student's prompt (snap-research/Panda-70M, captioning/):
with any text ``Some information about a video you will get:`` then a ``Transcription: <subtitles>``
line and a ``Metadata: ['<title>', '<description>']`` line (each only when its field is there) and
``Please look at the video and faithfully summarize it in one sentence.``; without text
``Please faithfully summarize the following video in one sentence.`` It follows a start token and
is cut from the left to `max_text_tokens` (the end of the prompt is kept). A row stores each field
with its line label as token ids — the last `max_text_tokens` of them, all the left cut can keep —
so that training drops a field whole, label included, and :class:`Prompt` assembles the prompt
per batch.

Loaders hide where batches come from behind one method, `batches(rank, world, batch_size, epoch)`:
:class:`PetastormLoader` (petastorm's `make_spark_converter`, sharded by rank; Databricks has
deprecated petastorm, so it stays replaceable) and :class:`MemoryLoader` (rows in memory).
"""
from __future__ import annotations

import contextlib
import re
import warnings
from typing import Iterator, Mapping

import numpy as np
import pandas as pd

from panda_spark.text.clip_text import clip_subtitles, truncate
from panda_spark.video.frames import uniform_frames

def quiet_petastorm() -> None:
    """Silence the FutureWarnings petastorm 0.12 causes by using pyarrow's legacy filesystems and
    ParquetDataset API (deprecated since pyarrow 2 and 5): one per use, in the driver and in every
    training process. Called on import (the driver's stage) and again where a training process
    opens a reader, since the filters may have been replaced by then (the demo's training processes
    printed them with the import-time filter alone)."""
    warnings.filterwarnings(
        "ignore", r"(pyarrow\.(LocalFileSystem|localfs)|'ParquetDataset\.\w+' attribute|ParquetDatasetPiece) is "
        r"deprecated|Passing 'use_legacy_dataset=True'|Specifying the 'metadata_nthreads' argument", FutureWarning,
        r"petastorm\.")


quiet_petastorm()

TOKEN_COLUMNS = ("caption", "metadata", "subtitles")
NUMERIC_COLUMNS = ("frame_features", *[f"{c}_{k}" for c in TOKEN_COLUMNS for k in ("ids", "mask")])
PROMPT_HEAD = "Some information about a video you will get:"
SUBTITLES_LABEL = "\nTranscription: "
METADATA_LABEL = "\nMetadata: "
PROMPT_TAIL = "\nPlease look at the video and faithfully summarize it in one sentence."
PROMPT_WITHOUT_TEXT = "Please faithfully summarize the following video in one sentence."


def row_schema() -> str:
    return ("clip_id STRING, caption STRING, held_out BOOLEAN, status STRING, error_class STRING, message STRING, "
            + ", ".join(f"{c} ARRAY<{'FLOAT' if c == 'frame_features' else 'INT'}>" for c in NUMERIC_COLUMNS))


def metadata_text(title: str | None, description: str | None, max_words: int) -> str:
    """The released metadata field, `str([title, description])` of those present, each cut to its
    first `max_words` words (the released code cuts characters); empty without either."""
    parts = [truncate(re.sub(r"\s+", " ", t).strip(), max_words) for t in (title, description) if t and t.strip()]
    return str(parts) if parts else ""


def clip_texts(clip: Mapping, max_words: int) -> tuple[str, str]:
    """(subtitles, metadata) field texts of a clip (`cues`, `start_s`, `end_s`, `title`,
    `description`): the subtitles as the released code joins them (capitalised), at most
    `max_words` words of each from their start."""
    cues = list(clip["cues"]) if clip["cues"] is not None else []
    subtitles = clip_subtitles(cues, clip["start_s"], clip["end_s"], max_words).capitalize()
    return subtitles, metadata_text(clip["title"], clip["description"], max_words)


def start_token_id(tokenizer) -> int:
    """The token before the prompt: the tokenizer's bos (GPT-2 and OPT reuse their end of text), else eos."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def pad(ids: list[int], length: int, pad_id: int) -> tuple[list[int], list[int]]:
    ids = ids[:length]
    return ids + [pad_id] * (length - len(ids)), [1] * len(ids) + [0] * (length - len(ids))


class Prompt:
    """The released prompt in one tokenizer's ids: stored fields in, a clip's prompt out.

    Fields are tokenised apart from the fixed parts; each begins at a line break, where byte-level
    BPE (GPT-2, OPT) splits anyway, so the assembled ids equal those of the whole prompt."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.start = start_token_id(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.start
        self.head, self.tail, self.without_text = (self.ids(t) for t in (PROMPT_HEAD, PROMPT_TAIL, PROMPT_WITHOUT_TEXT))

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def field(self, label: str, text: str) -> list[int]:
        """A field's stored ids: its label and text, the last `max_tokens` of them; none without text."""
        return self.ids(label + text)[-self.max_tokens:] if text else []

    def assemble(self, subtitles_ids, subtitles_mask, metadata_ids, metadata_mask):
        """Stored fields (B, ·) and their masks → the prompts' (ids, mask), (B, max_tokens): the start
        token and the prompt, its last `max_tokens` tokens, padded on the left (as released). A field
        whose mask is all zero is absent; without both, the prompt is the one without text."""
        import torch

        ids = torch.full((len(subtitles_ids), self.max_tokens), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        fields = zip(*(t.tolist() for t in (subtitles_ids, subtitles_mask, metadata_ids, metadata_mask)))
        for row, (s_ids, s_mask, m_ids, m_mask) in enumerate(fields):
            text = [i for i, k in zip(s_ids, s_mask) if k] + [i for i, k in zip(m_ids, m_mask) if k]
            prompt = ([self.start] + (self.head + text + self.tail if text else self.without_text))[-self.max_tokens:]
            ids[row, -len(prompt):] = torch.tensor(prompt)
            mask[row, -len(prompt):] = 1
        return ids.to(subtitles_ids.device), mask.to(subtitles_ids.device)


class RowBuilder:
    """Frozen encoder + LM tokenizer, loaded once per worker; clips → numeric rows."""

    def __init__(self, vision_model: str, language_model: str, num_frames: int, max_text_tokens: int,
                 max_caption_tokens: int, device: str = "auto"):
        from transformers import AutoTokenizer

        from panda_spark.student.model import FrameEncoder

        self.encoder = FrameEncoder(vision_model, device=device)
        self.tokenizer = AutoTokenizer.from_pretrained(language_model)
        self.prompt = Prompt(self.tokenizer, max_text_tokens)
        self.num_frames, self.max_text, self.max_caption = num_frames, max_text_tokens, max_caption_tokens

    def caption_ids(self, caption: str) -> list[int]:
        """The caption's ids and the end of text; a caption cut to fit keeps its end token (as released)."""
        return self.prompt.ids(caption)[:self.max_caption - 1] + [self.tokenizer.eos_token_id] if caption else []

    def rows(self, frames: list[list[np.ndarray]], captions: list[str], metadata: list[str],
             subtitles: list[str]) -> pd.DataFrame:
        """NUMERIC_COLUMNS for clips given as `num_frames` RGB frames each and their field texts."""
        features = self.encoder.encode(frames)
        out = pd.DataFrame({"frame_features": [f.reshape(-1).astype(np.float32).tolist() for f in features]})
        for name, length, ids in (
                ("caption", self.max_caption, [self.caption_ids(t) for t in captions]),
                ("metadata", self.max_text, [self.prompt.field(METADATA_LABEL, t) for t in metadata]),
                ("subtitles", self.max_text, [self.prompt.field(SUBTITLES_LABEL, t) for t in subtitles])):
            padded = [pad(i, length, self.prompt.pad) for i in ids]
            out[f"{name}_ids"] = [i for i, _ in padded]
            out[f"{name}_mask"] = [m for _, m in padded]
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
        texts = [clip_texts(c, max_text_tokens) for c in good]
        out = builder.rows(frames, [c["caption"] or "" for c in good], [m for _, m in texts],
                           [s for s, _ in texts]).to_dict("records") if good else []
        ok = [{**row, "clip_id": c["clip_id"], "caption": c["caption"], "held_out": bool(c["held_out"]),
               "status": "ok", "error_class": None, "message": None} for row, c in zip(out, good)]
        # records, not a concat of frames: an all-error batch must not turn held_out into floats
        yield pd.DataFrame(ok + errors, columns=[c.split()[0] for c in row_schema().split(", ")])


def text_inputs(batch: dict, training: bool, subtitles_dropout: float, metadata_dropout: float, generator=None) -> dict:
    """The stored fields (`{metadata,subtitles}_{ids,mask}`); in training each field is dropped per
    clip with its probability — its whole mask zeroed, so its line leaves the prompt — and the
    student learns to caption without it too."""
    import torch

    fields = dict(batch)
    if training:
        for name, p in (("metadata", metadata_dropout), ("subtitles", subtitles_dropout)):
            mask = fields[f"{name}_mask"]
            keep = torch.rand(len(mask), 1, generator=generator) >= p
            fields[f"{name}_mask"] = mask * keep.to(mask.device, mask.dtype)
    return fields


def to_model_batch(batch: dict, num_frames: int, device: str, training: bool, subtitles_dropout: float,
                   metadata_dropout: float, generator=None) -> dict:
    """A loader batch (tensors per column) → the model's inputs on `device`."""
    import torch

    features = torch.as_tensor(batch["frame_features"], dtype=torch.float32)
    fields = text_inputs({k: torch.as_tensor(batch[k]).long() for k in
                          ("metadata_ids", "metadata_mask", "subtitles_ids", "subtitles_mask")},
                         training, subtitles_dropout, metadata_dropout, generator)
    return {"frame_features": features.view(len(features), num_frames, -1).to(device),
            **{k: v.to(device) for k, v in fields.items()},
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
        quiet_petastorm()
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

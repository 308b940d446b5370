"""The student captioner (stage 4 of the paper), scaled to the conf. No Spark.

Vision branch: per-frame features of a frozen image encoder (computed once, before training, by
:class:`FrameEncoder`) → a small temporal transformer whose learned queries attend over the frame
tokens (plus a learned frame-position embedding) → `video_queries` prefix tokens in the language
model's width. Text branch: learned queries attend over the language model's (frozen) embeddings of
the metadata and subtitle tokens → `text_queries` prefix tokens. The branches share nothing, so no
gradient flows from text into vision. Both prefixes precede the caption tokens of a causal LM;
the loss is the LM's on the caption tokens. In training, metadata and subtitles are each dropped
with probability 0.5 so the student also captions clips that have neither.

:meth:`StudentCaptioner.save` writes a self-contained directory: `student_config.json` (with
`format_version`), the branches' weights, and the language model and vision encoder as
`save_pretrained` directories; :meth:`StudentCaptioner.load` reads it back.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1


@dataclass
class StudentConfig:
    vision_model: str  # directory of the frozen image encoder (get_image_features)
    language_model: str  # directory of the causal LM
    num_frames: int = 8
    vision_dim: int = 0  # the encoder's feature width (filled from the encoder)
    video_queries: int = 32
    text_queries: int = 32
    hidden: int = 256  # width of the query transformers
    layers: int = 2
    heads: int = 4
    max_text_tokens: int = 128  # metadata + subtitles, each padded to half
    max_caption_tokens: int = 40
    subtitles_dropout: float = 0.5
    metadata_dropout: float = 0.5
    train_language_model: bool = False
    format_version: int = FORMAT_VERSION


class StudentCaptioner(nn.Module):
    def __init__(self, config: StudentConfig):
        from transformers import AutoModelForCausalLM

        super().__init__()
        self.config = config
        self.lm = AutoModelForCausalLM.from_pretrained(config.language_model)
        lm_width = self.lm.get_input_embeddings().embedding_dim
        self.lm.requires_grad_(config.train_language_model)
        h = config.hidden

        def queries(n: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(1, n, h) * 0.02)

        def branch() -> nn.TransformerDecoder:
            layer = nn.TransformerDecoderLayer(h, config.heads, dim_feedforward=4 * h, batch_first=True,
                                               dropout=0.1, norm_first=True)
            return nn.TransformerDecoder(layer, config.layers)

        self.frame_in = nn.Linear(config.vision_dim, h)
        self.frame_position = nn.Parameter(torch.zeros(1, config.num_frames, h))
        self.video_queries, self.video_branch, self.video_out = queries(config.video_queries), branch(), nn.Linear(h, lm_width)
        self.text_in = nn.Linear(lm_width, h)
        self.text_queries, self.text_branch, self.text_out = queries(config.text_queries), branch(), nn.Linear(h, lm_width)

    # -- the two branches
    def video_prefix(self, frame_features):
        """frame_features (B, T, D) → (B, video_queries, lm width)."""
        tokens = self.frame_in(frame_features) + self.frame_position[:, : frame_features.shape[1]]
        queries = self.video_queries.expand(len(frame_features), -1, -1)
        return self.video_out(self.video_branch(queries, tokens))

    def text_prefix(self, text_ids, text_mask):
        """Metadata + subtitle tokens (B, L) with mask → (B, text_queries, lm width). The first
        position is always kept, so a clip without text still has one token to attend to."""
        embedded = self.lm.get_input_embeddings()(text_ids).detach()
        keep = text_mask.bool().clone()
        keep[:, 0] = True
        queries = self.text_queries.expand(len(text_ids), -1, -1)
        return self.text_out(self.text_branch(queries, self.text_in(embedded), memory_key_padding_mask=~keep))

    def prefix(self, batch: dict):
        text_ids, text_mask = batch["text_ids"], batch["text_mask"]
        return torch.cat([self.video_prefix(batch["frame_features"]), self.text_prefix(text_ids, text_mask)], dim=1)

    def forward(self, batch: dict):
        """Mean cross-entropy of the caption tokens (`caption_ids`, `caption_mask`) given the prefix."""
        prefix = self.prefix(batch)
        caption_ids, caption_mask = batch["caption_ids"], batch["caption_mask"]
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(caption_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=caption_mask.dtype, device=prefix.device), caption_mask], 1)
        labels = torch.cat([torch.full(prefix.shape[:2], -100, dtype=caption_ids.dtype, device=prefix.device),
                            caption_ids.masked_fill(caption_mask == 0, -100)], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    def generate(self, batch: dict, max_new_tokens: int = 30, num_beams: int = 1):
        """Token ids of the generated captions (B, ≤ max_new_tokens)."""
        prefix = self.prefix(batch)
        bos = self.lm.config.bos_token_id if self.lm.config.bos_token_id is not None else 0
        start = self.lm.get_input_embeddings()(torch.full((len(prefix), 1), bos, device=prefix.device))
        embeds = torch.cat([prefix, start], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=prefix.device)
        return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                num_beams=num_beams, do_sample=False, pad_token_id=self.lm.config.pad_token_id)

    # -- persistence
    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if self.config.train_language_model or not k.startswith("lm.")}

    def save(self, directory: str | Path, tokenizer=None) -> Path:
        """A self-contained directory: config, branch weights, the LM (+ tokenizer) and the vision encoder."""
        from safetensors.torch import save_file
        from transformers import AutoImageProcessor, AutoModel

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(directory / "language_model")
        if tokenizer is not None:
            tokenizer.save_pretrained(directory / "language_model")
        if Path(self.config.vision_model).resolve() != (directory / "vision_model").resolve():
            AutoModel.from_pretrained(self.config.vision_model).save_pretrained(directory / "vision_model")
            AutoImageProcessor.from_pretrained(self.config.vision_model).save_pretrained(directory / "vision_model")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("lm.")}
        save_file(state, str(directory / "student_branches.safetensors"))
        config = dataclasses.replace(self.config, language_model="language_model", vision_model="vision_model")
        (directory / "student_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "StudentCaptioner":
        from safetensors.torch import load_file

        directory = Path(directory)
        raw = json.loads((directory / "student_config.json").read_text())
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: student format {raw.get('format_version')}, this code reads {FORMAT_VERSION}")
        config = StudentConfig(**{**raw, "language_model": str(directory / raw["language_model"]),
                                  "vision_model": str(directory / raw["vision_model"])})
        model = cls(config)
        missing, unexpected = model.load_state_dict(load_file(str(directory / "student_branches.safetensors")), strict=False)
        if unexpected or any(not k.startswith("lm.") for k in missing):
            raise ValueError(f"{directory}: branch weights do not match the config ({unexpected or missing})")
        return model.to(device).eval()


def feature_dim(config) -> int:
    """Width of get_image_features for a CLIP-family config (its projection, else the vision width)."""
    return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)


class FrameEncoder:
    """The frozen image encoder: frames → per-frame features (one call for many clips)."""

    def __init__(self, location: str, device: str = "auto", dtype: str = "auto"):
        from transformers import AutoImageProcessor, AutoModel

        from panda_spark.devices import load_pretrained

        self.processor, self.model, self.device, self.dtype = load_pretrained(
            AutoModel, AutoImageProcessor, location, revision=None, cache_dir=None, trust_remote_code=False,
            device=device, dtype=dtype)

    @property
    def dim(self) -> int:
        return feature_dim(self.model.config)

    def encode(self, clips_frames: list[list[np.ndarray]]) -> np.ndarray:
        """(clips, frames, dim) float32; every clip must have the same number of frames."""
        flat = [f for frames in clips_frames for f in frames]
        with torch.inference_mode():
            pixels = self.processor(images=flat, return_tensors="pt").pixel_values.to(self.device, self.dtype)
            out = self.model.get_image_features(pixel_values=pixels)
            features = getattr(out, "pooler_output", out).float().cpu().numpy()
        return features.reshape(len(clips_frames), -1, features.shape[-1])

"""The student captioner (stage 4 of the paper), scaled to the conf. No Spark.

It follows the released Panda-70M student (snap-research/Panda-70M, captioning/video_llama).
Vision branch: per-frame features of a frozen image encoder (computed once, before training, by
:class:`FrameEncoder`) → a small temporal transformer whose learned queries attend over the frame
tokens (plus a learned frame-position embedding) → `video_queries` video tokens in the language
model's width. Text branch: the released prompt (:class:`panda_spark.student.data.Prompt`) as the
language model's (frozen) token embeddings plus learned position embeddings; the video tokens,
detached, are its queries (so no gradient flows from text into vision) → `text_queries` text
tokens. The causal LM reads ``[start token, text tokens, video tokens, caption, end of text]`` in
training and the same prefix when it generates; the loss is the LM's on the caption tokens. In
training, metadata and subtitles are each dropped with probability 0.5 so the student also
captions clips that have neither.

:meth:`StudentCaptioner.save` writes a self-contained directory: `student_config.json` (with
`format_version`), the branches' weights, and the language model (with its tokenizer) and vision
encoder as `save_pretrained` directories; :meth:`StudentCaptioner.load` reads it back.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 2  # 2: the released layout and text branch


@dataclass
class StudentConfig:
    vision_model: str  # directory of the frozen image encoder (get_image_features)
    language_model: str  # directory of the causal LM and its tokenizer
    num_frames: int = 8
    vision_dim: int = 0  # the encoder's feature width (filled from the encoder)
    video_queries: int = 32
    text_queries: int = 32  # the video tokens are the text branch's queries: equal to video_queries
    hidden: int = 256  # width of the query transformers
    layers: int = 2
    heads: int = 4
    max_text_tokens: int = 128  # the prompt's length in tokens (released: 200)
    max_caption_tokens: int = 40
    subtitles_dropout: float = 0.5
    metadata_dropout: float = 0.5
    train_language_model: bool = False
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class Decoding:
    """How captions are generated; the defaults are the released student's: beam search over 3
    beams with sampling, nucleus top-p 0.9, temperature 1.5."""
    num_beams: int = 3
    do_sample: bool = True
    top_p: float = 0.9
    temperature: float = 1.5

    @classmethod
    def of(cls, settings) -> "Decoding":
        """From conf settings with the same field names (StudentSettings)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})

    def generate_kwargs(self) -> dict:
        sampling = {"top_p": self.top_p, "temperature": self.temperature} if self.do_sample else {}
        return {"num_beams": self.num_beams, "do_sample": self.do_sample, **sampling}


GREEDY = Decoding(num_beams=1, do_sample=False)


class StudentCaptioner(nn.Module):
    def __init__(self, config: StudentConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from panda_spark.student.data import Prompt

        super().__init__()
        if config.text_queries != config.video_queries:
            raise ValueError(f"text_queries ({config.text_queries}) must equal video_queries "
                             f"({config.video_queries}): the video tokens are the text branch's queries")
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.language_model)
        self.prompt = Prompt(self.tokenizer, config.max_text_tokens)
        self.lm = AutoModelForCausalLM.from_pretrained(config.language_model)
        # transformers warns that a loss type it cannot infer from the class (GPT-2, OPT) is
        # unrecognised, then uses this one: the caption tokens' next-token loss, named here
        self.lm.loss_type = self.lm.loss_type or "ForCausalLM"
        lm_width = self.lm.get_input_embeddings().embedding_dim
        self.lm.requires_grad_(config.train_language_model)
        h = config.hidden

        def branch() -> nn.TransformerDecoder:
            layer = nn.TransformerDecoderLayer(h, config.heads, dim_feedforward=4 * h, batch_first=True,
                                               dropout=0.1, norm_first=True)
            return nn.TransformerDecoder(layer, config.layers)

        self.frame_in = nn.Linear(config.vision_dim, h)
        self.frame_position = nn.Parameter(torch.zeros(1, config.num_frames, h))
        self.video_queries = nn.Parameter(torch.randn(1, config.video_queries, h) * 0.02)
        self.video_branch, self.video_out = branch(), nn.Linear(h, lm_width)
        self.text_position = nn.Embedding(config.max_text_tokens, lm_width)
        self.text_in, self.text_branch, self.text_out = nn.Linear(lm_width, h), branch(), nn.Linear(h, lm_width)

    # -- the two branches
    def video_prefix(self, frame_features):
        """frame_features (B, T, D) → (B, video_queries, lm width)."""
        tokens = self.frame_in(frame_features) + self.frame_position[:, : frame_features.shape[1]]
        queries = self.video_queries.expand(len(frame_features), -1, -1)
        return self.video_out(self.video_branch(queries, tokens))

    def text_prefix(self, video, text_ids, text_mask):
        """The prompt (B, max_text_tokens) with its mask, queried by the video tokens `video`
        (detached) → (B, text_queries, lm width)."""
        positions = self.text_position(torch.arange(text_ids.shape[1], device=text_ids.device))
        embedded = self.lm.get_input_embeddings()(text_ids).detach() + positions
        queries = self.text_in(video.detach())
        return self.text_out(self.text_branch(queries, self.text_in(embedded), memory_key_padding_mask=text_mask == 0))

    def prefix(self, batch: dict):
        """What precedes the caption: (B, 1 + text_queries + video_queries, lm width)."""
        video = self.video_prefix(batch["frame_features"])
        text_ids, text_mask = self.prompt.assemble(batch["subtitles_ids"], batch["subtitles_mask"],
                                                   batch["metadata_ids"], batch["metadata_mask"])
        start = torch.full((len(video), 1), self.prompt.start, device=video.device)
        return torch.cat([self.lm.get_input_embeddings()(start), self.text_prefix(video, text_ids, text_mask), video], 1)

    def forward(self, batch: dict):
        """Mean cross-entropy of the caption tokens (`caption_ids`, `caption_mask`) given the prefix."""
        prefix = self.prefix(batch)
        caption_ids, caption_mask = batch["caption_ids"], batch["caption_mask"]
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(caption_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=caption_mask.dtype, device=prefix.device), caption_mask], 1)
        labels = torch.cat([torch.full(prefix.shape[:2], -100, dtype=caption_ids.dtype, device=prefix.device),
                            caption_ids.masked_fill(caption_mask == 0, -100)], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    def generate(self, batch: dict, max_new_tokens: int = 30, decoding: Decoding = Decoding()):
        """Token ids of the generated captions (B, ≤ max_new_tokens), continuing the training prefix."""
        prefix = self.prefix(batch)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        return self.lm.generate(inputs_embeds=prefix, attention_mask=mask, max_new_tokens=max_new_tokens,
                                pad_token_id=self.prompt.pad, eos_token_id=self.tokenizer.eos_token_id,
                                **decoding.generate_kwargs())

    # -- persistence
    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if self.config.train_language_model or not k.startswith("lm.")}

    def save(self, directory: str | Path) -> Path:
        """A self-contained directory: config, branch weights, the LM with its tokenizer and the vision encoder."""
        from safetensors.torch import save_file
        from transformers import AutoImageProcessor, AutoModel

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(directory / "language_model")
        self.tokenizer.save_pretrained(directory / "language_model")
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

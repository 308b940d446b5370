"""Per-family calling conventions of the teacher models (see :class:`panda_spark.caption.teachers.Adapter`).

- `blip2` (BLIP-2): one frame + the prompt → caption.
- `instructblip` (InstructBLIP, the MiniGPT-4 stand-in): the same, the prompt also instructing
  its Q-Former.
- `git-video` (GIT, VATEX-style video captioning): N frames stacked as (batch, frames, 3, H, W);
  GIT captions without a prompt.
- `text-llm`: a chat LLM that sees only the prompt (subtitles + metadata, and other teachers'
  captions through `captions:<name>` inputs): the paper's "VideoChat-Text" teacher.
- `image-text-to-text` (any `AutoModelForImageTextToText` whose processor has a chat template:
  Qwen2-VL / Qwen2.5-VL, LLaVA-NeXT-Video, Video-LLaVA, LLaVA-OneVision): the video (`video`
  inputs) or the keyframe (`frame`) + the prompt in the model's chat template; `qwen2-vl` is
  the same adapter under its first name.
- `student`: the student of train-student: video + subtitles + metadata, no prompt.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from panda_spark.caption.inputs import TeacherInput
from panda_spark.caption.teachers import Adapter


class Blip2Adapter(Adapter):
    model_class = "Blip2ForConditionalGeneration"

    def preprocess(self, items: list[TeacherInput]) -> dict[str, Any]:
        return dict(self.processor(images=[item.frames[0] for item in items], text=[item.prompt for item in items],
                                   return_tensors="pt", padding=True))


class InstructBlipAdapter(Blip2Adapter):
    model_class = "InstructBlipForConditionalGeneration"


class GitVideoAdapter(Adapter):
    model_class = "AutoModelForCausalLM"

    def preprocess(self, items: list[TeacherInput]) -> dict[str, Any]:
        import torch

        # GIT's processor does not stack frames: one call per clip, stacked to (B, T, 3, H, W)
        pixels = torch.stack([self.processor(images=item.frames, return_tensors="pt").pixel_values for item in items])
        return {"pixel_values": pixels}


class TextLLMAdapter(Adapter):
    model_class = "AutoModelForCausalLM"

    def preprocess(self, items: list[TeacherInput]) -> dict[str, Any]:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
        conversations = [[{"role": "user", "content": item.prompt}] for item in items]
        return dict(tokenizer.apply_chat_template(conversations, add_generation_prompt=True, return_tensors="pt",
                                                  padding=True, return_dict=True))


class ImageTextToTextAdapter(Adapter):
    model_class = "AutoModelForImageTextToText"

    def preprocess(self, items: list[TeacherInput]) -> dict[str, Any]:
        self.processor.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
        kind = "video" if "video" in self.spec.inputs else "image"
        prompts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": item.prompt}]}],
            add_generation_prompt=True) for item in items]
        if kind == "video":
            pixels = {"videos": [np.stack(item.frames) for item in items]}
        else:
            pixels = {"images": [item.frames[0] for item in items]}
        return dict(self.processor(text=prompts, **pixels, return_tensors="pt", padding=True))


class StudentAdapter(Adapter):
    """The student captioner of train-student (a registered `models:/...` or a saved directory):
    uniform frames + the clip's subtitles + the video's metadata, one model call per batch."""

    artifact = "student"  # the pyfunc artifact train-student registers

    def __init__(self, runner, spec):
        self.runner, self.spec = runner, spec

    @classmethod
    def load(cls, spec, location: str, cache_dir: str, trust_remote_code: bool) -> "StudentAdapter":
        from panda_spark.student.infer import StudentRunner

        return cls(StudentRunner(location, device=spec.device, max_new_tokens=spec.max_new_tokens), spec)

    def caption(self, items: list[TeacherInput]) -> list[str]:
        from panda_spark.student.data import metadata_text

        words = self.runner.max_text_tokens
        return self.runner.caption([item.frames for item in items],
                                   [metadata_text(item.title, item.description, words) for item in items],
                                   [item.subtitles.capitalize() for item in items])


ADAPTERS: dict[str, type[Adapter]] = {
    "blip2": Blip2Adapter, "instructblip": InstructBlipAdapter, "git-video": GitVideoAdapter,
    "text-llm": TextLLMAdapter, "image-text-to-text": ImageTextToTextAdapter, "qwen2-vl": ImageTextToTextAdapter,
    "student": StudentAdapter,
}

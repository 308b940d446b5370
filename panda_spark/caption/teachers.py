"""Teacher models: set up once per Python worker, then caption batches of clips. No Spark.

A `Teacher` wraps one conf entry (`caption.teachers[i]`): it loads the checkpoint once
(`from_pretrained`; `tiny:<family>` builds a tiny random model of that family into the model cache
first), and captions a batch in three steps kept apart, as transformers pipelines do:
`preprocess` (frames + prompts → model inputs, by the family's processor), `forward`
(`generate`, greedy unless the conf says otherwise) and `postprocess` (new tokens → text).
Each family is an `Adapter` that knows its processor's calling convention.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from panda_spark.caption.inputs import TeacherInput
from panda_spark.config import TeacherSettings
from panda_spark.devices import load_pretrained
from panda_spark.tiny_models import resolve_model

MAX_MODELS_PER_WORKER = 3


class Adapter:
    """One model family's calling convention. Subclasses set `model_class` and `preprocess`."""

    model_class = "AutoModelForImageTextToText"
    artifact: str | None = None  # the MLflow pyfunc artifact holding the model, for models:/ teachers

    def __init__(self, processor, model, spec: TeacherSettings, device: str, dtype):
        self.processor, self.model, self.spec, self.device, self.dtype = processor, model, spec, device, dtype
        text_config = getattr(model.config, "text_config", None) or model.config
        # a decoder-only LM's generate() returns the prompt before the new tokens; T5-style ones do not
        self.decoder_only = not getattr(text_config, "is_encoder_decoder", False)

    @classmethod
    def load(cls, spec: TeacherSettings, location: str, cache_dir: str, trust_remote_code: bool) -> "Adapter":
        """The family's processor and model from `location`, through `from_pretrained`."""
        import transformers
        from transformers import AutoProcessor

        processor, model, device, dtype = load_pretrained(
            getattr(transformers, cls.model_class), AutoProcessor, location, revision=spec.revision,
            cache_dir=cache_dir, trust_remote_code=trust_remote_code, device=spec.device, dtype=spec.dtype)
        return cls(processor, model, spec, device, dtype)

    def preprocess(self, items: list[TeacherInput]) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, inputs: dict[str, Any]):
        return self.model.generate(**inputs, max_new_tokens=self.spec.max_new_tokens,
                                   num_beams=self.spec.num_beams, do_sample=self.spec.do_sample)

    def postprocess(self, generated, inputs: dict[str, Any]) -> list[str]:
        if self.decoder_only and "input_ids" in inputs:
            generated = generated[:, inputs["input_ids"].shape[1]:]
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return [text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]

    def caption(self, items: list[TeacherInput]) -> list[str]:
        inputs = self.to_device(self.preprocess(items))
        return self.postprocess(self.forward(inputs), inputs)

    def to_device(self, inputs) -> dict[str, Any]:
        import torch

        return {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                if torch.is_tensor(v) else v for k, v in inputs.items()}


class Teacher:
    def __init__(self, spec: TeacherSettings, cache_dir: str, trust_remote_code: bool = False):
        from panda_spark.caption.adapters import ADAPTERS

        self.spec = spec
        self.adapter = ADAPTERS[spec.adapter].load(spec, resolve_model(spec.model, cache_dir), cache_dir,
                                                   trust_remote_code)

    def caption(self, items: list[TeacherInput]) -> list[str]:
        import torch

        with torch.inference_mode():
            return self.adapter.caption(items)


_LOADED: "OrderedDict[str, Teacher]" = OrderedDict()  # per Python worker, most recently used last


def load_teacher(spec: TeacherSettings, cache_dir: str, trust_remote_code: bool = False) -> Teacher:
    """The worker's teacher for `spec`, loading it once; at most MAX_MODELS_PER_WORKER stay resident."""
    key = repr(spec)  # the whole conf entry: a dataclass of plain values
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    while len(_LOADED) >= MAX_MODELS_PER_WORKER:
        _LOADED.popitem(last=False)
    os.makedirs(cache_dir, exist_ok=True)
    _LOADED[key] = Teacher(spec, cache_dir, trust_remote_code)
    return _LOADED[key]

"""A transformers image tower (CLIP, SigLIP, …) as the stitching embedder; GPU when present.

Loaded once per Python worker through `from_pretrained` (a hub id with a revision, or a local
directory); `embed` runs the model's processor and `get_image_features` in batches and returns
L2-normalised rows, as Panda-70M normalises its ImageBind features.
"""
from __future__ import annotations

import numpy as np

from panda_spark.devices import load_pretrained


def hf_embedder_name(model: str, revision: str | None) -> str:
    return f"hf:{model}@{revision or 'default'}"


class TransformersImageEmbedder:
    def __init__(self, model: str, revision: str | None = None, cache_dir: str | None = None,
                 device: str = "auto", dtype: str = "auto", batch_size: int = 64, trust_remote_code: bool = False):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.processor, self.model, self.device, self.dtype = load_pretrained(
            AutoModel, AutoImageProcessor, model, revision=revision, cache_dir=cache_dir,
            trust_remote_code=trust_remote_code, device=device, dtype=dtype)
        self.batch_size = batch_size
        self.name = hf_embedder_name(model, revision)
        self._torch = torch

    def embed(self, frames: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = self.processor(images=list(frames[start:start + self.batch_size]), return_tensors="pt")
                pixels = batch["pixel_values"].to(self.device, self.dtype)
                features = self.model.get_image_features(pixel_values=pixels)
                if not torch.is_tensor(features):  # transformers 5 returns an output object
                    features = features.pooler_output
                features = torch.nn.functional.normalize(features.float(), dim=-1)
                out.append(features.cpu().numpy())
        dim = out[0].shape[1] if out else 0
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

"""A saved student, loaded once, captioning clips; and its MLflow pyfunc. No Spark.

:class:`StudentRunner` is what the caption stage uses when the student is listed as a teacher
(`adapter: student`), what `evaluate --source student` runs, and what the registered pyfunc wraps:
frames (RGB arrays) + metadata + subtitles → captions, batched, decoded as released unless told
otherwise (:class:`panda_spark.student.model.Decoding`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from panda_spark.student.model import Decoding

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # captioning with a saved student needs no MLflow
    PythonModel = object

ARTIFACT = "student"


class StudentRunner:
    def __init__(self, directory: str, device: str = "auto", max_new_tokens: int = 30,
                 decoding: Decoding | None = None):
        from pathlib import Path

        from panda_spark.devices import task_device
        from panda_spark.student.data import RowBuilder
        from panda_spark.student.model import Decoding, StudentCaptioner

        self.device = task_device(device)
        self.model = StudentCaptioner.load(directory, device=self.device)
        config = self.model.config
        self.builder = RowBuilder(str(Path(directory) / "vision_model"), str(Path(directory) / "language_model"),
                                  config.num_frames, config.max_text_tokens, config.max_caption_tokens, self.device)
        self.num_frames, self.max_text_tokens = config.num_frames, config.max_text_tokens
        self.max_new_tokens, self.decoding = max_new_tokens, decoding or Decoding()

    def caption(self, frames: list[list[np.ndarray]], metadata: list[str], subtitles: list[str]) -> list[str]:
        """`frames`: `num_frames` RGB frames per clip (resampled evenly if a clip has another count);
        `metadata` and `subtitles`: the prompt's field texts (:func:`panda_spark.student.data.clip_texts`)."""
        from panda_spark.student.train import generate_captions

        picked = [[clip[i] for i in np.linspace(0, len(clip) - 1, self.num_frames).round().astype(int)] for clip in frames]
        rows = self.builder.rows(picked, [""] * len(frames), metadata, subtitles)
        return generate_captions(self.model, rows, self.num_frames, self.device, self.max_new_tokens, self.decoding)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import Array, ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(Array(DataType.binary), "frames"), ColSpec(DataType.string, "metadata", required=False),
                       ColSpec(DataType.string, "subtitles", required=False)]),
        outputs=Schema([ColSpec(DataType.string, "caption")]),
    )


class StudentModel(PythonModel):
    """pyfunc: rows of (frames: JPEG bytes of one clip, metadata, subtitles) → caption."""

    def load_context(self, context) -> None:
        self.runner = StudentRunner(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from panda_spark.tracking import jpeg_bytes
        from panda_spark.video.frames import decode_jpeg

        rows = model_input.to_dict("records")
        frames = [[decode_jpeg(jpeg_bytes(f)) for f in r["frames"]]
                  for r in rows]
        captions = self.runner.caption(frames, [r.get("metadata") or "" for r in rows],
                                       [r.get("subtitles") or "" for r in rows])
        return pd.DataFrame({"caption": captions})

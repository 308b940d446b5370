"""Selectors in the MLflow Model Registry, and the conf → :class:`ScorerSpec` resolution. No Spark.

A fine-tuned selector is logged as an MLflow pyfunc model: the dual encoder's `save_pretrained`
directory is its artifact `dual_encoder`, and :class:`SelectorModel` scores a DataFrame of clips
(`frames`: JPEG bytes, `captions`: strings) → `scores`, so it also serves outside this pipeline.
`select.scorer: models:/<name>@<alias>` (or `models:/<name>/<version>`) is resolved on the driver
to a fixed version and downloaded once into the model cache; the Spark tasks then load the
directory through the ordinary `from_pretrained` path, batched like any dual encoder.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from panda_spark.config import Config
from panda_spark.select.scorers import TEXT_CONSENSUS, ScorerSpec, ScoringInput, bundled_text_model
from panda_spark.tracking import download_registered, pin_registered

ARTIFACT = "dual_encoder"


def scorer_spec(cfg: Config, scorer: str | None = None) -> ScorerSpec:
    """The conf's scorer (or `scorer`), with any registered model resolved and downloaded."""
    settings = cfg.select
    scorer = scorer or settings.scorer
    base = ScorerSpec(kind="dual-encoder", location=scorer, name=scorer, revision=settings.scorer_revision,
                      num_frames=settings.num_frames, batch_size=settings.batch_size, device=settings.device,
                      dtype=settings.dtype, cache_dir=cfg.model_cache_dir, trust_remote_code=cfg.models.trust_remote_code)
    if scorer == TEXT_CONSENSUS:
        # scorer_revision pins the text model only when one is named; the bundled one has none
        return replace(base, kind=TEXT_CONSENSUS, location=settings.text_model or bundled_text_model(),
                       name=f"{TEXT_CONSENSUS}:{settings.text_model or 'all-MiniLM-L6-v2'}",
                       revision=settings.scorer_revision if settings.text_model else None)
    if scorer.startswith("models:/"):
        pinned = pin_registered(cfg, scorer, "select.scorer")
        return replace(base, location=download_registered(cfg, pinned, ARTIFACT, "select.scorer"), name=pinned,
                       revision=None)
    return base


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import Array, ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(Array(DataType.binary), "frames"), ColSpec(Array(DataType.string), "captions")]),
        outputs=Schema([ColSpec(Array(DataType.double), "scores")]),
    )


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # selection without MLflow installed still works; only logging needs it
    PythonModel = object


class SelectorModel(PythonModel):
    """pyfunc: rows of (frames: JPEG bytes of one clip, captions: its candidates) → scores; the
    model config holds `num_frames`. Logged from code (`selector_pyfunc.py`)."""

    def load_context(self, context) -> None:
        from panda_spark.select.scorers import DualEncoderScorer

        self.num_frames = int(context.model_config["num_frames"])
        self.scorer = DualEncoderScorer(ScorerSpec(kind="dual-encoder", location=context.artifacts[ARTIFACT],
                                                   name="pyfunc", num_frames=self.num_frames, dtype="float32"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from panda_spark.tracking import jpeg_bytes
        from panda_spark.video.frames import uniform_frames

        items = []
        for n, row in enumerate(model_input.to_dict("records")):
            stored = [{"frame_idx": i, "role": "uniform", "jpeg": jpeg_bytes(f)} for i, f in enumerate(row["frames"])]
            items.append(ScoringInput(str(n), uniform_frames(stored, self.num_frames), [str(c) for c in row["captions"]]))
        return pd.DataFrame({"scores": [list(map(float, s)) for s in self.scorer.score(items)]})

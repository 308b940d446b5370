"""Selectors in the MLflow Model Registry, and the conf → :class:`ScorerSpec` resolution. No Spark.

A fine-tuned selector is logged as an MLflow pyfunc model: the dual encoder's `save_pretrained`
directory is its artifact `dual_encoder`, and :class:`SelectorModel` scores a DataFrame of clips
(`frames`: JPEG bytes, `captions`: strings) → `scores`, so it also serves outside this pipeline.
`select.scorer: models:/<name>@<alias>` (or `models:/<name>/<version>`) is resolved on the driver
to a fixed version and downloaded once into the model cache; the Spark tasks then load the
directory through the ordinary `from_pretrained` path, batched like any dual encoder.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.select.scorers import TEXT_CONSENSUS, ScorerSpec, ScoringInput, bundled_text_model

ARTIFACT = "dual_encoder"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


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
        name, version = resolve_registered(cfg, scorer)
        return replace(base, location=download_registered(cfg, name, version), name=f"models:/{name}/{version}",
                       revision=None)
    return base


def resolve_registered(cfg: Config, uri: str) -> tuple[str, str]:
    """`models:/name@alias` or `models:/name/N` → (name, version), checked against the registry."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from panda_spark.tracking import start_experiment

    match = _MODEL_URI.match(uri)
    if not match:
        raise ConfigError(f"conf key 'select.scorer': expected models:/<name>@<alias> or models:/<name>/<version>, "
                          f"got {uri!r}")
    start_experiment(cfg)
    client = MlflowClient()
    name = match["name"]
    try:
        version = (client.get_model_version_by_alias(name, match["alias"]).version if match["alias"]
                   else client.get_model_version(name, match["version"]).version)
    except MlflowException as exc:
        raise ConfigError(f"conf key 'select.scorer': {uri} is not in the model registry at "
                          f"{cfg.mlflow.registry_uri or cfg.mlflow_tracking_uri} ({exc.message})") from exc
    return name, str(version)


def download_registered(cfg: Config, name: str, version: str) -> str:
    """The version's dual-encoder directory in the model cache (downloaded once)."""
    import mlflow

    target = Path(cfg.model_cache_dir) / "registered" / name / version
    if not (target / ARTIFACT / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging)))
        found = next(local.rglob(f"{ARTIFACT}/config.json"), None)
        if found is None:
            raise ConfigError(f"conf key 'select.scorer': models:/{name}/{version} holds no {ARTIFACT} directory; "
                              "expected a selector registered by panda-spark finetune-retrieval")
        target.mkdir(exist_ok=True)
        shutil.rmtree(target / ARTIFACT, ignore_errors=True)  # a partial earlier download
        os.replace(found.parent, target / ARTIFACT)
        shutil.rmtree(staging, ignore_errors=True)
    return str(target / ARTIFACT)


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
    """pyfunc: rows of (frames: JPEG bytes of one clip, captions: its candidates) → scores."""

    def __init__(self, num_frames: int):
        self.num_frames = num_frames

    def load_context(self, context) -> None:
        from panda_spark.select.scorers import DualEncoderScorer

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

"""MLflow set-up from the conf: tracking store, artifact location, experiment. No Spark.

Embedded default: a sqlite store at `<paths.root>/mlflow/mlflow.db` with artifacts beside it in
`<paths.root>/mlflow/artifacts` (without an artifact root MLflow would write to ./mlruns of
whatever directory the job started in). On clusters `mlflow.tracking_uri` names the server
(`databricks` on Databricks) and the experiment's own artifact location applies.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from panda_spark.config import Config
from panda_spark.errors import ConfigError

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def start_experiment(cfg: Config) -> str:
    """Point MLflow at the conf's store and experiment (created on first use); its id."""
    import mlflow

    embedded = cfg.mlflow.tracking_uri is None
    if embedded:
        (cfg.root / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or cfg.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        location = (cfg.root / "mlflow" / "artifacts").resolve().as_uri() if embedded else None
        experiment_id = mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


PIPELINE_STAGE = "pipeline"


def run_tags(run_id: str, stage: str, **extra: str) -> dict[str, str]:
    """Tags of a stage's MLflow run: our run id and stage, and, when `panda-spark pipeline` has an
    open run with this run id, that run as its parent (the MLflow UI nests the stage runs under it)."""
    import mlflow

    tags = {"panda.run_id": run_id, "panda.stage": stage, **extra}
    parents = mlflow.search_runs(filter_string=f"tags.`panda.run_id` = '{run_id}' and tags.`panda.stage` = "
                                               f"'{PIPELINE_STAGE}' and attributes.status = 'RUNNING'",
                                 output_format="list", max_results=1)
    if parents:
        tags["mlflow.parentRunId"] = parents[0].info.run_id
    return tags


def log_registered_pyfunc(name: str, model_module: str, artifacts: dict[str, str], signature, example,
                          registered_model: str, model_config: dict | None = None) -> str:
    """Log a pyfunc under the active run and register it; the new version number. The model is the
    file of `model_module`, a models-from-code file (MLflow's recommended form: no pickled object,
    so a model loads under another Python or cloudpickle), with `model_config` and our package as
    code paths (so it loads where panda-spark is not installed)."""
    import importlib.util
    import os

    import mlflow
    import torch
    import transformers

    import panda_spark

    info = mlflow.pyfunc.log_model(
        name=name, python_model=importlib.util.find_spec(model_module).origin, model_config=model_config,
        artifacts=artifacts, signature=signature, input_example=example,
        code_paths=[os.path.dirname(panda_spark.__file__)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}",
                          "numpy", "pandas", "opencv-python-headless", "PyYAML", "safetensors"],
        registered_model_name=registered_model,
    )
    return info.registered_model_version


def jpeg_bytes(value) -> bytes:
    """A JPEG model input as bytes; MLflow's serving input carries binary base64-encoded (as str or bytes)."""
    import base64

    data = value.encode() if isinstance(value, str) else bytes(value)
    return data if data[:2] == b"\xff\xd8" else base64.b64decode(data)


def finished_run_with(fingerprint: str) -> str | None:
    """The id of a finished run of the active experiment tagged `panda.training_fingerprint` =
    `fingerprint`: training (or evaluating) on the same inputs and settings again would add nothing."""
    import mlflow

    runs = mlflow.search_runs(filter_string=f"tags.`panda.training_fingerprint` = '{fingerprint}' "
                                            "and attributes.status = 'FINISHED'", output_format="list", max_results=1)
    return runs[0].info.run_id if runs else None


def pin_registered(cfg: Config, uri: str, key: str) -> str:
    """`models:/name@alias` or `models:/name/N` → `models:/name/N` (a fixed version), checked against
    the registry; `key` is the conf key that named it, for the error message."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = _MODEL_URI.match(uri)
    if not match:
        raise ConfigError(f"conf key '{key}': expected models:/<name>@<alias> or models:/<name>/<version>, got {uri!r}")
    start_experiment(cfg)
    client, name = MlflowClient(), match["name"]
    try:
        version = (client.get_model_version_by_alias(name, match["alias"]).version if match["alias"]
                   else client.get_model_version(name, match["version"]).version)
    except MlflowException as exc:
        raise ConfigError(f"conf key '{key}': {uri} is not in the model registry at "
                          f"{cfg.mlflow.registry_uri or cfg.mlflow_tracking_uri} ({exc.message})") from exc
    return f"models:/{name}/{version}"


def download_registered(cfg: Config, pinned: str, artifact: str, key: str) -> str:
    """The pyfunc artifact directory `artifact` of `pinned` (models:/name/N), downloaded once into the
    model cache (shared by the workers on clusters)."""
    import mlflow

    from panda_spark.tiny_models import resolve_model

    target = Path(resolve_model(pinned, cfg.model_cache_dir))
    if not target.is_dir() or not any(target.iterdir()):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(staging)))
        # a pyfunc keeps its artifacts in artifacts/<name> (code/ may hold a folder of the same name)
        found = next((p for p in local.rglob(artifact) if p.is_dir() and p.parent.name == "artifacts"), None)
        if found is None:
            raise ConfigError(f"conf key '{key}': {pinned} holds no {artifact} directory; expected a model "
                              "registered by panda-spark")
        shutil.rmtree(target, ignore_errors=True)  # a partial earlier download
        os.replace(found, target)
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)

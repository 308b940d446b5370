"""MLflow set-up from the conf: tracking store, artifact location, experiment. No Spark.

Embedded default: a sqlite store at `<paths.root>/mlflow/mlflow.db` with artifacts beside it in
`<paths.root>/mlflow/artifacts` (without an artifact root MLflow would write to ./mlruns of
whatever directory the job started in). On clusters `mlflow.tracking_uri` names the server
(`databricks` on Databricks) and the experiment's own artifact location applies.
"""
from __future__ import annotations

from panda_spark.config import Config


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



def log_registered_pyfunc(name: str, python_model, artifacts: dict[str, str], signature, example,
                          registered_model: str) -> str:
    """Log a pyfunc under the active run with our package as code (so it loads where panda-spark is
    not installed) and register it; the new version number."""
    import os

    import mlflow
    import torch
    import transformers

    import panda_spark

    info = mlflow.pyfunc.log_model(
        name=name, python_model=python_model, artifacts=artifacts, signature=signature, input_example=example,
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

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


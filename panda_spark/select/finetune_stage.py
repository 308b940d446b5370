"""finetune-retrieval (Spark wrapper + MLflow): `selection_labels` → a fine-tuned selector in the registry.

The labels are joined with each clip's current candidates (as the select stage sees them) and its
uniform frames; a label whose pick is no longer among the candidates is skipped and counted. The
examples are written once as a parquet snapshot under `<paths.root>/selector/<run id>/` and
streamed from there by the training loop on the driver (the driver's GPU when it has one), so the
label set need not fit in memory. The clip-hash split holds out `finetune.val_fraction`.
One MLflow run records the conf as params, the loss per step and epoch, held-out R@1 before
training (`r1_before`, `val_r1` at step 0) and after (`r1_after`), and registers the model
(`finetune.registered_model`, alias `finetune.alias`) with its signature.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.select.finetune import FinetuneParams, parquet_examples, train_selector
from panda_spark.select.registry import ARTIFACT, log_selector, scorer_spec
from panda_spark.select.scorers import DualEncoder
from panda_spark.select.stage import candidate_sets, uniform_frames_per_clip
from panda_spark.tables import Lakehouse
from panda_spark.tracking import start_experiment

log = logging.getLogger(__name__)
STAGE = "finetune-retrieval"


def held_out_column(fraction: float):
    """Spark's form of :func:`panda_spark.select.finetune.is_held_out` (same clips, same split)."""
    bucket = F.conv(F.substring(F.sha2(F.col("clip_id"), 256), 1, 8), 16, 10).cast("double") / 2**32
    return bucket < F.lit(fraction)


def labelled_examples(lake: Lakehouse, val_fraction: float) -> DataFrame:
    """One row per label whose pick resolves: clip_id, captions, chosen (0-based), frames, held_out;
    plus rows with chosen NULL for labels that no longer resolve."""
    captions = F.transform("candidates", lambda c: c.caption)
    by_teacher = F.nullif(F.array_position(F.transform("candidates", lambda c: c.teacher), F.col("chosen_teacher")), F.lit(0))
    by_caption = F.nullif(F.array_position(captions, F.col("chosen_caption")), F.lit(0))
    return (lake.read("selection_labels").join(candidate_sets(lake), "clip_id")
            .join(uniform_frames_per_clip(lake), "clip_id", "left")
            .select("clip_id", captions.alias("captions"), (F.coalesce(by_teacher, by_caption) - 1).alias("chosen"),
                    "frames", held_out_column(val_fraction).alias("held_out")))


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    import mlflow

    report = StageReport(STAGE, run_id)
    settings = cfg.finetune
    base = settings.base_model or cfg.select.scorer
    spec = scorer_spec(cfg, base)
    if not spec.needs_frames:
        raise ConfigError(f"conf key 'finetune.base_model': expected a dual encoder to fine-tune (a CLIP/SigLIP "
                          f"checkpoint or models:/name@alias), got {base!r}")
    lake = Lakehouse(spark, cfg, run_id)
    spark.sparkContext.setJobDescription("finetune-retrieval: labelled examples snapshot")
    examples = labelled_examples(lake, settings.val_fraction).localCheckpoint(eager=True)
    usable = examples.filter(F.col("chosen").isNotNull() & (F.size("frames") > 0))
    counts = usable.groupBy("held_out").count().collect()
    train_n = sum(r["count"] for r in counts if not r["held_out"])
    val_n = sum(r["count"] for r in counts if r["held_out"])
    report.counts.update(labels=examples.count(), skipped=examples.count() - train_n - val_n, train=train_n, val=val_n)
    if not train_n or not val_n:
        raise ConfigError(f"conf key 'finetune.val_fraction': {train_n} training and {val_n} held-out labelled clips "
                          "resolve to current candidates with frames; load more selection_labels "
                          "(panda-spark load-selection-labels) or change the split")
    snapshot = f"{str(cfg.root).rstrip('/')}/selector/{run_id}"
    usable.repartition(max(1, (train_n + val_n) // 512)).write.mode("overwrite").parquet(snapshot)

    params = FinetuneParams(num_frames=cfg.select.num_frames, **{
        f.name: getattr(settings, f.name) for f in dataclasses.fields(FinetuneParams) if f.name != "num_frames"})
    encoder = DualEncoder(spec.location, cache_dir=cfg.model_cache_dir, revision=spec.revision,
                          trust_remote_code=cfg.models.trust_remote_code, device=settings.device, dtype="float32")
    start_experiment(cfg)
    with mlflow.start_run(run_name=f"{STAGE} {run_id[:8]}", tags={"panda.run_id": run_id, "panda.stage": STAGE}):
        mlflow.log_params({**dataclasses.asdict(params), "base_model": spec.name, "device": encoder.device,
                           "val_fraction": settings.val_fraction, "train_clips": train_n, "val_clips": val_n,
                           "skipped_labels": report.counts["skipped"]})
        result = train_selector(
            encoder, parquet_examples(snapshot, params.num_frames, held_out=False, seed=params.seed),
            parquet_examples(snapshot, params.num_frames, held_out=True, seed=params.seed), params,
            on_epoch=_log_epoch,
            on_step=lambda step, metrics: mlflow.log_metric("step_loss", metrics["loss"], step=step))
        mlflow.log_metrics({"r1_before": result.r1_before, "r1_after": result.r1_after})
        with tempfile.TemporaryDirectory() as tmp:
            saved = f"{tmp}/{ARTIFACT}"  # the directory's name is the artifact's path in the model
            encoder.model.save_pretrained(saved)
            encoder.processor.save_pretrained(saved)
            first = usable.filter("held_out").first()
            example = pd.DataFrame({"frames": [[bytes(f.jpeg) for f in first.frames]], "captions": [list(first.captions)]})
            version = log_selector(saved, params.num_frames, settings.registered_model, example)
        mlflow.MlflowClient().set_registered_model_alias(settings.registered_model, settings.alias, version)
    storage.remove_tree(snapshot)
    log.info("finetune-retrieval: held-out R@1 %.3f → %.3f; registered %s version %s as @%s", result.r1_before,
             result.r1_after, settings.registered_model, version, settings.alias)
    report.counts.update(model_version=int(version))
    return report.finish()


def _log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=epoch)
    log.info("finetune-retrieval: epoch %d %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

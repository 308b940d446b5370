"""finetune-retrieval (Spark wrapper + MLflow): `selection_labels` → a fine-tuned selector in the registry.

The labels are joined with each clip's current candidates (as the select stage sees them) and its
uniform frames; a label whose pick is no longer among the candidates is skipped and counted. The
examples are written once as a parquet snapshot under `finetune.snapshot_dir` (default
`<paths.root>/selector`)/<run id> and streamed from there by the training loop on the driver (the
driver's GPU when it has one), so the label set need not fit in memory. The clip-hash split holds
out `finetune.val_fraction`. One MLflow run records the training settings as params, the loss per
step and epoch, held-out R@1 before training (`r1_before`, `val_r1` at step 0) and after
(`r1_after`), and registers the model (`finetune.registered_model`, alias `finetune.alias`) with
its signature. A run whose labels, candidates, base model and settings equal a finished run's is
skipped (tag `panda.training_fingerprint`).
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
from panda_spark.spark import content_fingerprint
from panda_spark.splits import held_out_column
from panda_spark.select.finetune import FinetuneParams, parquet_examples, train_selector
from panda_spark.select.registry import ARTIFACT, scorer_spec, signature
from panda_spark.select.scorers import DualEncoder
from panda_spark.select.stage import candidate_sets
from panda_spark.tables import Lakehouse
from panda_spark.tracking import finished_run_with, log_registered_pyfunc, run_tags, start_experiment
from panda_spark.video.frames import encode_jpeg

log = logging.getLogger(__name__)
STAGE = "finetune-retrieval"


def labelled_examples(lake: Lakehouse, val_fraction: float) -> DataFrame:
    """One row per label whose pick resolves: clip_id, captions, chosen (0-based), frames, held_out;
    plus rows with chosen NULL for labels that no longer resolve."""
    captions = F.transform("candidates", lambda c: c.caption)
    by_teacher = F.nullif(F.array_position(F.transform("candidates", lambda c: c.teacher), F.col("chosen_teacher")), F.lit(0))
    by_caption = F.nullif(F.array_position(captions, F.col("chosen_caption")), F.lit(0))
    return (lake.read("selection_labels").join(candidate_sets(lake), "clip_id")
            .join(lake.frames_per_clip(), "clip_id", "left")
            .select("clip_id", captions.alias("captions"), (F.coalesce(by_teacher, by_caption) - 1).alias("chosen"),
                    "frames", held_out_column(val_fraction).alias("held_out")))


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    import mlflow

    report = StageReport(STAGE, run_id)
    settings = cfg.finetune
    spec = _base_selector(cfg)
    lake = Lakehouse(spark, cfg, run_id)
    spark.sparkContext.setJobDescription("finetune-retrieval: resolve labels to candidates")
    examples = labelled_examples(lake, settings.val_fraction)
    usable_rows = F.col("chosen").isNotNull() & (F.size("frames") > 0)
    # a small frame-less summary for counting and fingerprinting; frames are read once, by the snapshot
    summary = examples.select("clip_id", "chosen", "held_out", usable_rows.alias("usable"),
                              F.sha2(F.to_json("captions"), 256).alias("captions_hash")).localCheckpoint(eager=True)
    train_n = summary.filter("usable AND NOT held_out").count()
    val_n = summary.filter("usable AND held_out").count()
    report.counts.update(labels=summary.count(), skipped=summary.filter("NOT usable").count(), train=train_n, val=val_n)
    if not train_n or not val_n:
        raise ConfigError(f"conf key 'finetune.val_fraction': {train_n} training and {val_n} held-out labelled clips "
                          "resolve to current candidates with frames; load more selection_labels "
                          "(panda-spark load-selection-labels) or change the split")
    params = FinetuneParams(num_frames=cfg.select.num_frames, **{
        f.name: getattr(settings, f.name) for f in dataclasses.fields(FinetuneParams) if f.name != "num_frames"})
    fingerprint = _fingerprint(summary.filter("usable"), params, spec.version, settings.val_fraction)
    start_experiment(cfg)
    done = finished_run_with(fingerprint)
    if done:  # same labels, candidates, base model and settings
        log.info("finetune-retrieval: MLflow run %s already trained on these labels; nothing to do", done)
        report.counts.update(trained=0)
        return report.finish(rows_in=report.counts["labels"], rows_out=0)

    snapshot = f"{(settings.snapshot_dir or cfg.paths.root.rstrip('/') + '/selector').rstrip('/')}/{run_id}"
    spark.sparkContext.setJobDescription("finetune-retrieval: labelled examples snapshot")
    examples.filter(usable_rows).repartition(max(1, (train_n + val_n) // 512)).write.mode("overwrite").parquet(snapshot)
    encoder = DualEncoder(spec.location, cache_dir=cfg.model_cache_dir, revision=spec.revision,
                          trust_remote_code=cfg.models.trust_remote_code, device=settings.device, dtype="float32")
    tags = run_tags(run_id, STAGE, **{"panda.training_fingerprint": fingerprint})
    with mlflow.start_run(run_name=f"{STAGE} {run_id[:8]}", tags=tags):
        mlflow.log_params({**dataclasses.asdict(params), "base_model": spec.name, "device": encoder.device,
                           "val_fraction": settings.val_fraction, "train_clips": train_n, "val_clips": val_n,
                           "skipped_labels": report.counts["skipped"]})
        result = train_selector(
            encoder, parquet_examples(snapshot, params.num_frames, held_out=False, seed=params.seed),
            parquet_examples(snapshot, params.num_frames, held_out=True, seed=params.seed), params,
            on_epoch=_log_epoch, on_step=lambda step, metrics: mlflow.log_metric("step_loss", metrics["loss"], step=step))
        mlflow.log_metrics({"r1_before": result.r1_before, "r1_after": result.r1_after})
        version = _register(encoder, params.num_frames, settings.registered_model, settings.alias,
                            parquet_examples(snapshot, params.num_frames, held_out=True, seed=params.seed))
    storage.remove_tree(snapshot)
    log.info("finetune-retrieval: held-out R@1 %.3f → %.3f; registered %s version %s as @%s", result.r1_before,
             result.r1_after, settings.registered_model, version, settings.alias)
    report.counts.update(trained=1, model_version=int(version))
    return report.finish(rows_in=report.counts["labels"], rows_out=train_n + val_n)


def _base_selector(cfg: Config):
    base = cfg.finetune.base_model or cfg.select.scorer
    spec = scorer_spec(cfg, base)
    if not spec.needs_frames:
        raise ConfigError(f"conf key 'finetune.base_model': expected a dual encoder to fine-tune (a CLIP/SigLIP "
                          f"checkpoint or models:/name@alias), got {base!r}")
    return spec


def _fingerprint(usable: DataFrame, params: FinetuneParams, base_version: str, val_fraction: float) -> str:
    """What a training run depends on: every usable label's clip, pick and candidates, the base model
    and the settings."""
    return content_fingerprint(usable.select("clip_id", "chosen", "held_out", "captions_hash"),
                               [dataclasses.asdict(params), base_version, val_fraction])


def _register(encoder: DualEncoder, num_frames: int, name: str, alias: str, held_out) -> str:
    """Save the encoder, log it as the pyfunc selector (one held-out clip as the input example),
    register it and point `alias` at the new version; the version."""
    import mlflow

    first = next(iter(held_out(0)))
    with tempfile.TemporaryDirectory() as tmp:
        saved = f"{tmp}/{ARTIFACT}"  # the directory's name is the artifact's path in the model
        encoder.model.save_pretrained(saved)
        encoder.processor.save_pretrained(saved)
        example = pd.DataFrame({"frames": [[encode_jpeg(f) for f in first.frames]], "captions": [first.captions]})
        version = log_registered_pyfunc("selector", "panda_spark.select.selector_pyfunc", {ARTIFACT: saved},
                                        signature(), example, name, {"num_frames": num_frames})
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return version


def _log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=epoch)
    log.info("finetune-retrieval: epoch %d %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

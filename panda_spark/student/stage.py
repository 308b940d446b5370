"""train-student (Spark wrapper): `captions` + `clip_frames` + clip text → a registered student.

1. Rows: every clip with a selected caption (only good matches with `student.good_match_only`),
   its uniform frames, subtitles, title and description become numeric rows in a `mapInPandas`
   task (`student_rows`: frozen image encoder features, token ids; the encoder resident per worker,
   on the task's GPU on clusters). A clip without frames goes to `errors`.
2. The rows are handed to petastorm (`make_spark_converter`, at least one file per process) and
   trained by TorchDistributor (`student.num_processes`, `local_mode`, `use_gpu`) with
   :func:`panda_spark.student.train.train_fn`; the clip-hash split holds out `val_fraction`.
3. The driver opens one MLflow run (the whole conf as params), rank 0 logs into it, and the saved
   student is logged as a pyfunc with a signature and registered under `student.registered_model`
   (alias `student.alias`). Training on the same inputs and settings again is skipped, checked
   before any feature is computed (a fingerprint of the input rows and stored frame hashes); a
   job that died resumes from its last epoch checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import contextlib
import logging
import sys
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.spark import content_fingerprint
from panda_spark.splits import held_out_column
from panda_spark.student.data import NUMERIC_COLUMNS, PetastormLoader, row_schema, student_rows
from panda_spark.student.model import StudentConfig
from panda_spark.tables import ROW_HASH, Lakehouse
from panda_spark.waves import waves
from panda_spark.tiny_models import resolve_model

log = logging.getLogger(__name__)


class _ExpectedPetastormNotices(logging.Filter):
    """petastorm's converter warns, on every run, of what this stage does on purpose: float64
    columns cast to float32 (the model's dtype) and small Parquet files (one per process at least)."""

    EXPECTED = ("Converting floating-point columns to ", "The median size ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.EXPECTED)


_PETASTORM_NOTICES = _ExpectedPetastormNotices()
STAGE = "train-student"
FEATURES_VERSION = "student-rows-2"  # 2: fields as the released prompt's lines, left-cut


def clip_inputs(lake: Lakehouse, clips: DataFrame, frames: bool = True, keep_video_id: bool = False) -> DataFrame:
    """`clips` (clip_id, ...) with what the student reads: start_s, end_s, the video's subtitle cues,
    title and description, and (with `frames`) the clip's uniform frames (NULL when it has none).
    Clips of imported videos have no frames and are not training clips."""
    known = lake.visible_clips(imported=False).select("clip_id", "video_id", "start_s", "end_s")
    inputs = clips.join(known, "clip_id").localCheckpoint(eager=True)
    videos = lake.rows_of_videos("videos", inputs).select(
        "video_id", F.col("subtitles").alias("cues"), "title", "description")
    inputs = inputs.join(videos, "video_id", "left")
    if frames:
        inputs = inputs.join(lake.frames_for(inputs), "clip_id", "left")
    return inputs if keep_video_id else inputs.drop("video_id")


def training_inputs(lake: Lakehouse, cfg: Config) -> DataFrame:
    """One row per training clip (a selected caption; only good matches with
    `student.good_match_only`): clip_id, video_id, caption, held_out, its texts, and `inputs_hash`,
    the hash of everything its training row is built from (caption, texts, times and the stored
    hashes of its uniform frames: no frame is read)."""
    s = cfg.student
    captions = lake.read("captions").filter(F.col("caption").isNotNull())
    if s.good_match_only:
        captions = captions.filter("good_match")
    clips = clip_inputs(lake, captions.select("clip_id", "caption"), frames=False, keep_video_id=True)
    frames = (lake.rows_of_videos("clip_frames", clips).filter(F.col("role") == "uniform")
              .join(clips, "clip_id", "left_semi").groupBy("clip_id")
              .agg(F.sha2(F.to_json(F.array_sort(F.collect_list(F.struct("frame_idx", ROW_HASH)))), 256)
                   .alias("frames_hash")))
    hashed = F.sha2(F.to_json(F.struct("caption", "cues", "title", "description", "start_s", "end_s", "frames_hash")), 256)
    return (clips.join(frames, "clip_id", "left").withColumn("inputs_hash", hashed).drop("frames_hash")
            .withColumn("held_out", held_out_column(s.val_fraction)))


def features_version(config: StudentConfig) -> str:
    """What decides a clip's training row besides its inputs: the encoder, tokenizer and lengths."""
    settings = [FEATURES_VERSION, config.vision_model, config.language_model, config.num_frames,
                config.max_text_tokens, config.max_caption_tokens]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def student_config(cfg: Config, vision_dim: int) -> StudentConfig:
    s = cfg.student
    return StudentConfig(
        vision_model=resolve_model(s.vision_model, cfg.model_cache_dir),
        language_model=resolve_model(s.language_model, cfg.model_cache_dir), num_frames=s.num_frames,
        vision_dim=vision_dim, video_queries=s.video_queries, text_queries=s.text_queries, hidden=s.hidden,
        layers=s.layers, heads=s.heads, max_text_tokens=s.max_text_tokens, max_caption_tokens=s.max_caption_tokens,
        subtitles_dropout=s.subtitles_dropout, metadata_dropout=s.metadata_dropout,
        train_language_model=s.train_language_model)


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    import mlflow
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    logging.getLogger("petastorm.spark.spark_dataset_converter").addFilter(_PETASTORM_NOTICES)
    from pyspark.ml.torch.distributor import TorchDistributor

    from panda_spark.student.infer import ARTIFACT, signature
    from transformers import AutoConfig

    from panda_spark.student.model import Decoding, feature_dim
    from panda_spark.student.train import TrainJob, train_fn
    from panda_spark.tracking import finished_run_with, log_registered_pyfunc, run_tags, start_experiment

    report = StageReport(STAGE, run_id)
    s = cfg.student
    lake = Lakehouse(spark, cfg, run_id)
    vision = resolve_model(s.vision_model, cfg.model_cache_dir)
    config = student_config(cfg, vision_dim=feature_dim(AutoConfig.from_pretrained(vision)))
    # What training would read, fingerprinted before any feature is computed: a rerun on the same
    # clips, captions, texts, frames and settings costs a scan of narrow columns.
    inputs = training_inputs(lake, cfg).localCheckpoint(eager=True)
    fingerprint = content_fingerprint(inputs.select("clip_id", "held_out", "inputs_hash"), dataclasses.asdict(s))
    experiment_id = start_experiment(cfg)
    done = finished_run_with(fingerprint)
    if done:
        log.info("train-student: MLflow run %s already trained on these rows and settings; nothing to do", done)
        report.counts.update(trained=0)
        return report.finish(rows_in=0, rows_out=0)

    version = features_version(config)
    errored, built = build_rows(lake, cfg, config, inputs, version)
    rows = (lake.read("student_rows").filter(F.col("features_version") == version).drop("caption")
            .join(inputs.select("clip_id", "inputs_hash", "caption", "held_out"), ["clip_id", "inputs_hash"]))
    sizes = {r.held_out: r["count"] for r in rows.groupBy("held_out").count().collect()}  # one pass
    train_n, val_n = sizes.get(False, 0), sizes.get(True, 0)
    report.counts.update(train=train_n, val=val_n, built=built, errored=errored)
    if train_n < s.num_processes or not val_n:
        raise ConfigError(f"conf key 'student.val_fraction': {train_n} training and {val_n} held-out clips with "
                          f"captions and frames; train-student needs at least student.num_processes="
                          f"{s.num_processes} training clips and one held-out clip (run select first)")

    cache = s.cache_url or (cfg.root / "petastorm").resolve().as_uri()
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache)
    numeric = list(NUMERIC_COLUMNS)
    # petastorm shards by file: at least one file per process
    train_rows = rows.filter("NOT held_out").select(numeric).repartition(max(s.num_processes, train_n // 2048))
    val_rows = rows.filter("held_out").select(numeric).repartition(max(s.num_processes, val_n // 2048))
    train_converter, val_converter = make_spark_converter(train_rows), make_spark_converter(val_rows)
    eval_rows = (rows.filter("held_out").orderBy("clip_id").limit(s.eval_clips)
                 .select("clip_id", "caption", "held_out", *numeric).toPandas())
    checkpoints = f"{(s.checkpoint_dir or cfg.paths.root.rstrip('/') + '/student/checkpoints').rstrip('/')}/{fingerprint}"
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"{STAGE} {run_id[:8]}",
                            tags=run_tags(run_id, STAGE, **{"panda.training_fingerprint": fingerprint}))
    for key, value in _flatten(dataclasses.asdict(cfg)).items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    job = TrainJob(config=config, train=PetastormLoader(train_converter, s.seed),
                   val=PetastormLoader(val_converter, s.seed), eval_rows=eval_rows, epochs=s.epochs,
                   batch_size=s.batch_size, learning_rate=s.learning_rate, weight_decay=s.weight_decay,
                   seed=s.seed, use_gpu=s.use_gpu, tracking_uri=cfg.mlflow_tracking_uri,
                   mlflow_run_id=run.info.run_id, checkpoint_dir=checkpoints, output_dir=f"{checkpoints}/{ARTIFACT}",
                   max_new_tokens=s.max_new_tokens, decoding=Decoding.of(s))
    spark.sparkContext.setJobDescription(f"train-student: TorchDistributor x{s.num_processes}")
    # Local mode copies the training processes' output onto the driver's stdout: stderr, with the
    # other logs, so that stdout holds the stage summary only.
    with contextlib.redirect_stdout(sys.stderr):
        result = TorchDistributor(num_processes=s.num_processes, local_mode=s.local_mode,
                                  use_gpu=s.use_gpu).run(train_fn, job)
    with mlflow.start_run(run_id=run.info.run_id):
        example = _example(lake, eval_rows["clip_id"].iloc[0], s.num_frames)
        version = log_registered_pyfunc("student", "panda_spark.student.student_pyfunc", {ARTIFACT: job.output_dir},
                                        signature(), example, s.registered_model)
    client.set_registered_model_alias(s.registered_model, s.alias, version)
    train_converter.delete()
    val_converter.delete()
    storage.remove_tree(checkpoints)
    log.info("train-student: %s; registered %s version %s as @%s", result, s.registered_model, version, s.alias)
    report.counts.update(trained=1, model_version=int(version))
    return report.finish(rows_in=train_n + val_n + errored, rows_out=train_n + val_n, errored=errored)


def _example(lake: Lakehouse, clip_id: str, num_frames: int):
    """The pyfunc's input example: one held-out clip's stored frames and texts."""
    import pandas as pd

    frames = (lake.read("clip_frames").filter((F.col("clip_id") == clip_id) & (F.col("role") == "uniform"))
              .orderBy("frame_idx").select("jpeg").collect())
    return pd.DataFrame({"frames": [[bytes(r.jpeg) for r in frames][:num_frames]], "metadata": [""], "subtitles": [""]})


def build_rows(lake: Lakehouse, cfg: Config, config: StudentConfig, inputs: DataFrame, version: str) -> tuple[int, int]:
    """Build the `student_rows` of the clips in `inputs` that have none for these inputs and
    `version`, in waves of `student.wave_clips` (frozen encoder features, token ids), each wave
    committed (errors first, the rows last). Returns (errored, built)."""
    s = cfg.student
    done = lake.read("student_rows").filter(F.col("features_version") == version).select("clip_id", "inputs_hash")
    pending = inputs.join(done, ["clip_id", "inputs_hash"], "left_anti")
    build = partial(student_rows, vision_model=config.vision_model, language_model=config.language_model,
                    num_frames=s.num_frames, max_text_tokens=s.max_text_tokens, max_caption_tokens=s.max_caption_tokens)
    errored = built = 0
    for wave in waves(pending, "clip_id", s.wave_clips, STAGE, "clips"):
        lake.spark.sparkContext.setJobDescription(f"train-student: wave {wave.index + 1}: frame features and token ids")
        todo = pending.join(wave.keys, "clip_id", "left_semi")
        todo = todo.join(lake.frames_for(todo), "clip_id", "left").drop("video_id", "inputs_hash")
        rows = (todo.repartition(lake.spark.sparkContext.defaultParallelism).mapInPandas(build, row_schema())
                .localCheckpoint(eager=True))
        ok = rows.filter("status = 'ok'")
        errored += lake.record_errors(STAGE, rows.filter("status = 'error'").select(
            F.col("clip_id").alias("key"), "error_class", "message",
            F.to_json(F.struct("clip_id")).alias("input_snapshot"))).total
        lake.clear_errors(STAGE, ok.select(F.col("clip_id").alias("key")))
        merged = lake.merge("student_rows", ok.join(pending.select("clip_id", "inputs_hash"), "clip_id")
                            .withColumn("features_version", F.lit(version)))
        built += merged.inserted + merged.updated
        wave.done(rows.count())
    return errored, built


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

"""Split stage (Spark wrapper): `videos` → `shots`, `clips`, `clip_frames`; failures → `errors`.

One `mapInPandas` task per small batch of videos (`split_batch`) decodes each video once and
returns its shots, clips and clip frames as nested rows; the driver writes each table with a
replacing MERGE (a re-split video's old rows go). Incremental: a video whose shots carry the
current parameter hash is skipped. Resources: one decoder and at most a few hundred 224² frames
in memory per task; the colour/layout embedder runs on CPU, a transformers embedder on the task's
GPU when the cluster schedules GPUs (`split.device: auto`), loaded once per Python worker.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import Iterator

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config, SplitSettings
from panda_spark.runs import StageReport
from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder, ImageEmbedder
from panda_spark.split.hf_embedder import hf_embedder_name
from panda_spark.split.scan import ScanParams
from panda_spark.split.stitching import StitchParams, stitch_params
from panda_spark.tables import TABLES, Lakehouse, is_imported
from panda_spark.video.clip_writer import write_clips
from panda_spark.video.decode import decode_failure

STAGE = "split"
_PRODUCED = ("shots", "clips", "clip_frames")
# Columns the driver adds, not the per-video task: audit columns, and the content hash of the
# video file that was split (a changed file is split again).
_FILLED_BY_STAGE = ("run_id", "created_at", "updated_at", "source_hash")


def _nested(table: str) -> str:
    cols = ", ".join(f"{f.name}: {f.dataType.simpleString()}" for f in TABLES[table].schema
                     if f.name not in _FILLED_BY_STAGE)
    return f"ARRAY<STRUCT<{cols}>>"


def result_schema() -> str:
    """One row per video: status, and the video's rows of each produced table, nested."""
    nested = ", ".join(f"{t} {_nested(t)}" for t in _PRODUCED)
    return f"video_id STRING, content_hash STRING, status STRING, error_class STRING, message STRING, {nested}"


def split_params(settings: SplitSettings) -> SplitParams:
    """Conf → core parameters; empty stitching keys take the preset's value."""
    overrides = {f.name: getattr(settings, f.name) for f in fields(StitchParams)
                 if getattr(settings, f.name, None) is not None}
    scan = ScanParams(
        threshold=settings.threshold, min_scene_len=settings.min_scene_len,
        analysis_width=settings.analysis_width, analysis_height=settings.analysis_height,
        max_shot_s=settings.max_shot_s, forced_step_s=settings.forced_step_s, sample_fps=settings.sample_fps, sample_short_side=settings.frame_size,
    )
    return SplitParams(settings.preset, scan, stitch_params(settings.preset, **overrides), settings.uniform_frames,
                       materialize_clips=settings.materialize_clips)


@dataclass(frozen=True)
class EmbedderSpec:
    """What a worker needs to build the embedder (pickled into the UDF, not the model itself)."""

    name: str
    revision: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, cfg: Config) -> "EmbedderSpec":
        s = cfg.split
        return cls(s.embedder, s.embedder_revision, cfg.model_cache_dir, s.device, s.dtype, s.embed_batch_size,
                   cfg.models.trust_remote_code)


_EMBEDDERS: dict[EmbedderSpec, ImageEmbedder] = {}  # per Python worker: models load once, not per batch


def load_embedder(spec: EmbedderSpec) -> ImageEmbedder:
    if spec not in _EMBEDDERS:
        if spec.name == "color-layout":
            _EMBEDDERS[spec] = ColorLayoutEmbedder()
        else:
            from panda_spark.split.hf_embedder import TransformersImageEmbedder  # imports torch

            _EMBEDDERS[spec] = TransformersImageEmbedder(
                spec.name, spec.revision, spec.cache_dir, spec.device, spec.dtype, spec.batch_size,
                spec.trust_remote_code)
    return _EMBEDDERS[spec]


def split_batch(batches: Iterator[pd.DataFrame], embedder: EmbedderSpec, params: SplitParams,
                clip_store: str | None = None) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: rows (video_id, content_hash, path) in, one `result_schema()` row per video out."""
    model = load_embedder(embedder)
    for batch in batches:
        out = []
        for video_id, content_hash, path in zip(batch["video_id"], batch["content_hash"], batch["path"]):
            row = {"video_id": video_id, "content_hash": content_hash, "status": "split", "error_class": None, "message": None,
                   **{table: [] for table in _PRODUCED}}
            try:
                with storage.open_binary(path) as fh:
                    result = split_video(video_id, fh, model, params)
                if clip_store:
                    _materialize(path, result.clips, clip_store)
                row.update(shots=result.shots, clips=result.clips, clip_frames=result.clip_frames)
            except Exception as exc:  # one unreadable video must not fail the stage
                error_class, message = decode_failure(exc)
                row.update(status="error", error_class=error_class, message=message)
            out.append(row)
        yield pd.DataFrame(out, columns=["video_id", "content_hash", "status", "error_class", "message", *_PRODUCED])


def embedder_version(spec: EmbedderSpec) -> str:
    """The embedder's identity for the parameter hash, known without loading a model."""
    return ColorLayoutEmbedder.name if spec.name == "color-layout" else hf_embedder_name(spec.name, spec.revision)


def _materialize(path: str, clips: list[dict], clip_store: str) -> None:
    """Write the clips' mp4s (named by clip id, never by the video id from the manifest)."""
    out_paths = {c["clip_id"]: f"{clip_store}/{c['clip_id'][:2]}/{c['clip_id']}.mp4" for c in clips}
    with storage.open_binary(path) as fh:
        write_clips(fh, {c["clip_id"]: (c["start_frame"], c["end_frame"]) for c in clips}, out_paths)
    for clip in clips:
        clip["clip_path"] = out_paths[clip["clip_id"]]


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    params = split_params(cfg.split)
    embedder = EmbedderSpec.from_config(cfg)
    params_hash = params.hash(embedder_version(embedder))
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"split videos (params {params_hash})")

    done = (lake.read("shots").filter(F.col("params_hash") == params_hash)
            .select("video_id", F.col("source_hash").alias("content_hash")).distinct())
    # imported videos (import-panda-csv) have a URL, no file to decode
    videos = lake.read("videos").filter(~is_imported()).select("video_id", "content_hash", "path")
    todo = videos.join(done, ["video_id", "content_hash"], "left_anti")
    skipped = videos.join(done, ["video_id", "content_hash"], "left_semi").count()
    partitions = cfg.split.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1")  # one video per batch
    spark.sparkContext.setJobDescription("split: decode, detect, stitch")
    results = todo.repartition(partitions).mapInPandas(
        partial(split_batch, embedder=embedder, params=params,
                clip_store=cfg.clip_store_dir if params.materialize_clips else None),
        result_schema(),
    ).localCheckpoint(eager=True)

    ok = results.filter("status = 'split'")
    counts = {}
    for table in _PRODUCED:
        rows = ok.select(F.col("content_hash").alias("source_hash"), F.explode(table).alias("r"))
        rows = rows.select("r.*", "source_hash")
        counts[table] = lake.replace(table, rows, scope=ok.select("video_id")).total
    errors = results.filter("status = 'error'").select(
        F.col("video_id").alias("key"), "error_class", "message",
        F.to_json(F.struct("video_id")).alias("input_snapshot"),
    )
    errored = lake.record_errors(STAGE, errors).total
    lake.clear_errors(STAGE, ok.select(F.col("video_id").alias("key")))
    report.counts = {"videos": ok.count(), "skipped": skipped, **counts, "errored": errored}
    return report.finish(rows_in=results.count(), rows_out=counts["clips"], errored=errored)


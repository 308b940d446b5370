"""Split stage (Spark wrapper): `videos` → `shots`, `clips`, `clip_frames`; failures → `errors`.

One `mapInPandas` task per small batch of videos (`split_batch`) decodes each video once and
returns its shots, clips and clip frames as nested rows. Videos go in waves of `split.wave_videos`;
each wave is committed on its own (:func:`commit_wave`): replacing MERGEs (a re-split video's old
rows go, and so does everything downstream of a clip it no longer has), then the videos' `commits`
rows. Incremental: a video committed with the current parameter hash and file hash is skipped.
A video split into no clip is committed too, with a `NoClips` row in `errors` that counts what
dropped its shots (cleared once a later split yields clips).
Resources: one decoder per task; sampled 224² frames are held only while a clip may still use
them (about the open event's length, not the video's: `bench/split_memory.py`); the colour/layout
embedder runs on CPU, a transformers embedder on the task's GPU when the cluster schedules GPUs
(`split.device: auto`), loaded once per Python worker.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import partial
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import STITCH_THRESHOLD_KEYS, Config, SplitSettings
from panda_spark.dataset.panda70m import IMPORT_VERSION
from panda_spark.dataset.panda70m import TEACHER as IMPORTED_TEACHER
from panda_spark.errors import ClipsPastEnd, ConfigError, NoClips
from panda_spark.runs import StageReport
from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder, ImageEmbedder
from panda_spark.split.hf_embedder import hf_embedder_name
from panda_spark.split.published import PublishedClip, cut_published, published_hash
from panda_spark.split.scan import ScanParams
from panda_spark.split.stitching import StitchParams, stitch_params
from panda_spark.tables import TABLES, Lakehouse, has_file, is_imported
from panda_spark.video.clip_writer import write_clips
from panda_spark.video.decode import decode_failure
from panda_spark.waves import waves

log = logging.getLogger(__name__)
STAGE = "split"
_PRODUCED = ("shots", "clip_frames", "clips")  # write order: clips, which readers start from, last


def _nested(table: str) -> str:
    """The table's columns that the per-video task fills (the driver adds the file's hash)."""
    types = {f.name: f.dataType.simpleString() for f in TABLES[table].schema}
    cols = ", ".join(f"{c}: {types[c]}" for c in TABLES[table].domain_columns if c != "source_hash")
    return f"ARRAY<STRUCT<{cols}>>"


def result_schema() -> str:
    """One row per video: status, and the video's rows of each produced table, nested (a published
    cut has no shots: the imported ones stay)."""
    nested = ", ".join(f"{t} {_nested(t)}" for t in _PRODUCED)
    return (f"video_id STRING, content_hash STRING, published BOOLEAN, status STRING, error_class STRING, "
            f"message STRING, {nested}")


def split_params(settings: SplitSettings) -> SplitParams:
    """Conf → core parameters. A stitching key set in the conf wins; else the embedder's calibrated
    value (`split.embedder_thresholds[split.embedder]`); else the preset's (ImageBind-scale) value."""
    calibrated = settings.embedder_thresholds.get(settings.embedder, {})
    explicit = {f.name: getattr(settings, f.name) for f in fields(StitchParams)
                if getattr(settings, f.name, None) is not None}
    if settings.embedder != "color-layout" and not calibrated and set(STITCH_THRESHOLD_KEYS) - set(explicit):
        # color-layout was designed for these values; a model's distances run on its own scale
        log.warning("split: no split.embedder_thresholds for %s: its stitching uses ImageBind's thresholds "
                    "(calibrate with bench/embedder_calibration.py --embedder %s)", settings.embedder, settings.embedder)
    overrides = {**calibrated, **explicit}
    scan = ScanParams(
        threshold=settings.threshold, min_scene_len=settings.min_scene_len, flash_filter=settings.flash_filter,
        analysis_size=settings.analysis_size, analysis_width=settings.analysis_width,
        analysis_height=settings.analysis_height,
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
    """mapInPandas adapter: rows (video_id, content_hash, path, published) in, one `result_schema()`
    row per video out. `published`: NULL to detect, else the video's `clips` rows to cut at their
    published times (:func:`cut_at_published`)."""
    model = load_embedder(embedder)
    for batch in batches:
        out = []
        for video_id, content_hash, path, published in zip(batch["video_id"], batch["content_hash"], batch["path"],
                                                           batch["published"]):
            row = {"video_id": video_id, "content_hash": content_hash, "published": published is not None,
                   "status": "split", "error_class": None, "message": None, **{table: [] for table in _PRODUCED}}
            try:
                if published is None:
                    with storage.open_binary(path) as fh:
                        result = split_video(video_id, fh, model, params)
                    clips, frames, error_class, message = result.clips, result.clip_frames, NoClips, result.no_clips
                    row["shots"] = result.shots
                else:
                    clips, frames, message = cut_at_published(video_id, path, list(published), params)
                    error_class = ClipsPastEnd
                if clip_store:
                    _materialize(path, [c for c in clips if c["start_frame"] is not None], clip_store)
                row.update(clips=clips, clip_frames=frames)
                if message:  # split (and committed: splitting again gives the same), but said why
                    row.update(error_class=error_class.error_class, message=message)
            except Exception as exc:  # one unreadable video must not fail the stage
                error_class, message = decode_failure(exc)
                row.update(status="error", error_class=error_class, message=message)
            out.append(row)
        yield pd.DataFrame(out, columns=["video_id", "content_hash", "published", "status", "error_class", "message",
                                         *_PRODUCED])


def cut_at_published(video_id: str, path: str, clips: list[dict], params: SplitParams
                     ) -> tuple[list[dict], list[dict], str | None]:
    """A downloaded Panda-70M video's `clips` rows with their frame ranges found (the published
    times, ids and shots kept), their `clip_frames` rows, and why some or all clips got no frames
    (None when all did). A clip outside the file keeps its row without a range."""
    with storage.open_binary(path) as fh:
        cut = cut_published(video_id, fh, [PublishedClip(c["clip_id"], c["start_s"], c["end_s"]) for c in clips],
                            params)
    version = published_hash(params)
    rows = []
    for clip in clips:
        start, end = cut.ranges.get(clip["clip_id"], (None, None))
        rows.append({**clip, "start_frame": start, "end_frame": end, "params_hash": version, "clip_path": None})
    missing = None
    if cut.out_of_range:
        missing = (f"{len(cut.out_of_range)} of {len(clips)} published clips lie past the end of the file "
                   f"({cut.duration_s:.3f} s): {', '.join(cut.out_of_range[:5])}"
                   + (", ..." if len(cut.out_of_range) > 5 else ""))
    return rows, cut.clip_frames, missing


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


def run(spark: SparkSession, cfg: Config, run_id: str, mode: str | None = None) -> StageReport:
    """Split the videos not done yet in waves. `mode` (default `split.mode`): published — imported
    Panda-70M videos with a file are cut at their published times (their own parameter hash), the
    others detected; detect — every video with a file is detected."""
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    storage.use_options(cfg.paths.storage_options)
    mode = mode or cfg.split.mode
    if mode not in ("published", "detect"):
        raise ConfigError(f"split --mode: expected 'published' or 'detect', got {mode!r}")
    params = split_params(cfg.split)
    embedder = EmbedderSpec.from_config(cfg)
    params_hash, cut_hash = params.hash(embedder_version(embedder)), published_hash(params)
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"split videos ({mode}; params {params_hash})")

    # imported videos not downloaded yet have a URL, no file to decode
    videos = lake.read("videos").filter(has_file()).select("video_id", "content_hash", "path",
                                                           is_imported().alias("_imported"))
    cut = F.col("_imported") if mode == "published" else F.lit(False)
    version = F.when(cut, F.lit(cut_hash)).otherwise(F.lit(params_hash))
    done = lake.committed(STAGE).select(F.col("key").alias("video_id"), F.col("input_hash").alias("content_hash"),
                                        F.col("version").alias("_version"))
    videos = videos.join(done, ["video_id", "content_hash"], "left").withColumn(
        "_done", F.coalesce(F.col("_version") == version, F.lit(False)))
    skipped = videos.filter("_done").count()
    to_cut = videos.filter(cut & ~F.col("_done")).select("video_id")
    published = (lake.read("clips").join(to_cut, "video_id", "left_semi").groupBy("video_id").agg(F.collect_list(
        F.struct(*[c for c in TABLES["clips"].domain_columns if c != "source_hash"])).alias("published")))
    todo = (videos.filter(~F.col("_done")).join(published, "video_id", "left")
            .select("video_id", "content_hash", "path", "published"))
    partitions = cfg.split.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1")  # one video per batch
    split = storage.in_tasks(partial(split_batch, embedder=embedder, params=params,
                                     clip_store=cfg.clip_store_dir if params.materialize_clips else None),
                             cfg.paths.storage_options)
    totals = dict.fromkeys(("videos", "published", "rows_in", *_PRODUCED, "no_clips", "errored"), 0)
    for wave in waves(todo, "video_id", cfg.split.wave_videos, STAGE, "videos"):
        spark.sparkContext.setJobDescription(f"split: wave {wave.index + 1}: decode, detect, stitch")
        results = (todo.join(wave.keys, "video_id", "left_semi").repartition(partitions)
                   .mapInPandas(split, result_schema()).localCheckpoint(eager=True))
        written = commit_wave(lake, results, params_hash, cut_hash)
        for name, n in written.items():
            totals[name] += n
        wave.done(written["rows_in"])
    report.counts = {"videos": totals["videos"], "published": totals["published"], "skipped": skipped,
                     **{t: totals[t] for t in _PRODUCED}, "no_clips": totals["no_clips"], "errored": totals["errored"]}
    return report.finish(rows_in=totals["rows_in"], rows_out=totals["clips"], errored=totals["errored"])


def commit_wave(lake: Lakehouse, results: DataFrame, params_hash: str, cut_hash: str) -> dict[str, int]:
    """Write one wave of split results (rows of `result_schema()`), in an order that makes each
    video's split all-or-nothing for readers and reruns:

    1. the videos' earlier split (if any) stops being committed: readers no longer see its clips;
    2. errors of the failed videos recorded, and the `NoClips` / `ClipsPastEnd` rows of the videos
       split without (some) clips (they are committed like the others); the errors of the videos
       split into clips cleared;
    3. rows of clips that the new split no longer has are deleted everywhere (frames, captions,
       labels, their errors), so that no row refers to a clip `clips` lacks;
    4. shots (of detected videos: a published cut keeps the imported ones), clip_frames and clips
       replaced; a published cut's published captions join the candidate captions (select then
       chooses between them and the teachers');
    5. the `commits` rows, last: only now is a video done for these parameters.
    A crash after any step leaves the video uncommitted; the rerun splits it again and writes the
    same rows (ids and frames are deterministic)."""
    ok = results.filter("status = 'split'")
    scope = ok.select("video_id")
    resplit = lake.committed(STAGE).join(scope.withColumnRenamed("video_id", "key"), "key", "left_semi")
    lake.delete("commits", resplit.withColumn("stage", F.lit(STAGE)))
    errors = results.filter("error_class IS NOT NULL").select(
        F.col("video_id").alias("key"), "error_class", "message",
        F.to_json(F.struct("video_id")).alias("input_snapshot"),
    )
    lake.record_errors(STAGE, errors)
    lake.clear_errors(STAGE, ok.filter("error_class IS NULL").select(F.col("video_id").alias("key")))
    new_clips = ok.select(F.explode("clips.clip_id").alias("clip_id"))
    lake.remove_clips(lake.read("clips").join(scope, "video_id", "left_semi").join(new_clips, "clip_id", "left_anti"))
    counts = {}
    for table in _PRODUCED:
        rows = ok.select(F.col("content_hash").alias("source_hash"), F.explode(table).alias("r"))
        rows = rows.select("r.*", "source_hash")
        counts[table] = lake.replace(table, rows, scope=ok.filter(~F.col("published")).select("video_id")
                                     if table == "shots" else scope).total
    published = ok.filter("published").select(F.explode("clips.clip_id").alias("clip_id"))
    lake.merge("candidate_captions", lake.complete("candidate_captions", published_candidates(lake, published)))
    lake.commit(STAGE, ok.select(
        F.col("video_id").alias("key"), F.when(F.col("published"), F.lit(cut_hash)).otherwise(F.lit(params_hash))
        .alias("version"), F.col("content_hash").alias("input_hash"),
        F.create_map(*[x for t in _PRODUCED for x in (F.lit(t), F.size(t).cast("bigint"))]).alias("outputs")))
    return {"videos": ok.count(), "published": ok.filter("published").count(), "rows_in": results.count(), **counts,
            "no_clips": ok.filter(F.col("error_class") == NoClips.error_class).count(),
            "errored": results.filter("status = 'error'").count()}


def published_candidates(lake: Lakehouse, clip_ids: DataFrame) -> DataFrame:
    """`candidate_captions` rows of the published captions of `clip_ids` (teacher panda70m, as
    import-panda-csv stored them in `captions`; once select has replaced one there, its candidate
    row from the first cut is what remains)."""
    return (lake.read("captions").join(clip_ids, "clip_id", "left_semi")
            .filter((F.col("teacher") == F.lit(IMPORTED_TEACHER)) & (F.col("teacher_version") == F.lit(IMPORT_VERSION)))
            .select("clip_id", "teacher", "teacher_version", F.array(F.lit("published")).alias("inputs"), "caption",
                    F.lit(False).alias("degenerate")))

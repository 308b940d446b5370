"""Typed configuration: YAML file + `--set dotted.key=value` overrides, validated before Spark starts.

The dataclass defaults *are* the embedded default (`conf/local.yaml` spells them out). A conf file
only names what it changes. Every key is checked: an unknown key or a value of the wrong form
raises :class:`ConfigError` naming the key and the expected form.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from panda_spark.errors import ConfigError
from panda_spark.text.clip_text import CAPTION_FIELD


def _spec(minimum: float | None = None) -> dict:
    return {"min": minimum}


@dataclass
class GpuSettings:
    # GPU scheduling the GPU cluster is created with (databricks.yml, deploy/emr): GPUs per
    # executor (spark.executor.resource.gpu.amount), per task unless a stage's resource profile
    # asks otherwise (spark.task.resource.gpu.amount), and the script that finds them on YARN /
    # standalone nodes (spark.executor.resource.gpu.discoveryScript). In cluster mode a GPU stage
    # checks them against the running session. 0: a CPU-only cluster.
    executor_gpus: int = field(default=0, metadata=_spec(minimum=0))
    task_gpus: float = field(default=0.0, metadata=_spec(minimum=0))
    discovery_script: str | None = None


@dataclass
class SparkSettings:
    # embedded: this process starts local Spark with Delta and a warehouse under paths.root.
    # cluster: use the session spark-submit / Databricks / EMR provides; never fetch jars.
    mode: Literal["embedded", "cluster"] = "embedded"
    master: str = "local[*]"
    app_name: str = "panda-spark"
    shuffle_partitions: int = field(default=4, metadata=_spec(minimum=1))
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    # Extra Spark settings, applied when the embedded session is built (e.g. spark.driver.memory).
    conf: dict[str, str] = field(default_factory=lambda: {"spark.driver.memory": "4g"})
    # Rows per Arrow batch of the tasks whose rows carry frames (caption, select, student rows):
    # one batch is one pandas frame in a Python worker (spark.sql.execution.arrow.maxRecordsPerBatch).
    arrow_batch_rows: int = field(default=64, metadata=_spec(minimum=1))
    # Python workers, and the models they hold, live on between tasks (spark.python.worker.reuse).
    python_worker_reuse: bool = True
    # spark.dynamicAllocation.enabled of the cluster: TorchDistributor's barrier stage
    # (train-student with student.local_mode false) needs it off.
    dynamic_allocation: bool = False
    gpu: GpuSettings = field(default_factory=GpuSettings)


@dataclass
class PathSettings:
    # All local state lives under root: warehouse/, mlflow/, models/, clips/.
    root: str = ".panda"
    # When non-empty, every manifest path must resolve inside one of these (local dirs or URI prefixes).
    allowed_roots: list[str] = field(default_factory=list)
    # Per URI scheme, the fsspec filesystem's arguments (the `cloud` extra: s3fs, gcsfs, adlfs), e.g.
    # {s3: {endpoint_url: "http://minio:9000", key: ..., secret: ...}}; the driver and every task use
    # them. Credentials left out come from the backend's own chain (AWS_* variables, instance profile,
    # gcloud, azure identity).
    storage_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CatalogSettings:
    catalog: str | None = None  # Unity Catalog name on Databricks; empty for Hive/Glue/embedded
    schema: str = "panda"
    # Where tables' Delta files go when they are created as external tables (e.g. s3://bucket/panda).
    # Empty: embedded mode uses <paths.root>/warehouse/<schema>.db; clusters use managed tables.
    location: str | None = None
    # A write that loses a Delta conflict to another writer (ConcurrentAppendException, ...) is
    # retried this many times with exponential backoff from retry_backoff_s; every write is an
    # idempotent MERGE of materialised rows, so a retry is safe. Then the stage stops, in one line.
    write_retries: int = field(default=6, metadata=_spec(minimum=0))
    retry_backoff_s: float = field(default=0.5, metadata=_spec(minimum=0))


@dataclass
class MlflowSettings:
    tracking_uri: str | None = None  # empty: sqlite under <paths.root>/mlflow
    registry_uri: str | None = None  # empty: the tracking store (databricks-uc for Unity Catalog models)
    experiment: str = "panda-spark"


@dataclass
class ModelSettings:
    # Run model code shipped with a checkpoint (transformers trust_remote_code): only if you trust it.
    trust_remote_code: bool = False
    # Where checkpoints are cached; empty: <paths.root>/models (on clusters, a shared Volume/mount).
    cache_dir: str | None = None


@dataclass
class RunSettings:
    # One id shared by every row a run writes and its MLflow runs; empty: a fresh uuid per run.
    id: str | None = None


@dataclass
class IngestSettings:
    manifest: str | None = None
    manifest_format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    # Manifest rows per Arrow batch handed to the probe UDF: small, since each row opens a file.
    batch_rows: int = field(default=8, metadata=_spec(minimum=1))
    # Spark partitions the manifest is spread over; 0: the session's default parallelism.
    partitions: int = field(default=0, metadata=_spec(minimum=0))
    max_subtitle_bytes: int = field(default=5_000_000, metadata=_spec(minimum=1))


@dataclass
class DownloadSettings:
    # panda-spark download: videos with a url and no file (imported Panda-70M rows) are fetched
    # into this directory (any fsspec URI the executors can write); empty: <paths.root>/downloads.
    path: str | None = None
    # auto: yt-dlp for YouTube and the sites yt-dlp has an extractor of their own for, plain
    # HTTP(S) / fsspec reads for the rest.
    backend: Literal["auto", "yt-dlp", "http"] = "auto"
    # yt-dlp format selector: one file (no ffmpeg to merge video and audio streams), ≤ 720p as
    # Panda-70M was downloaded.
    format: str = "b[height<=720][ext=mp4]/b[height<=720]/b"
    # Downloads of one host (youtube.com = youtu.be) at once across the whole job, and started per
    # second across the job (0: no rate limit); each of the host's lanes gets its share.
    concurrency_per_host: int = field(default=8, metadata=_spec(minimum=1))
    requests_per_s_per_host: float = field(default=2.0, metadata=_spec(minimum=0))
    # Transient failures (RateLimited, Timeout, Truncated, ServerError, NetworkError) are tried
    # again this many times after backoff_s, 2 × backoff_s, ...; what still fails waits for a rerun.
    retries: int = field(default=3, metadata=_spec(minimum=0))
    backoff_s: float = field(default=5.0, metadata=_spec(minimum=0))
    timeout_s: float = field(default=60.0, metadata=_spec(minimum=0.1))  # no byte for this long: Timeout
    max_bytes: int | None = field(default=4_000_000_000, metadata=_spec(minimum=1))  # empty: no limit
    max_duration_s: float | None = field(default=4 * 3600.0, metadata=_spec(minimum=1))  # empty: no limit
    # A Netscape cookies.txt for yt-dlp (an account that may see private / age-gated videos): read
    # by the driver and handed to each download (yt-dlp never writes it back).
    cookies_file: str | None = None
    # Videos per wave: each wave is downloaded, probed and committed on its own.
    wave_videos: int = field(default=1024, metadata=_spec(minimum=1))
    # Spark tasks per wave; 0: the session's default parallelism. A task runs its hosts' lanes in threads.
    partitions: int = field(default=0, metadata=_spec(minimum=0))


@dataclass
class SplitSettings:
    # Stitching thresholds (split/stitching.py PRESETS): panda70m — what built the dataset (the
    # released event_stitching.py's commented line 200); released_code — that file's active line 199.
    preset: Literal["panda70m", "released_code"] = "panda70m"
    # published: a video imported from a Panda-70M CSV (import-panda-csv, then download) is cut at
    # its published timestamps, the others are detected; detect: every video with a file is
    # detected (a downloaded Panda-70M video's published clips, and their captions, are replaced).
    mode: Literal["published", "detect"] = "published"
    # Shot detection (PySceneDetect ContentDetector semantics).
    threshold: float = field(default=25.0, metadata=_spec(minimum=0))
    min_scene_len: int = field(default=15, metadata=_spec(minimum=1))
    # Cuts closer than min_scene_len: suppress (PySceneDetect < 0.6.4, which built Panda-70M) drops
    # the later ones; merge (0.6.4+'s default) joins a burst into its last cut.
    flash_filter: Literal["suppress", "merge"] = "suppress"
    # auto: score the frames PySceneDetect scores (its auto-downscale: width // 256, bilinear);
    # fixed: analysis_width × analysis_height resized in the decoder (~1.4× less scan CPU on 1080p;
    # cuts drift from scenedetect's: bench/detector_agreement.py).
    analysis_size: Literal["auto", "fixed"] = "auto"
    analysis_width: int = field(default=128, metadata=_spec(minimum=8))
    analysis_height: int = field(default=72, metadata=_spec(minimum=8))
    max_shot_s: float = field(default=7.0, metadata=_spec(minimum=0.1))
    forced_step_s: float = field(default=5.0, metadata=_spec(minimum=0.1))
    # Stitching and event verification: empty → the preset's value.
    transition_threshold: float | None = None
    stitch_threshold: float | None = None
    min_len_s: float | None = None
    max_len_s: float | None = None
    redundancy_threshold: float | None = None
    trim_fraction: float | None = None
    still_threshold: float | None = None
    # Calibrated stitching thresholds per embedder: `split.embedder` value → any of
    # STITCH_THRESHOLD_KEYS, as bench/embedder_calibration.py prints them. They replace the preset's
    # (ImageBind-scale) values when that embedder splits; an explicit key above still wins.
    embedder_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    # Image embedder for stitching: "color-layout" (non-learned, CPU, offline), or a transformers
    # vision model with get_image_features (CLIP, SigLIP): a hub id or a local directory.
    embedder: str = "color-layout"
    embedder_revision: str | None = None
    embed_batch_size: int = field(default=64, metadata=_spec(minimum=1))
    device: str = "auto"  # auto: the task's GPU, else cuda:0 if present, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Frames kept per clip for the teachers: uniform ones + one keyframe from 30–70% of the clip.
    uniform_frames: int = field(default=8, metadata=_spec(minimum=1))
    sample_fps: float = field(default=4.0, metadata=_spec(minimum=0.1))
    frame_size: int = field(default=224, metadata=_spec(minimum=16))
    # Also write each clip as its own mp4 (video only, timestamps from 0) into <paths.root>/clips:
    # a second decode of the clip ranges, so off unless you need the files.
    materialize_clips: bool = False
    partitions: int = field(default=0, metadata=_spec(minimum=0))
    # Videos per wave: each wave is decoded, written and committed on its own, so a killed job
    # loses at most one wave (a few minutes of work per executor core at Panda's ~2 min/video).
    wave_videos: int = field(default=256, metadata=_spec(minimum=1))


# The stitching thresholds that are distances in the embedder's space (the others are times).
STITCH_THRESHOLD_KEYS = ("transition_threshold", "stitch_threshold", "still_threshold", "redundancy_threshold")
TEACHER_INPUTS = ("frame", "video", "subtitles", "metadata")
CAPTIONS_INPUT = "captions:"  # + a teacher's name: that teacher's caption of the clip


@dataclass
class TeacherSettings:
    name: str  # unique; goes into candidate_captions.teacher
    # A hub id, a local directory, tiny:<family> (a tiny random model of that family, built on
    # first use into the model cache: its captions are noise, for offline runs and tests), or a
    # registered student models:/<name>@<alias> (adapter: student).
    model: str
    adapter: Literal["blip2", "instructblip", "git-video", "text-llm", "image-text-to-text", "qwen2-vl", "student"]
    revision: str | None = None
    # frame: one frame from 30–70% of the clip; video: num_frames uniform frames;
    # subtitles / metadata: the clip's subtitles and the video's title + description in the prompt;
    # captions:<name>: the clip's caption by the teacher <name> of caption.teachers (its current
    # version; VideoChat-Text style), which then captions each clip first.
    inputs: list[str] = field(default_factory=lambda: ["frame"])
    # A template with {subtitles}, {title}, {description}, {captions} (all captions:<name> inputs)
    # and {caption:<name>}; empty: the paper's (with the captions when the teacher takes any).
    prompt: str | None = None
    prompt_without_text: str | None = None
    max_new_tokens: int = field(default=40, metadata=_spec(minimum=1))
    num_beams: int = field(default=1, metadata=_spec(minimum=1))
    do_sample: bool = False
    num_frames: int = field(default=8, metadata=_spec(minimum=1))
    batch_size: int = field(default=8, metadata=_spec(minimum=1))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"

    @property
    def upstream(self) -> list[str]:
        """The names of the teachers whose captions this one takes (its `captions:<name>` inputs)."""
        return [x[len(CAPTIONS_INPUT):] for x in self.inputs if x.startswith(CAPTIONS_INPUT)]


def teacher_order(teachers: list[TeacherSettings]) -> list[TeacherSettings]:
    """`teachers` in conf order, except that each comes after the teachers whose captions it takes.
    ConfigError (naming `caption.teachers[i].inputs`) for a `captions:<name>` that names no teacher
    of `teachers`, or for a cycle."""
    index = {t.name: i for i, t in enumerate(teachers)}
    for i, teacher in enumerate(teachers):
        for name in teacher.upstream:
            if name not in index:
                raise ConfigError(f"conf key 'caption.teachers[{i}].inputs': expected {CAPTIONS_INPUT}<name> with "
                                  f"<name> one of {sorted(index)}, got {CAPTIONS_INPUT}{name}")
    ordered: list[TeacherSettings] = []
    placed: set[str] = set()
    while len(ordered) < len(teachers):
        waiting = [t for t in teachers if t.name not in placed]
        ready = next((t for t in waiting if placed.issuperset(t.upstream)), None)
        if ready is None:  # every waiting teacher waits for another waiting one: follow them round
            path = [waiting[0].name]
            while True:
                following = next(n for n in teachers[index[path[-1]]].upstream if n not in placed)
                if following in path:
                    cycle = path[path.index(following):] + [following]
                    raise ConfigError(f"conf key 'caption.teachers[{index[cycle[0]]}].inputs': expected "
                                      f"{CAPTIONS_INPUT}<name> inputs without a cycle, got {' -> '.join(cycle)}")
                path.append(following)
        ordered.append(ready)
        placed.add(ready.name)
    return ordered


def _tiny_teacher(name: str, adapter: str, inputs: list[str]) -> TeacherSettings:
    return TeacherSettings(name=name, model=f"tiny:{adapter}", adapter=adapter, inputs=inputs, max_new_tokens=12)


@dataclass
class CaptionSettings:
    teachers: list[TeacherSettings] = field(default_factory=lambda: [
        _tiny_teacher("blip2-tiny", "blip2", ["frame"]),
        _tiny_teacher("git-video-tiny", "git-video", ["video"]),
        _tiny_teacher("qwen2-vl-tiny", "qwen2-vl", ["video", "subtitles", "metadata"]),
        # VideoChat-Text: an LLM that reads another teacher's caption of the clip
        _tiny_teacher("text-llm-tiny", "text-llm", ["captions:blip2-tiny", "subtitles", "metadata"]),
    ])
    max_subtitle_tokens: int = field(default=200, metadata=_spec(minimum=1))
    max_metadata_tokens: int = field(default=100, metadata=_spec(minimum=1))
    partitions: int = field(default=0, metadata=_spec(minimum=0))
    # Clips per wave: their frames are read once and every teacher captions them before the wave
    # commits; a killed job loses at most one wave.
    wave_clips: int = field(default=2048, metadata=_spec(minimum=1))
    # Stage-level resource profile for the teacher tasks (cluster mode only; local mode has no
    # GPU scheduling): GPUs per task and per executor. 0: no profile, the cluster's defaults.
    task_gpus: float = field(default=0.0, metadata=_spec(minimum=0))
    executor_gpus: int = field(default=1, metadata=_spec(minimum=1))


@dataclass
class SelectSettings:
    # Who scores a clip's candidate captions:
    # - a transformers dual encoder with get_image_features / get_text_features (CLIP, SigLIP):
    #   a hub id, a local directory, tiny:clip (tiny random CLIP, built on first use: noise), or a
    #   registered selector `models:/<name>@<alias>` / `models:/<name>/<version>` from
    #   finetune-retrieval. Frame embeddings are mean-pooled into one clip embedding.
    # - text-consensus: each candidate's mean similarity to the clip's other candidates, with the
    #   sentence encoder `text_model` (empty: the bundled all-MiniLM-L6-v2, offline).
    scorer: str = "tiny:clip"
    scorer_revision: str | None = None
    text_model: str | None = None
    num_frames: int = field(default=8, metadata=_spec(minimum=1))  # uniform frames per clip
    batch_size: int = field(default=16, metadata=_spec(minimum=1))  # clips per model call
    # A clip whose best score exceeds this is a good match (0.43 for the paper's UMT selector;
    # calibrate for yours: CLIP cosines run lower, SigLIP scores are match probabilities).
    # Empty: the threshold `panda-spark calibrate-selection` stored for the scorer version in the
    # `calibrations` table; good_match stays NULL (ungraded) until there is one.
    good_match_threshold: float | None = 0.43
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    partitions: int = field(default=0, metadata=_spec(minimum=0))
    task_gpus: float = field(default=0.0, metadata=_spec(minimum=0))  # as caption.task_gpus
    executor_gpus: int = field(default=1, metadata=_spec(minimum=1))
    labels: str | None = None  # load-selection-labels: CSV or JSON lines (or pass --labels PATH)
    wave_clips: int = field(default=8192, metadata=_spec(minimum=1))  # clips scored and committed per wave


@dataclass
class FinetuneSettings:
    # finetune-retrieval: trains the dual encoder named here (empty: select.scorer) on
    # selection_labels. Defaults are the paper's (AdamW, lr 2e-5, weight decay 0.02, batch 32,
    # 10 epochs); the other candidates of a clip are hard negatives, other clips' captions in the
    # batch are weak ones.
    base_model: str | None = None
    epochs: int = field(default=10, metadata=_spec(minimum=1))
    batch_size: int = field(default=32, metadata=_spec(minimum=1))
    learning_rate: float = field(default=2e-5, metadata=_spec(minimum=0))
    weight_decay: float = field(default=0.02, metadata=_spec(minimum=0))
    hard_negative_weight: float = field(default=1.0, metadata=_spec(minimum=0))
    in_batch_negative_weight: float = field(default=0.01, metadata=_spec(minimum=0))
    val_fraction: float = field(default=0.2, metadata=_spec(minimum=0))  # held out by clip_id hash
    seed: int = 0
    device: str = "auto"
    # Where the labelled examples are staged for the training loop on the driver: storage that
    # executors write and the driver reads (a local dir embedded; s3://, /Volumes/... on clusters).
    # Empty: <paths.root>/selector.
    snapshot_dir: str | None = None
    registered_model: str = "panda-selector"
    alias: str = "candidate"  # set on the new version; point select.scorer at models:/<name>@<alias>


@dataclass
class StudentSettings:
    # train-student: a frozen image encoder (CLIP-family, get_image_features) and a causal LM
    # (GPT-2 / OPT / Qwen class): hub ids, directories, or tiny:clip / tiny:gpt2 (noise, offline).
    vision_model: str = "tiny:clip"
    language_model: str = "tiny:gpt2"
    num_frames: int = field(default=8, metadata=_spec(minimum=1))
    video_queries: int = field(default=8, metadata=_spec(minimum=1))  # the paper: 32
    # the paper: 32; the video tokens are the text branch's queries (as released): equal to video_queries
    text_queries: int = field(default=8, metadata=_spec(minimum=1))
    hidden: int = field(default=64, metadata=_spec(minimum=8))  # width of the query transformers
    layers: int = field(default=1, metadata=_spec(minimum=1))
    heads: int = field(default=4, metadata=_spec(minimum=1))
    max_text_tokens: int = field(default=64, metadata=_spec(minimum=2))  # the prompt, cut from the left (released: 200)
    max_caption_tokens: int = field(default=32, metadata=_spec(minimum=2))
    subtitles_dropout: float = field(default=0.5, metadata=_spec(minimum=0))
    metadata_dropout: float = field(default=0.5, metadata=_spec(minimum=0))
    # Tiny LMs must learn too (a frozen random LM cannot); clusters freeze a pretrained one.
    train_language_model: bool = True
    good_match_only: bool = False  # train only on clips whose selected caption is a good match
    epochs: int = field(default=3, metadata=_spec(minimum=1))
    batch_size: int = field(default=8, metadata=_spec(minimum=1))  # per process
    learning_rate: float = field(default=1e-3, metadata=_spec(minimum=0))
    weight_decay: float = field(default=0.01, metadata=_spec(minimum=0))
    val_fraction: float = field(default=0.2, metadata=_spec(minimum=0))
    eval_clips: int = field(default=16, metadata=_spec(minimum=0))  # held-out clips captioned per epoch
    max_new_tokens: int = field(default=30, metadata=_spec(minimum=1))
    # Decoding of the student's captions (per-epoch samples, evaluate, the registered model), the
    # released student's by default: beam search over 3 beams, sampling with top-p and temperature.
    num_beams: int = field(default=3, metadata=_spec(minimum=1))
    do_sample: bool = True
    top_p: float = field(default=0.9, metadata=_spec(minimum=0))  # in (0, 1]
    temperature: float = field(default=1.5, metadata=_spec(minimum=0))  # > 0
    seed: int = 0
    # TorchDistributor: processes, local (driver) or on executors, GPUs (DDP on nccl, else gloo)
    num_processes: int = field(default=2, metadata=_spec(minimum=1))
    local_mode: bool = True
    use_gpu: bool = False
    # petastorm's converter cache (file:// locally; dbfs:/ or s3:// on clusters); empty: <paths.root>/petastorm
    cache_url: str | None = None
    # Epoch checkpoints and the final model before it is logged: a POSIX path the driver and the
    # training processes share (a Volume, EFS/NFS mount) when local_mode is false.
    # Empty: <paths.root>/student/checkpoints
    checkpoint_dir: str | None = None
    # Clips per wave of training-row building (encoder features, token ids), each committed to the
    # student_rows table: a killed job loses one wave, and the next training builds new clips only.
    wave_clips: int = field(default=8192, metadata=_spec(minimum=1))
    registered_model: str = "panda-student"
    alias: str = "candidate"


@dataclass
class ExportSettings:
    # panda-spark export: Panda-70M CSVs (one row per source video) and webdataset tar shards
    # (clip mp4 + txt + json) under this directory (a local dir, a Volume, s3://...).
    # Empty: <paths.root>/export. Executors write it: on clusters, storage they all reach.
    path: str | None = None
    videos_per_csv: int = field(default=100_000, metadata=_spec(minimum=1))  # rows per panda70m_NNNNN.csv
    webdataset: bool = True  # also write the tar shards (false: CSVs only, no video decoding)
    # Clips per shard, roughly: a source video's clips stay in one shard (decoded once), so a
    # shard closes at the first video that reaches this count.
    clips_per_shard: int = field(default=1000, metadata=_spec(minimum=1))
    good_match_only: bool = False  # only clips whose selected caption is a good match (cf. the 10M subset)
    # Files rewritten per wave of an incremental export: each wave publishes its files, then commits
    # them in exported_videos (a killed export redoes at most the uncommitted wave's files).
    wave_files: int = field(default=64, metadata=_spec(minimum=1))


@dataclass
class MaintainSettings:
    # panda-spark maintain: cluster (where a table's clustering columns are new), OPTIMIZE and VACUUM
    # these tables (names of panda_spark.tables.TABLES); empty: all of them.
    tables: list[str] = field(default_factory=list)
    # VACUUM ... RETAIN <hours> HOURS: files no longer referenced for this long are deleted, and time
    # travel to older versions fails. Below 168 (Delta's 7-day safety check) the check is switched
    # off for the run: readers still on an older snapshot may then fail.
    vacuum_retention_hours: int = field(default=168, metadata=_spec(minimum=0))


@dataclass
class Config:
    spark: SparkSettings = field(default_factory=SparkSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    run: RunSettings = field(default_factory=RunSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    download: DownloadSettings = field(default_factory=DownloadSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    caption: CaptionSettings = field(default_factory=CaptionSettings)
    select: SelectSettings = field(default_factory=SelectSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    student: StudentSettings = field(default_factory=StudentSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    maintain: MaintainSettings = field(default_factory=MaintainSettings)

    # Derived locations (not conf keys).
    @property
    def root(self) -> Path:
        return Path(self.paths.root)

    @property
    def warehouse_dir(self) -> Path:
        return self.root / "warehouse"

    @property
    def model_cache_dir(self) -> str:
        return self.models.cache_dir or str(self.root / "models")

    @property
    def clip_store_dir(self) -> str:
        return f"{self.paths.root.rstrip('/')}/clips"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{(self.root / 'mlflow' / 'mlflow.db').resolve()}"


# ---------------------------------------------------------------- loading and validation


def load_config(conf_file: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults ← YAML file ← `--set` overrides, then validated. Relative paths.root is made absolute."""
    raw: dict[str, Any] = {}
    if conf_file is not None:
        path = Path(conf_file)
        if not path.is_file():
            raise ConfigError(f"--conf {conf_file}: no such file (expected a YAML file such as conf/local.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--conf {conf_file}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"--conf {conf_file}: expected a mapping of sections at the top level")
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
    cfg = _build(Config, raw, prefix="")
    _check_cross_keys(cfg)
    cfg.paths.root = str(Path(cfg.paths.root).expanduser().absolute()) if "://" not in cfg.paths.root else cfg.paths.root
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` → ("a.b", value parsed as a YAML scalar/list/map, never evaluated as code)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected the form dotted.key=value, e.g. --set ingest.batch_rows=16")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"conf key '{prefix.rstrip('.') or '<top>'}': expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"under '{prefix.rstrip('.')}'" if prefix else "at the top level"
        raise ConfigError(
            f"unknown conf key '{prefix}{unknown[0]}' (known keys {where}: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"conf key '{prefix}{name}' is required")
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(raw[name], hint, f"{prefix}{name}", f.metadata)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, meta: typing.Mapping) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None or value == "":
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(f"conf key '{key}': expected {expected}, got {value!r}")

    if hint is Any:  # a backend's own argument (storage_options): passed on as written
        return value
    if origin is Literal:
        if value not in args:
            fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            fail("an integer" if hint is int else "a number")
        lo = meta.get("min")
        if lo is not None and value < lo:
            fail(f"{'an integer' if hint is int else 'a number'} ≥ {lo}")
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
            fail("a non-empty string")
        return str(value)
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, list):
            fail("a list, e.g. [a, b]")
        if dataclasses.is_dataclass(args[0]):
            return [_build(args[0], v, f"{key}[{i}].") for i, v in enumerate(value)]
        return [_coerce(v, args[0], f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            fail("a mapping of key: value")
        return {str(k): _coerce(v, args[1], f"{key}.{k}", {}) for k, v in value.items()}
    raise TypeError(f"unsupported conf type {hint!r} for {key}")  # a bug in this module, not in a conf


def _check_cross_keys(cfg: Config) -> None:
    names = [t.name for t in cfg.caption.teachers]
    for i, teacher in enumerate(cfg.caption.teachers):
        key = f"caption.teachers[{i}]"
        if teacher.name in names[:i]:
            raise ConfigError(f"conf key '{key}.name': teacher names must be unique, '{teacher.name}' repeats")
        unknown = [x for x in teacher.inputs if x not in TEACHER_INPUTS and not x.startswith(CAPTIONS_INPUT)]
        visual = [x for x in teacher.inputs if x in ("frame", "video")]
        if unknown or len(visual) > 1 or (not visual and teacher.adapter != "text-llm") or not teacher.inputs:
            raise ConfigError(
                f"conf key '{key}.inputs': expected one of frame or video (none for a text-llm teacher) "
                f"plus optionally subtitles, metadata and {CAPTIONS_INPUT}<name of another teacher>, "
                f"got {teacher.inputs}"
            )
        stray = [name for name in CAPTION_FIELD.findall(teacher.prompt or "") if name not in teacher.upstream]
        if stray:
            raise ConfigError(f"conf key '{key}.prompt': expected {{caption:<name>}} only for the teacher's own "
                              f"{CAPTIONS_INPUT}<name> inputs {teacher.upstream}, got {{caption:{stray[0]}}}")
    teacher_order(cfg.caption.teachers)
    for embedder, thresholds in cfg.split.embedder_thresholds.items():
        for name, value in thresholds.items():
            if name not in STITCH_THRESHOLD_KEYS or value < 0:
                raise ConfigError(f"conf key 'split.embedder_thresholds.{embedder}.{name}': expected one of "
                                  f"{', '.join(STITCH_THRESHOLD_KEYS)} with a number ≥ 0, got {value!r}")
    for key, fraction in (("student.val_fraction", cfg.student.val_fraction),
                          ("finetune.val_fraction", cfg.finetune.val_fraction)):
        if not 0 < fraction < 1:
            raise ConfigError(f"conf key '{key}': expected a number between 0 and 1 (exclusive), got {fraction!r}")
    s = cfg.student
    if s.text_queries != s.video_queries:
        raise ConfigError(f"conf key 'student.text_queries': expected student.video_queries ({s.video_queries}), "
                          f"got {s.text_queries} (the video tokens are the text branch's queries)")
    if not (0 < s.top_p <= 1 and s.temperature > 0):
        raise ConfigError(f"conf keys 'student.top_p', 'student.temperature': expected 0 < top_p <= 1 and "
                          f"temperature > 0, got {s.top_p!r} and {s.temperature!r}")
    if cfg.run.id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", cfg.run.id):
        # it goes into table rows, MLflow tags and search filters
        raise ConfigError(f"conf key 'run.id': expected letters, digits and _ . : - (not first), got {cfg.run.id!r}")
    if cfg.spark.mode == "embedded" and cfg.catalog.catalog:
        raise ConfigError(
            "conf key 'catalog.catalog': must be empty when spark.mode is 'embedded' "
            "(the embedded session has one catalog; three-part names are for Unity Catalog clusters)"
        )
    if cfg.spark.mode == "embedded" and "://" in cfg.paths.root:
        raise ConfigError("conf key 'paths.root': expected a local directory when spark.mode is 'embedded'")


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def describe_defaults(key: str) -> list[str]:
    """`dotted.key = default` lines for a conf section (every key under it, nested sections
    dotted) or one key, with the choices of a key that has a fixed set: what
    `panda-spark <stage> --help` lists. KeyError for a key Config does not have."""
    owner: Any = Config
    value: Any = Config()
    for part in key.split("."):
        if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
            raise KeyError(f"no conf key {key!r}")
        owner, value = typing.get_type_hints(type(value))[part], getattr(value, part)
    if dataclasses.is_dataclass(value):
        return [line for f in dataclasses.fields(value) for line in describe_defaults(f"{key}.{f.name}")]
    choices = typing.get_args(owner) if typing.get_origin(owner) is Literal else ()
    return [f"{key} = {_show(value)}" + (f"  ({' | '.join(choices)})" if choices else "")]


def _show(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        # list entries are sections of their own (caption.teachers): their names, not every key
        return "[" + ", ".join(str(getattr(v, dataclasses.fields(v)[0].name)) for v in value) + "]"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return str(value)

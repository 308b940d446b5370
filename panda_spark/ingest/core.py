"""Ingest core: one manifest row → one probed `videos` record, or one typed error. No Spark.

Contract of :func:`ingest_batch` (the pandas adapter run inside `mapInPandas`):
  in:  MANIFEST_COLUMNS (one row per manifest row; `prior_signature` is the row's
       `source_signature` already in `videos`, or null)
  out: RESULT_SCHEMA columns, one row per input row, `status` one of
       `ingested` (video columns set), `unchanged` (file and manifest fields as before: not
       re-probed), `error` (`error_class`, `message`, `input_snapshot` set).
Resources: one open file at a time, one decoded frame per video; CPU only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import pandas as pd

from panda_spark import storage
from panda_spark.errors import InputError, MalformedSubtitles, MissingField
from panda_spark.text.subtitles import looks_like_inline_subtitles, parse_subtitle_bytes
from panda_spark.video.probe import PROBE_VERSION, probe_video

MANIFEST_FIELDS = ("video_id", "path", "url", "title", "description", "subtitles")
MANIFEST_COLUMNS = (*MANIFEST_FIELDS, "extra_json", "manifest_dir", "manifest_row", "prior_signature")

RESULT_SCHEMA = (
    "status STRING, key STRING, video_id STRING, path STRING, url STRING, title STRING, "
    "description STRING, duration_s DOUBLE, fps DOUBLE, fps_rational STRING, avg_fps DOUBLE, "
    "frame_count BIGINT, width INT, height INT, codec STRING, pix_fmt STRING, container STRING, "
    "has_audio BOOLEAN, rotation INT, bytes BIGINT, file_mtime DOUBLE, content_hash STRING, "
    "subtitles ARRAY<STRUCT<start_s: DOUBLE, end_s: DOUBLE, text: STRING>>, subtitles_format STRING, "
    "subtitles_source STRING, extra_json STRING, source_signature STRING, probe_version STRING, "
    "error_class STRING, message STRING, input_snapshot STRING"
)
_SNAPSHOT_TEXT_LIMIT = 2000


@dataclass(frozen=True)
class IngestOptions:
    allowed_roots: tuple[str, ...] = ()
    max_subtitle_bytes: int = 5_000_000


@dataclass
class IngestResult:
    status: str
    key: str
    video_id: str | None = None
    path: str | None = None
    url: str | None = None
    title: str | None = None
    description: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    fps_rational: str | None = None
    avg_fps: float | None = None
    frame_count: int | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    pix_fmt: str | None = None
    container: str | None = None
    has_audio: bool | None = None
    rotation: int | None = None
    bytes: int | None = None
    file_mtime: float | None = None
    content_hash: str | None = None
    subtitles: list[dict] | None = field(default=None)
    subtitles_format: str | None = None
    subtitles_source: str | None = None
    extra_json: str | None = None
    source_signature: str | None = None
    probe_version: str | None = None
    error_class: str | None = None
    message: str | None = None
    input_snapshot: str | None = None


def _text(value: Any) -> str | None:
    """Manifest cell → stripped string, or None for empty/NaN cells."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def row_key(row: dict) -> str:
    return _text(row.get("video_id")) or f"manifest row {row.get('manifest_row')}"


def input_snapshot(row: dict) -> str:
    snap = {k: _text(row.get(k)) for k in MANIFEST_FIELDS}
    if snap["subtitles"] and len(snap["subtitles"]) > _SNAPSHOT_TEXT_LIMIT:
        snap["subtitles"] = snap["subtitles"][:_SNAPSHOT_TEXT_LIMIT] + "…"
    snap["extra"] = json.loads(row.get("extra_json") or "{}")
    return json.dumps(snap, ensure_ascii=False, sort_keys=True)


def ingest_row(row: dict, options: IngestOptions) -> IngestResult:
    """Probe one manifest row; never raises for bad input (returns status `error`), nor for a store
    that fails on this row's files (no backend, no credentials, 403, 404, timeout: see
    :func:`panda_spark.storage.failure`)."""
    key = row_key(row)
    try:
        with storage.failures(_text(row.get("path")) or ""):
            return _ingest(row, key, options)
    except InputError as exc:
        return IngestResult("error", key, video_id=_text(row.get("video_id")), error_class=exc.error_class,
                            message=exc.message, input_snapshot=input_snapshot(row))


def _ingest(row: dict, key: str, options: IngestOptions) -> IngestResult:
    video_id, raw_path = _text(row.get("video_id")), _text(row.get("path"))
    if not video_id:
        raise MissingField("manifest row has no video_id")
    if not raw_path:
        raise MissingField(f"video {video_id} has no path")
    base_dir = row.get("manifest_dir") or ""
    path = storage.resolve_path(raw_path, base_dir)
    storage.check_allowed(path, list(options.allowed_roots))
    stat = storage.stat_file(path)

    subtitles_value = _text(row.get("subtitles"))
    subtitle_bytes, subtitles_source, subtitle_stat = None, None, None
    if subtitles_value and looks_like_inline_subtitles(subtitles_value):
        subtitle_bytes, subtitles_source = subtitles_value.encode("utf-8"), "inline"
    elif subtitles_value:
        subtitles_source = storage.resolve_path(subtitles_value, base_dir)
        storage.check_allowed(subtitles_source, list(options.allowed_roots))
        subtitle_stat = storage.stat_file(subtitles_source)
        if subtitle_stat.size > options.max_subtitle_bytes:
            raise MalformedSubtitles(
                f"subtitles file {subtitles_source} has {subtitle_stat.size} bytes, "
                f"more than ingest.max_subtitle_bytes={options.max_subtitle_bytes}"
            )

    fields = {k: _text(row.get(k)) for k in ("url", "title", "description")}
    signature = file_signature(path, stat, subtitles_value, subtitle_stat, fields, row.get("extra_json"))
    if signature == row.get("prior_signature"):
        return IngestResult("unchanged", key, video_id=video_id)

    if subtitles_source and subtitles_source != "inline":
        with storage.open_binary(subtitles_source) as fh:
            subtitle_bytes = fh.read()
    subtitles_format, cues = parse_subtitle_bytes(subtitle_bytes) if subtitle_bytes is not None else (None, [])
    with storage.open_binary(path) as fh:
        probe = probe_video(fh, stat.size)
    return IngestResult(
        "ingested",
        key,
        video_id=video_id,
        path=path,
        **fields,
        **asdict(probe),
        bytes=stat.size,
        file_mtime=stat.mtime,
        content_hash=storage.sha256_file(path),
        subtitles=[asdict(c) for c in cues],
        subtitles_format=subtitles_format,
        subtitles_source=subtitles_source,
        extra_json=row.get("extra_json") or "{}",
        source_signature=signature,
        probe_version=PROBE_VERSION,
    )


def file_signature(path, stat, subtitles_value, subtitle_stat, fields, extra_json) -> str:
    """What decides whether a video must be probed again: the file's identity and the manifest's fields."""
    parts = [PROBE_VERSION, path, stat.size, stat.mtime, subtitles_value,
             subtitle_stat and (subtitle_stat.size, subtitle_stat.mtime), fields, extra_json or "{}"]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def ingest_batch(batches: Iterator[pd.DataFrame], options: IngestOptions) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: manifest rows in, RESULT_SCHEMA rows out."""
    for batch in batches:
        results = [asdict(ingest_row(row, options)) for row in batch.to_dict("records")]
        yield pd.DataFrame.from_records(results, columns=[f.name for f in _RESULT_FIELDS])


_RESULT_FIELDS = tuple(IngestResult.__dataclass_fields__.values())

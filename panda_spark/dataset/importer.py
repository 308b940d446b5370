"""Import core: published Panda-70M CSV records → rows for `videos`, `clips`, `shots`, `captions`. No Spark.

:func:`import_batch` is the mapInPandas adapter: one output row per CSV record, with the record's
clips and shots nested (deterministic ids: uuid5 of video id, times in microseconds and
IMPORT_VERSION, so a reimport finds the same keys) or its error class and message.
"""
from __future__ import annotations

import json
import posixpath
from typing import Iterator

import pandas as pd

from panda_spark.dataset.panda70m import COLUMNS, format_timestamp, parse_row
from panda_spark.errors import InputError
from panda_spark.runs import stable_id

IMPORT_VERSION = "panda70m-csv-1"
TEACHER = "panda70m"  # captions.teacher of imported captions: the release's selected caption
SCORER = "panda70m-release"  # their matching score came from the release's fine-tuned UMT selector

RESULT_SCHEMA = (
    "key STRING, source_file STRING, source_row BIGINT, video_id STRING, url STRING, status STRING, "
    "error_class STRING, message STRING, input_snapshot STRING, "
    "clips ARRAY<STRUCT<clip_id: STRING, start_s: DOUBLE, end_s: DOUBLE, start_timecode: STRING, "
    "end_timecode: STRING, shot_ids: ARRAY<STRING>, caption: STRING, matching_score: DOUBLE, "
    "desirable_filtering: STRING>>, "
    "shots ARRAY<STRUCT<shot_id: STRING, start_s: DOUBLE, end_s: DOUBLE>>"
)
_RESULT_COLUMNS = ("key", "source_file", "source_row", "video_id", "url", "status", "error_class", "message",
                   "input_snapshot", "clips", "shots")
_SNAPSHOT_CHARS = 300


def import_record(record: dict) -> dict:
    """One CSV record (the CSV columns plus source_file, source_row) → one RESULT_SCHEMA row."""
    raw_id = record.get("videoID")
    video_id = str(raw_id).strip() if isinstance(raw_id, str) and raw_id.strip() else None
    out = {"key": video_id or f"{posixpath.basename(str(record['source_file']))}:row{record['source_row']}",
           "source_file": record["source_file"], "source_row": record["source_row"], "video_id": video_id,
           "url": None, "status": "ok", "error_class": None, "message": None, "input_snapshot": None,
           "clips": [], "shots": []}
    try:
        video = parse_row(record)
    except Exception as exc:  # one bad record must not fail the task; InputErrors name their class
        error_class, message = (exc.error_class, exc.message) if isinstance(exc, InputError) else (
            type(exc).__name__, str(exc)[:2000])
        snapshot = {c: _cut(record.get(c)) for c in ("source_file", "source_row", *COLUMNS)}
        out.update(status="error", error_class=error_class, message=message,
                   input_snapshot=json.dumps(snapshot, ensure_ascii=False, default=str))
        return out
    shots = {}
    for clip in video.clips:
        shot_ids = []
        for start, end in clip.shots or ():
            shot_id = stable_id(video.video_id, "shot", start, end, IMPORT_VERSION)
            shots[shot_id] = {"shot_id": shot_id, "start_s": start / 1e6, "end_s": end / 1e6}
            shot_ids.append(shot_id)
        out["clips"].append({
            "clip_id": stable_id(video.video_id, "clip", clip.start_us, clip.end_us, IMPORT_VERSION),
            "start_s": clip.start_s, "end_s": clip.end_s, "start_timecode": format_timestamp(clip.start_s),
            "end_timecode": format_timestamp(clip.end_s), "shot_ids": shot_ids, "caption": clip.caption,
            "matching_score": clip.matching_score, "desirable_filtering": clip.desirable_filtering})
    out.update(url=video.url, shots=list(shots.values()))
    return out


def import_batch(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: CSV records (string cells, None when empty) → RESULT_SCHEMA rows."""
    for batch in batches:
        records = batch.astype(object).where(batch.notna(), None).to_dict("records")
        yield pd.DataFrame([import_record(r) for r in records], columns=list(_RESULT_COLUMNS))


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > _SNAPSHOT_CHARS:
        return value[:_SNAPSHOT_CHARS] + "…"
    return value

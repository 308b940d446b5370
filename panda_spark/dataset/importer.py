"""Import core: published Panda-70M CSV records → rows for `videos`, `clips`, `shots`, `captions`. No Spark.

:func:`import_batch` is the mapInPandas adapter: one output row per CSV record, with the record's
clips and shots nested (deterministic ids: uuid5 of video id, times in microseconds and
IMPORT_VERSION, so a reimport finds the same keys) or its error class and message. Spark reads
the CSV one character per byte (latin-1); :func:`utf8_cells` decodes each cell as UTF-8 here, so a
byte that is not UTF-8 makes its record an `InvalidEncoding` error instead of a replacement
character. :func:`duplicate_records` decides which records of a video found more than once load.
"""
from __future__ import annotations

import json
import posixpath
from typing import Iterator

import pandas as pd

from panda_spark.dataset.panda70m import COLUMNS, IMPORT_VERSION, SCORER, TEACHER, format_timestamp, parse_row
from panda_spark.errors import DuplicateVideoId, InputError, InvalidEncoding
from panda_spark.runs import stable_id


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
ERROR_SCHEMA = ("key STRING, source_file STRING, source_row BIGINT, error_class STRING, message STRING, "
                "input_snapshot STRING")
READ_ENCODING = "ISO-8859-1"  # how Spark reads the CSV: one character per byte, nothing replaced
_SNAPSHOT_CHARS = 300


def utf8_cells(record: dict, where: str) -> dict:
    """`record` with its CSV cells (read one character per byte, READ_ENCODING) decoded as UTF-8;
    the first cell that is not UTF-8 raises InvalidEncoding naming the record, the column and the
    offending byte's offset in the cell."""
    out = dict(record)
    for column in COLUMNS:
        if isinstance(record.get(column), str):
            try:
                out[column] = _utf8(record[column])
            except UnicodeDecodeError as exc:
                raise InvalidEncoding(f"{where}: {column} is not UTF-8: byte {exc.start} of the cell is "
                                      f"0x{exc.object[exc.start]:02x}") from None
    return out


def import_record(record: dict) -> dict:
    """One CSV record (the CSV columns as read one character per byte, see :func:`utf8_cells`, plus
    source_file, source_row) → one RESULT_SCHEMA row."""
    where = f"{posixpath.basename(str(record['source_file']))}:row{record['source_row']}"
    try:
        raw_id = _utf8(record["videoID"]) if isinstance(record.get("videoID"), str) else None
    except UnicodeDecodeError:  # keyed by its row; utf8_cells makes it InvalidEncoding below
        raw_id = None
    video_id = raw_id.strip() if raw_id and raw_id.strip() else None
    out = {"key": video_id or where,
           "source_file": record["source_file"], "source_row": record["source_row"], "video_id": video_id,
           "url": None, "status": "ok", "error_class": None, "message": None, "input_snapshot": None,
           "clips": [], "shots": []}
    try:
        video = parse_row(utf8_cells(record, where))
    except Exception as exc:  # one bad record must not fail the task; InputErrors name their class
        error_class, message = (exc.error_class, exc.message) if isinstance(exc, InputError) else (
            type(exc).__name__, str(exc)[:2000])
        snapshot = {"source_file": record["source_file"], "source_row": record["source_row"],
                    **{c: _cut(_readable(record.get(c))) for c in COLUMNS}}
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
    """mapInPandas adapter: CSV records (cells as read, None when empty) → RESULT_SCHEMA rows."""
    for batch in batches:
        records = batch.astype(object).where(batch.notna(), None).to_dict("records")
        yield pd.DataFrame([import_record(r) for r in records], columns=list(_RESULT_COLUMNS))


def duplicate_records(records: pd.DataFrame) -> pd.DataFrame:
    """The records (video_id, url, source_file, source_row) of one video that must not load, as
    ERROR_SCHEMA rows (key `<videoID>@<file>:row<N>`). In (source_file, source_row) order the
    first loads; a later one is DuplicateVideoId when its file already holds the video (the
    release has one row per source video) or its url differs from the first's (one would be
    lost). A later record of another file with the same url is the same video in another release
    file (the 2M subset and the full set): it loads, and the video gets the union of the clips."""
    records = records.sort_values(["source_file", "source_row"])
    first = records.iloc[0]
    seen, out = {first.source_file}, []
    for rec in records.iloc[1:].itertuples(index=False):
        where, first_at = f"{rec.source_file}:row{rec.source_row}", f"{first.source_file}:row{first.source_row}"
        if rec.source_file in seen or rec.url != first.url:
            out.append({
                "key": f"{rec.video_id}@{where}", "source_file": rec.source_file, "source_row": rec.source_row,
                "error_class": DuplicateVideoId.error_class,
                "message": f"videoID {rec.video_id} at {where} (url {rec.url}) was already read at {first_at} "
                           f"(url {first.url}); a source video has one row",
                "input_snapshot": json.dumps({"source_file": rec.source_file, "source_row": int(rec.source_row),
                                              "videoID": rec.video_id, "url": rec.url, "first_file": first.source_file,
                                              "first_row": int(first.source_row), "first_url": first.url},
                                             ensure_ascii=False)})
        seen.add(rec.source_file)
    return pd.DataFrame(out, columns=[c.split()[0] for c in ERROR_SCHEMA.split(", ")])


def _utf8(cell: str) -> str:
    return cell.encode(READ_ENCODING).decode("utf-8")


def _readable(value: object) -> object:
    """A cell as read, decoded as UTF-8 with the bytes that are not shown as `\\xNN`."""
    return value.encode(READ_ENCODING).decode("utf-8", "backslashreplace") if isinstance(value, str) else value


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > _SNAPSHOT_CHARS:
        return value[:_SNAPSHOT_CHARS] + "…"
    return value

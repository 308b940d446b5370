"""Selection labels: human picks of a clip's best candidate, read from CSV or JSON lines. No Spark.

A label row names `clip_id`, `annotator`, and the pick as `chosen_teacher` (a teacher name) or
`chosen_caption` (the caption text), optionally `created_at` (ISO 8601). :func:`parse_labels`
returns the good rows and one error per bad row (key `<clip_id>/<annotator>`, or
`<file>:<line>` when the row has no clip id); whether the pick exists among the clip's candidates
is checked against the tables by the Spark wrapper.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from panda_spark.errors import ConfigError, InputError, MissingField

LABEL_FIELDS = ("clip_id", "annotator", "chosen_teacher", "chosen_caption", "created_at")


class MalformedLabel(InputError):
    error_class = "MalformedLabel"


class ConflictingLabel(InputError):
    error_class = "ConflictingLabel"


@dataclass
class LabelError:
    key: str
    error_class: str
    message: str
    input_snapshot: str


def read_label_rows(path: str, text: str) -> list[tuple[int, dict | Exception]]:
    """(line number, row or the parse error) for each record of a CSV (with header) or JSON-lines file."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "clip_id" not in reader.fieldnames:
            raise ConfigError(f"--labels {path}: expected a CSV header with clip_id, annotator and "
                              f"chosen_teacher or chosen_caption, got {reader.fieldnames}")
        return [(reader.line_num, row) for row in reader]
    if ext in (".jsonl", ".json", ".ndjson"):
        rows: list[tuple[int, dict | Exception]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                rows.append((number, record if isinstance(record, dict) else MalformedLabel("not a JSON object")))
            except json.JSONDecodeError as exc:
                rows.append((number, MalformedLabel(f"not valid JSON: {exc.msg}")))
        return rows
    raise ConfigError(f"--labels {path}: expected a .csv or .jsonl file")


def parse_labels(path: str, text: str) -> tuple[list[dict], list[LabelError]]:
    """(label rows with LABEL_FIELDS, errors). A repeated (clip_id, annotator) keeps its first row;
    a repeat that picks something else is a ConflictingLabel error."""
    source = os.path.basename(path)
    good: dict[tuple[str, str], dict] = {}
    errors: list[LabelError] = []
    for line, row in read_label_rows(path, text):
        snapshot = json.dumps(row if isinstance(row, dict) else {"line": line}, default=str, ensure_ascii=False)
        named = isinstance(row, dict) and _text(row.get("clip_id")) and _text(row.get("annotator"))
        key = f"{_text(row['clip_id'])}/{_text(row['annotator'])}" if named else f"{source}:{line}"
        try:
            if isinstance(row, Exception):
                raise row
            label = _label(row, source)
            first = good.get((label["clip_id"], label["annotator"]))
            if first is None:
                good[(label["clip_id"], label["annotator"])] = label
            elif _pick(first) != _pick(label):
                raise ConflictingLabel(f"{source}:{line} picks {_pick(label)} but an earlier row picked {_pick(first)}")
        except InputError as exc:
            errors.append(LabelError(key, exc.error_class, exc.message, snapshot))
    return list(good.values()), errors


def _label(row: dict, source: str) -> dict:
    values = {f: _text(row.get(f)) for f in LABEL_FIELDS}
    for required in ("clip_id", "annotator"):
        if not values[required]:
            raise MissingField(f"label has no {required}")
    if not values["chosen_teacher"] and not values["chosen_caption"]:
        raise MissingField("label has neither chosen_teacher nor chosen_caption")
    created = values.pop("created_at")
    try:
        values["created_at"] = _timestamp(created) if created else None
    except ValueError as exc:
        raise MalformedLabel(f"created_at {created!r} is not an ISO 8601 time") from exc
    values["source"] = source
    return values


def _pick(label: dict) -> str:
    return f"teacher {label['chosen_teacher']}" if label["chosen_teacher"] else f"caption {label['chosen_caption']!r}"


def _timestamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None

"""Selection-label files: good rows kept, each bad row one error with its class. No Spark."""
import json

import pytest

from panda_spark.errors import ConfigError
from panda_spark.select.labels import parse_labels

CSV = """clip_id,annotator,chosen_teacher,chosen_caption,created_at
c1,ann,blip2,,2026-11-01T10:00:00Z
c2,ann,,"A dog, running",
,ann,blip2,,
c3,ann,,,
c4,ann,git,,yesterday
c1,ann,git,,
c1,ann,blip2,,
"""


def test_csv_labels_and_their_errors():
    rows, errors = parse_labels("/data/labels.csv", CSV)
    assert [(r["clip_id"], r["chosen_teacher"], r["chosen_caption"]) for r in rows] == [
        ("c1", "blip2", None), ("c2", None, "A dog, running")]
    assert rows[0]["created_at"].isoformat() == "2026-11-01T10:00:00" and rows[0]["source"] == "labels.csv"
    assert {(e.key, e.error_class) for e in errors} == {
        ("labels.csv:4", "MissingField"), ("c3/ann", "MissingField"), ("c4/ann", "MalformedLabel"),
        ("c1/ann", "ConflictingLabel")}  # the identical repeat of c1 is no error
    assert json.loads(next(e for e in errors if e.key == "c4/ann").input_snapshot)["created_at"] == "yesterday"


def test_jsonl_labels_with_a_broken_line():
    text = '{"clip_id": "c1", "annotator": "a", "chosen_teacher": "blip2"}\n\n{"clip_id": "c2",\n["not", "a", "row"]\n'
    rows, errors = parse_labels("labels.jsonl", text)
    assert [r["clip_id"] for r in rows] == ["c1"]
    assert [(e.key, e.error_class) for e in errors] == [("labels.jsonl:3", "MalformedLabel"),
                                                        ("labels.jsonl:4", "MalformedLabel")]


def test_unknown_format_and_missing_header_are_configuration_errors():
    with pytest.raises(ConfigError, match="--labels x.txt"):
        parse_labels("x.txt", "")
    with pytest.raises(ConfigError, match="clip_id"):
        parse_labels("x.csv", "video,choice\n1,2\n")

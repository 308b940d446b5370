import json

import pandas as pd
import pytest

from panda_spark.demo import bad_inputs
from panda_spark.demo.synthetic import render_demo_sources
from panda_spark.ingest.core import IngestOptions, ingest_batch, ingest_row


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, render_demo_sources(out)


def manifest_row(out, **fields):
    row = {"video_id": None, "path": None, "url": None, "title": None, "description": None, "subtitles": None,
           "extra_json": "{}", "manifest_dir": str(out), "manifest_row": 7, "prior_signature": None}
    row.update(fields)
    return row


def test_good_row_is_probed_with_subtitles_and_hash(demo):
    out, videos = demo
    city = videos[0]
    result = ingest_row(
        manifest_row(out, video_id=city.video_id, path="videos/demo_city.mp4", title=" Old town ",
                     subtitles="subtitles/demo_city.vtt", extra_json='{"category": "Travel"}'),
        IngestOptions(),
    )
    assert result.status == "ingested", result.message
    assert result.path == str(city.path)
    assert result.title == "Old town"
    assert (result.frame_count, result.width, result.has_audio) == (900, 320, True)
    assert result.subtitles_format == "vtt" and result.subtitles_source == str(city.subtitles_path)
    assert result.subtitles[0]["start_s"] < result.subtitles[0]["end_s"]
    assert len(result.content_hash) == 64


def test_same_file_and_fields_as_before_is_unchanged_without_probing(demo):
    out, videos = demo
    row = manifest_row(out, video_id="v", path="videos/demo_kitchen.mp4")
    first = ingest_row(row, IngestOptions())
    again = ingest_row({**row, "prior_signature": first.source_signature}, IngestOptions())
    assert (again.status, again.video_id, again.frame_count) == ("unchanged", "v", None)
    retitled = ingest_row({**row, "title": "new", "prior_signature": first.source_signature}, IngestOptions())
    assert retitled.status == "ingested" and retitled.source_signature != first.source_signature


def test_inline_subtitles_are_parsed(demo):
    out, _ = demo
    inline = "1\n00:00:01,000 --> 00:00:02,500\nHello there\n"
    result = ingest_row(manifest_row(out, video_id="v", path="videos/demo_city.mp4", subtitles=inline), IngestOptions())
    assert (result.subtitles_format, result.subtitles_source) == ("srt", "inline")
    assert result.subtitles == [{"start_s": 1.0, "end_s": 2.5, "text": "Hello there"}]


@pytest.mark.parametrize(
    "fields, error_class, key",
    [
        ({"path": "videos/demo_city.mp4"}, "MissingField", "manifest row 7"),
        ({"video_id": "v"}, "MissingField", "v"),
        ({"video_id": "v", "path": "videos/nope.mp4"}, "FileNotFound", "v"),
        ({"video_id": "v", "path": "videos/demo_city.mp4", "subtitles": "subtitles/nope.vtt"}, "FileNotFound", "v"),
        ({"video_id": "v", "path": "videos/demo_city.mp4", "subtitles": "bad.vtt"}, "MalformedSubtitles", "v"),
        ({"video_id": "v", "path": "videos/demo_city.mp4", "subtitles": "latin1.vtt"}, "SubtitleEncoding", "v"),
        ({"video_id": "v", "path": "list.mp4"}, "NotAVideo", "v"),
    ],
)
def test_bad_rows_become_error_results_with_a_snapshot(demo, fields, error_class, key):
    out, _ = demo
    bad_inputs.malformed_vtt(out / "bad.vtt")
    bad_inputs.latin1_vtt(out / "latin1.vtt")
    bad_inputs.text_file(out / "list.mp4")
    result = ingest_row(manifest_row(out, **fields), IngestOptions())
    assert (result.status, result.error_class, result.key) == ("error", error_class, key)
    assert json.loads(result.input_snapshot)["path"] == fields.get("path")


def test_oversized_subtitles_and_disallowed_paths(demo, tmp_path):
    out, _ = demo
    row = manifest_row(out, video_id="v", path="videos/demo_city.mp4", subtitles="subtitles/demo_city.vtt")
    assert ingest_row(row, IngestOptions(max_subtitle_bytes=10)).error_class == "MalformedSubtitles"
    assert ingest_row(row, IngestOptions(allowed_roots=(str(tmp_path),))).error_class == "PathNotAllowed"
    assert ingest_row(row, IngestOptions(allowed_roots=(str(out),))).status == "ingested"


def test_batch_adapter_returns_one_row_per_input_in_declared_columns(demo):
    out, _ = demo
    batch = pd.DataFrame([manifest_row(out, video_id="a", path="videos/demo_city.mp4"),
                          manifest_row(out, video_id="b", path="videos/missing.mp4")])
    (result,) = list(ingest_batch(iter([batch]), IngestOptions()))
    assert list(result["status"]) == ["ingested", "error"]
    assert list(result.columns[:3]) == ["status", "key", "video_id"]
    assert result.loc[1, "error_class"] == "FileNotFound"

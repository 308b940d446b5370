"""End-to-end ingest on the local Spark + Delta session: synthetic set, every bad input, reruns."""
import csv
import json
import shutil

import pandas as pd
import pytest

from panda_spark.config import load_config
from panda_spark.demo import bad_inputs
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.errors import ConfigError
from panda_spark.ingest import stage
from panda_spark.spark import get_spark
from panda_spark.tables import TABLES, Lakehouse
from tests.conftest import overrides_for, shared_data

EXPECTED_ERRORS = {
    "missing": "FileNotFound",
    "truncated": "TruncatedVideo",
    "corrupt": "CorruptVideo",
    "zero_frames": "ZeroFrames",
    "not_a_video": "NotAVideo",
    "bad_subs": "MalformedSubtitles",
    "latin1_subs": "SubtitleEncoding",
    "outside": "PathNotAllowed",
    "demo_city@videos/other_city.mp4": "DuplicateVideoId",
    "manifest row": "MissingField",
}


def make_source_set(out, outside_dir):
    """Synthetic videos + one of each bad input (one file in `outside_dir`), all in one CSV
    manifest under `out`: (out, videos, manifest)."""
    videos = render_demo_sources(out)
    manifest = write_manifest(videos, out / "manifest.csv")
    city = videos[0].path
    bad = out / "bad"
    bad.mkdir()
    shutil.copy(city, out / "videos" / "other_city.mp4")
    outside = outside_dir / "elsewhere.mp4"
    shutil.copy(city, outside)
    rows = [
        ("missing", "videos/gone.mp4", ""),
        ("truncated", bad_inputs.truncated_copy(city, bad / "t.mp4"), ""),
        ("corrupt", bad_inputs.corrupt_copy(city, bad / "c.mp4"), ""),
        ("zero_frames", bad_inputs.zero_frame_video(bad / "z.mp4"), ""),
        ("not_a_video", bad_inputs.text_file(bad / "list.mp4"), ""),
        ("bad_subs", "videos/demo_city.mp4", bad_inputs.malformed_vtt(bad / "m.vtt")),
        ("latin1_subs", "videos/demo_city.mp4", bad_inputs.latin1_vtt(bad / "l.vtt")),
        ("outside", outside, ""),
        ("demo_city", "videos/other_city.mp4", ""),  # same id, other path
        ("demo_city", "videos/demo_city.mp4", "subtitles/demo_city.vtt"),  # exact repeat: dropped
        ("", "videos/demo_city.mp4", ""),
    ]
    with manifest.open("a", newline="") as fh:
        writer = csv.writer(fh)
        for video_id, path, subs in rows:
            writer.writerow([video_id, str(path), "", "", "", str(subs), "Test"])
    return out, videos, manifest


def ingest_into(schema, state_root, source_set):
    """The source set ingested into `schema` as run-1: (cfg, lake, report)."""
    out, _, manifest = source_set
    cfg = load_config(None, [*overrides_for(state_root, schema), f"paths.allowed_roots=[{out}]"])
    lake = Lakehouse(get_spark(cfg), cfg, "run-1")
    report = stage.run(lake.spark, cfg, "run-1", manifest=str(manifest))
    return cfg, lake, report


@pytest.fixture(scope="module")
def source_set(tmp_path_factory):
    """The module's source set: read-only (a test that changes files makes its own)."""
    return make_source_set(tmp_path_factory.mktemp("sources"), tmp_path_factory.mktemp("outside"))


@pytest.fixture(scope="module")
def ingested(spark, source_set, state_root):
    """The source set ingested once: read-only (reruns must leave it as it is)."""
    return ingest_into("ingest_e2e", state_root, source_set)


def test_good_rows_land_in_videos_with_probed_facts(ingested, source_set):
    _, lake, report = ingested
    _, videos, _ = source_set
    rows = {r.video_id: r for r in lake.read("videos").collect()}
    assert set(rows) == {v.video_id for v in videos}  # '-demo_dash' included, as a plain id
    for v in videos:
        row = rows[v.video_id]
        assert (row.frame_count, row.width, row.height, row.has_audio) == (v.frame_count, v.width, v.height, v.has_audio)
        assert row.fps_rational == f"{v.fps}/1"
        assert row.path == str(v.path) and row.bytes == v.path.stat().st_size
        assert row.extra == {"category": v.category}
        assert row.title == v.title and row.description == v.description
        assert row.run_id == "run-1" and row.probe_version == "probe-2"
    city = rows["demo_city"]
    assert city.subtitles_format == "vtt" and len(city.subtitles) >= 5
    assert all(c.start_s < c.end_s for c in city.subtitles)
    assert rows["-demo_dash"].subtitles_format == "srt"
    assert report.counts["ingested"] == 3


def test_each_bad_input_lands_in_errors_with_its_class(ingested):
    _, lake, report = ingested
    errors = {r.key: r for r in lake.read("errors").filter("stage = 'ingest'").collect()}
    found = {("manifest row" if k.startswith("manifest row") else k): r.error_class for k, r in errors.items()}
    assert found == EXPECTED_ERRORS
    assert report.counts["errored"] == len(EXPECTED_ERRORS)
    snapshot = json.loads(errors["truncated"].input_snapshot)
    assert snapshot["path"].endswith("t.mp4") and snapshot["extra"] == {"category": "Test"}
    assert "outside paths.allowed_roots" in errors["outside"].message


def test_rerun_adds_no_rows_and_probes_nothing(ingested, source_set):
    cfg, lake, _ = ingested
    before = lake.counts()
    report = stage.run(lake.spark, cfg, "run-2", manifest=str(source_set[2]))
    assert report.counts == {"ingested": 0, "updated": 0, "unchanged": 3, "errored": len(EXPECTED_ERRORS)}
    assert lake.counts() == before
    assert {r.run_id for r in lake.read("videos").collect()} == {"run-1"}


def test_a_changed_file_updates_its_row_and_a_fixed_one_leaves_errors(spark, state_root, tmp_path):
    sources = make_source_set(tmp_path / "sources", tmp_path)  # files changed below: its own set and schema
    out, videos, manifest = sources
    cfg, lake, _ = ingest_into("ingest_changed", state_root, sources)
    old_hash = lake.read("videos").filter("video_id = '-demo_dash'").first().content_hash
    shutil.copy(videos[1].path, videos[2].path)  # new content under the same path
    shutil.copy(videos[0].path, out / "videos" / "gone.mp4")  # the missing file appears
    report = stage.run(lake.spark, cfg, "run-3", manifest=str(manifest))
    assert (report.counts["ingested"], report.counts["updated"], report.counts["unchanged"]) == (1, 1, 2)
    dash = lake.read("videos").filter("video_id = '-demo_dash'").first()
    assert dash.content_hash != old_hash and dash.frame_count == videos[1].frame_count
    assert dash.run_id == "run-3"
    keys = {r.key for r in lake.read("errors").collect()}
    assert "missing" not in keys and "truncated" in keys


def test_jsonl_and_parquet_manifests_give_the_same_rows(spark, make_cfg, source_set, tmp_path):
    _, videos, _ = source_set
    records = [{"video_id": v.video_id, "path": str(v.path), "title": v.title, "lang": "en"} for v in videos[:2]]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    pd.DataFrame(records).to_parquet(tmp_path / "m.parquet")
    for name in ("m.jsonl", "m.parquet"):
        cfg = make_cfg()
        lake = Lakehouse(get_spark(cfg), cfg, "r")
        stage.run(lake.spark, cfg, "r", manifest=str(tmp_path / name))
        got = {(r.video_id, r.title, r.frame_count, r.extra["lang"]) for r in lake.read("videos").collect()}
        assert got == {(v.video_id, v.title, v.frame_count, "en") for v in videos[:2]}


def test_manifest_without_required_columns_is_a_config_error(spark, make_cfg, tmp_path):
    (tmp_path / "m.csv").write_text("id,file\nx,y.mp4\n")
    cfg = make_cfg()
    with pytest.raises(ConfigError, match="missing column\\(s\\) video_id, path"):
        stage.run(get_spark(cfg), cfg, "r", manifest=str(tmp_path / "m.csv"))
    with pytest.raises(ConfigError, match="no such file"):
        stage.run(get_spark(cfg), cfg, "r", manifest=str(tmp_path / "none.csv"))


def test_shared_panda_samples_and_videos(spark, make_cfg, tmp_path):
    samples = shared_data("panda70m_samples")
    expected = pd.read_csv(samples / "manifest.csv")
    videos_dir = shared_data("videos")
    subtitles = shared_data("subtitles", "--1ApFKwvjE.vtt")
    manifest = pd.DataFrame(
        [{"video_id": f[:-4], "path": str(samples / "clips" / f), "category": c} for f, c in
         zip(expected["file"], expected["category"])]
        + [{"video_id": "aerial_city", "path": str(videos_dir / "aerial_city.mp4"), "subtitles": str(subtitles)},
           {"video_id": "slides_1080p", "path": str(videos_dir / "slides_1080p.mp4")}]
    )
    manifest.to_csv(tmp_path / "m.csv", index=False)
    cfg = make_cfg()
    lake = Lakehouse(get_spark(cfg), cfg, "r")
    report = stage.run(lake.spark, cfg, "r", manifest=str(tmp_path / "m.csv"))
    assert report.counts["ingested"] == 42 and report.counts["errored"] == 0
    rows = {r.video_id: r for r in lake.read("videos").collect()}
    for item in expected.itertuples():
        row = rows[item.file[:-4]]
        assert row.fps_rational == item.fps and row.frame_count == item.frames
        assert (row.width, row.height) == (item.width, item.height)
        # the manifest's durations run 26 ms past libav's container duration on every clip
        assert row.duration_s == pytest.approx(item.duration, abs=0.03)
        assert row.extra["category"] == item.category
    assert rows["aerial_city"].subtitles[0].text == "[Scene 1] A man is playing with two lions in a zoo."
    assert (rows["slides_1080p"].frame_count, rows["slides_1080p"].width) == (3678, 1920)


def test_every_table_exists_after_a_stage(ingested):
    _, lake, _ = ingested
    assert set(lake.counts()) == set(TABLES)

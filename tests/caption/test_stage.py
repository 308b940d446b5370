"""The caption stage on the local Spark + Delta session with the tiny teachers of conf/local.yaml."""
import pytest

from panda_spark.caption import stage as caption
from panda_spark.config import load_config
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.ingest import stage as ingest
from panda_spark.spark import get_spark
from panda_spark.split import stage as split
from panda_spark.tables import Lakehouse
from tests.conftest import overrides_for

TEACHERS = [t.name for t in load_config(None).caption.teachers]


@pytest.fixture(scope="module")
def captioned(spark, state_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("caption_sources")
    videos = render_demo_sources(out)[1:]  # kitchen and dash: a handful of clips
    overrides = [*overrides_for(state_root, "caption_e2e"), f"models.cache_dir={out / 'models'}"]
    cfg = load_config(None, overrides)
    lake = Lakehouse(get_spark(cfg), cfg, "cap")
    ingest.run(lake.spark, cfg, "cap", manifest=str(write_manifest(videos, out / "manifest.csv")))
    split.run(lake.spark, cfg, "cap")
    # first without the last teacher, to add it later
    first = load_config(None, [*overrides, f"caption.teachers={_teachers_yaml(cfg, TEACHERS[:-1])}"])
    report = caption.run(lake.spark, first, "cap")
    return cfg, lake, report, videos


def _teachers_yaml(cfg, names):
    import json
    from dataclasses import asdict

    return json.dumps([asdict(t) for t in cfg.caption.teachers if t.name in names])


def test_one_row_per_clip_and_teacher(captioned):
    cfg, lake, report, _ = captioned
    clips = lake.read("clips").count()
    rows = lake.read("candidate_captions").collect()
    assert clips > 0 and len(rows) == clips * 3
    assert {(r.teacher, sum(1 for x in rows if x.teacher == r.teacher)) for r in rows} == {
        (t, clips) for t in TEACHERS[:-1]}
    assert all(r.caption is not None and r.generation_s >= 0 and r.teacher_version for r in rows)
    assert report.counts[f"{TEACHERS[0]}.captioned"] == clips


def test_prompts_hold_the_clip_subtitles_and_the_video_metadata(captioned):
    cfg, lake, _, videos = captioned
    kitchen = videos[0]
    rows = (lake.read("candidate_captions").join(lake.read("clips").select("clip_id", "video_id", "start_s"), "clip_id")
            .filter(f"teacher = 'qwen2-vl-tiny' AND video_id = '{kitchen.video_id}'").collect())
    assert rows
    for row in rows:
        assert f'"{kitchen.title}"' in row.prompt and row.inputs[0] == "video"
    first = min(rows, key=lambda r: r.start_s)
    assert "Onions are chopped on a yellow board." in first.prompt  # the first scene's own subtitle
    assert "plated" not in first.prompt  # not the last scene's


def test_a_rerun_adds_nothing_and_a_new_teacher_processes_only_itself(captioned):
    cfg, lake, _, _ = captioned
    clips = lake.read("clips").count()
    report = caption.run(lake.spark, cfg, "cap-2")
    assert [report.counts[f"{t}.captioned"] for t in TEACHERS] == [0, 0, 0, clips]
    assert lake.read("candidate_captions").count() == clips * 4
    again = caption.run(lake.spark, cfg, "cap-3")
    assert sum(v for k, v in again.counts.items() if k.endswith(".captioned")) == 0


def test_a_clip_with_missing_frames_lands_in_errors(captioned):
    cfg, lake, _, _ = captioned
    clip_id = lake.read("clips").orderBy("clip_id").first().clip_id
    lake.spark.sql(f"DELETE FROM {lake.name('clip_frames')} WHERE clip_id = '{clip_id}'")
    lake.spark.sql(f"DELETE FROM {lake.name('candidate_captions')} WHERE clip_id = '{clip_id}'")
    report = caption.run(lake.spark, cfg, "cap-4")
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'caption'").collect()}
    assert errors == {f"{clip_id}/{t}": "MissingFrames" for t in TEACHERS if t != "text-llm-tiny"}
    assert report.counts["text-llm-tiny.captioned"] == 1  # text needs no frames

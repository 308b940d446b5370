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


def _caption_all_but_the_last_teacher(state_root, tmp_path_factory, schema: str):
    """Two demo videos ingested and split into `schema`, captioned by every teacher but the last."""
    out = tmp_path_factory.mktemp(schema)
    videos = render_demo_sources(out)[1:]  # kitchen and dash: a handful of clips
    overrides = [*overrides_for(state_root, schema), f"models.cache_dir={out / 'models'}"]
    cfg = load_config(None, overrides)
    lake = Lakehouse(get_spark(cfg), cfg, "cap")
    ingest.run(lake.spark, cfg, "cap", manifest=str(write_manifest(videos, out / "manifest.csv")))
    split.run(lake.spark, cfg, "cap")
    # first without the last teacher, to add it later
    first = load_config(None, [*overrides, f"caption.teachers={_teachers_yaml(cfg, TEACHERS[:-1])}"])
    report = caption.run(lake.spark, first, "cap")
    return cfg, lake, report, videos


@pytest.fixture(scope="module")
def captioned(spark, state_root, tmp_path_factory):
    """Read only: the steps that change the tables run on `recaptioned`, so tests pass in any order."""
    return _caption_all_but_the_last_teacher(state_root, tmp_path_factory, "caption_e2e")


@pytest.fixture(scope="module")
def recaptioned(spark, state_root, tmp_path_factory):
    return _caption_all_but_the_last_teacher(state_root, tmp_path_factory, "caption_reruns")


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


def test_reruns_a_new_teacher_missing_frames_and_a_dependent_teacher(recaptioned):
    """Steps that build on each other's tables, in order, in their own schema."""
    _a_rerun_adds_nothing_and_a_new_teacher_processes_only_itself(recaptioned)
    _a_clip_with_missing_frames_lands_in_errors(recaptioned)
    _a_dependent_teacher_reads_the_upstream_caption_and_follows_its_version(recaptioned)


def _a_rerun_adds_nothing_and_a_new_teacher_processes_only_itself(state):
    cfg, lake, _, _ = state
    clips = lake.read("clips").count()
    report = caption.run(lake.spark, cfg, "cap-2")
    assert [report.counts[f"{t}.captioned"] for t in TEACHERS] == [0, 0, 0, clips]
    assert lake.read("candidate_captions").count() == clips * 4
    again = caption.run(lake.spark, cfg, "cap-3")
    assert sum(v for k, v in again.counts.items() if k.endswith(".captioned")) == 0


def _a_clip_with_missing_frames_lands_in_errors(state):
    cfg, lake, _, _ = state
    clip_id = lake.read("clips").orderBy("clip_id").first().clip_id
    lake.spark.sql(f"DELETE FROM {lake.name('clip_frames')} WHERE clip_id = '{clip_id}'")
    lake.spark.sql(f"DELETE FROM {lake.name('candidate_captions')} WHERE clip_id = '{clip_id}'")
    report = caption.run(lake.spark, cfg, "cap-4")
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'caption'").collect()}
    # text needs no frames, but text-llm-tiny reads blip2-tiny's caption, which failed: it waits
    assert errors == {**{f"{clip_id}/{t}": "MissingFrames" for t in TEACHERS if t != "text-llm-tiny"},
                      f"{clip_id}/text-llm-tiny": "MissingUpstreamCaption"}
    assert report.counts["text-llm-tiny.captioned"] == 0 and report.counts["text-llm-tiny.errored"] == 1


def _a_dependent_teacher_reads_the_upstream_caption_and_follows_its_version(state):
    """text-llm-tiny takes `captions:blip2-tiny`: its prompt holds blip2-tiny's caption of the clip;
    a new blip2-tiny version makes it pending: it waits (errors) until blip2-tiny re-captioned the clip,
    then captions the clip again with the new caption."""
    import copy

    from panda_spark.caption.inputs import teacher_versions

    cfg, lake, _, _ = state
    caption.run(lake.spark, cfg, "dep-0")  # whatever the steps before left pending
    every_clip = {r.clip_id for r in lake.read("clips").collect()}
    # the clips blip2-tiny can caption (not the one whose frames a step before deleted)
    clips = {r.clip_id for r in lake.read("candidate_captions").filter("teacher = 'blip2-tiny'").collect()}
    assert clips

    def rows(teacher: str, version: str) -> dict:
        return {r.clip_id: r for r in lake.read("candidate_captions")
                .filter(f"teacher = '{teacher}' AND teacher_version = '{version}'").collect()}

    def check_prompts(versions: dict) -> None:
        upstream = rows("blip2-tiny", versions["blip2-tiny"])
        dependent = rows("text-llm-tiny", versions["text-llm-tiny"])
        assert set(dependent) == set(upstream) == clips
        for clip_id, row in dependent.items():
            quoted = upstream[clip_id].caption.replace('"', "\u201d")
            assert f'A description of what the video shows: "{quoted}".' in row.prompt
            assert "captions:blip2-tiny" in row.inputs

    before = teacher_versions(cfg.caption.teachers)
    check_prompts(before)
    changed = copy.deepcopy(cfg)
    changed.caption.teachers[0].max_new_tokens = 6  # blip2-tiny: a new version
    after = teacher_versions(changed.caption.teachers)
    assert after["text-llm-tiny"] != before["text-llm-tiny"] and after["qwen2-vl-tiny"] == before["qwen2-vl-tiny"]

    waiting = caption.run(lake.spark, changed, "dep-1", teachers=["text-llm-tiny"])  # blip2-tiny not re-run yet
    assert (waiting.counts["text-llm-tiny.captioned"], waiting.counts["text-llm-tiny.errored"]) == (0, len(every_clip))
    errors = lake.read("errors").filter("stage = 'caption' AND key LIKE '%/text-llm-tiny'").collect()
    assert {r.error_class for r in errors} == {"MissingUpstreamCaption"} and len(errors) == len(every_clip)

    report = caption.run(lake.spark, changed, "dep-2")
    assert {t: report.counts[f"{t}.captioned"] for t in TEACHERS} == {
        "blip2-tiny": len(clips), "git-video-tiny": 0, "qwen2-vl-tiny": 0, "text-llm-tiny": len(clips)}
    check_prompts(after)
    errors = lake.read("errors").filter("stage = 'caption' AND key LIKE '%/text-llm-tiny'").collect()
    assert {r.key for r in errors} == {f"{c}/text-llm-tiny" for c in every_clip - clips}  # the rest got captioned

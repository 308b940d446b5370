"""The split stage on the local Spark + Delta session: tables, incremental reruns, re-splits, errors."""
import pytest

from panda_spark.config import ConfigError, load_config
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.ingest import stage as ingest
from panda_spark.spark import get_spark
from panda_spark.split import stage as split
from panda_spark.split.core import split_video
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.stitching import stitch_params
from panda_spark.tables import Lakehouse
from tests.conftest import overrides_for


def _split_demo(state_root, tmp_path_factory, schema: str):
    out = tmp_path_factory.mktemp(schema)
    videos = render_demo_sources(out)
    cfg = load_config(None, overrides_for(state_root, schema))
    lake = Lakehouse(get_spark(cfg), cfg, "split-run")
    ingest.run(lake.spark, cfg, "split-run", manifest=str(write_manifest(videos, out / "manifest.csv")))
    report = split.run(lake.spark, cfg, "split-run")
    return lake, videos, report


@pytest.fixture(scope="module")
def lake(spark, state_root, tmp_path_factory):
    """Split with the default conf; tests that split again with other parameters use `resplit`."""
    return _split_demo(state_root, tmp_path_factory, "split_e2e")


@pytest.fixture(scope="module")
def resplit(spark, state_root, tmp_path_factory):
    """Each test using it re-splits every video with its own parameters: any order works."""
    return _split_demo(state_root, tmp_path_factory, "split_resplit")


def test_tables_hold_exactly_what_the_core_computes(lake):
    lake, videos, report = lake
    for video in videos:
        expected = split_video(video.video_id, str(video.path), ColorLayoutEmbedder(),
                               split.split_params(lake.cfg.split))
        clips = lake.read("clips").filter(f"video_id = '{video.video_id}'").orderBy("clip_idx").collect()
        assert [(c.clip_id, c.start_frame, c.end_frame, c.start_timecode) for c in clips] == [
            (c["clip_id"], c["start_frame"], c["end_frame"], c["start_timecode"]) for c in expected.clips]
        shots = lake.read("shots").filter(f"video_id = '{video.video_id}'").count()
        assert shots == len(expected.shots)
    frames = lake.read("clip_frames")
    assert frames.count() == 9 * lake.read("clips").count()
    assert frames.filter("role = 'keyframe'").count() == lake.read("clips").count()
    assert report.counts["videos"] == 3 and report.counts["errored"] == 0
    assert report.counts["clips"] == lake.read("clips").count() > 0


def test_rerun_skips_videos_split_with_the_same_parameters(lake):
    lake, _, _ = lake
    before = lake.counts()
    report = split.run(lake.spark, lake.cfg, "split-run-2")
    assert (report.counts["videos"], report.counts["skipped"]) == (0, 3)
    assert lake.counts() == before


def test_new_parameters_resplit_and_replace_old_rows(resplit, state_root):
    lake, _, _ = resplit
    released = load_config(None, [*overrides_for(state_root, "split_resplit"), "split.preset=released_code"])
    report = split.run(lake.spark, released, "split-run-3")
    assert report.counts["videos"] == 3
    clips = lake.read("clips").collect()
    assert {c.preset for c in clips} == {"released_code"} and {c.run_id for c in clips} == {"split-run-3"}
    clip_ids = {c.clip_id for c in clips}
    assert {r.clip_id for r in lake.read("clip_frames").select("clip_id").collect()} == clip_ids
    assert lake.read("shots").select("params_hash").distinct().count() == 1


def test_a_video_that_cannot_be_read_lands_in_errors_and_the_rest_split(spark, state_root, tmp_path):
    videos = render_demo_sources(tmp_path)
    cfg = load_config(None, overrides_for(state_root, "split_errors"))
    lake = Lakehouse(get_spark(cfg), cfg, "r")
    ingest.run(lake.spark, cfg, "r", manifest=str(write_manifest(videos, tmp_path / "manifest.csv")))
    videos[1].path.write_bytes(b"gone bad after ingest")
    report = split.run(lake.spark, cfg, "r")
    assert (report.counts["videos"], report.counts["errored"]) == (2, 1)
    (error,) = lake.read("errors").filter("stage = 'split'").collect()
    assert (error.key, error.error_class) == (videos[1].video_id, "CorruptVideo")
    assert lake.read("clips").select("video_id").distinct().count() == 2


def test_a_transformers_embedder_from_conf_resplits_in_spark(resplit, state_root, tmp_path):
    from tests.models.tiny import tiny_clip

    lake, _, _ = resplit
    model = tiny_clip(tmp_path / "clip")
    cfg = load_config(None, [*overrides_for(state_root, "split_resplit"), f"split.embedder={model}",
                             "split.embed_batch_size=8"])
    report = split.run(lake.spark, cfg, "split-run-hf")
    assert report.counts["videos"] == 3 and report.counts["errored"] == 0
    clips = lake.read("clips").collect()
    assert clips and {len(c.embedding) for c in clips} == {16}
    assert {c.params_hash for c in clips} == {r.params_hash for r in lake.read("shots").collect()}


def test_the_emr_conf_runs_on_the_provided_session(spark, tmp_path):
    """Cluster mode: the session is the one already running (as spark-submit gives it), tables are
    external at catalog.location; only paths and the embedder are pointed at local stand-ins."""
    from tests.conftest import REPO

    videos = render_demo_sources(tmp_path / "src")[:1]
    cfg = load_config(REPO / "conf" / "emr.yaml", [
        f"paths.root={tmp_path / 'node'}", f"paths.allowed_roots=[{tmp_path / 'src'}]",
        f"catalog.location={tmp_path / 'lake'}", "catalog.schema=emr_like", "split.embedder=color-layout",
        "ingest.partitions=2", "split.partitions=2",
    ])
    session = get_spark(cfg)
    assert session is spark  # no new session, no jars fetched
    ingest.run(session, cfg, "emr", manifest=str(write_manifest(videos, tmp_path / "src" / "manifest.csv")))
    report = split.run(session, cfg, "emr")
    assert report.counts["videos"] == 1 and report.counts["clips"] > 0
    location = spark.sql("DESCRIBE DETAIL emr_like.clips").first()["location"]
    assert location.endswith(f"{tmp_path / 'lake'}/clips")


def test_a_changed_video_file_is_split_again(spark, state_root, tmp_path):
    import shutil

    videos = render_demo_sources(tmp_path)
    # released_code: untrimmed clips, so the last one ends where the (new) footage ends
    cfg = load_config(None, [*overrides_for(state_root, "split_changed"), "split.preset=released_code"])
    lake = Lakehouse(get_spark(cfg), cfg, "r")
    manifest = str(write_manifest(videos, tmp_path / "manifest.csv"))
    ingest.run(lake.spark, cfg, "r1", manifest=manifest)
    assert split.run(lake.spark, cfg, "r1").counts["videos"] == 3
    shutil.copy(videos[0].path, videos[2].path)  # '-demo_dash' now holds the city footage
    assert ingest.run(lake.spark, cfg, "r2", manifest=manifest).counts["updated"] == 1
    report = split.run(lake.spark, cfg, "r2")
    assert (report.counts["videos"], report.counts["skipped"]) == (1, 2)
    dash = lake.read("clips").filter("video_id = '-demo_dash'").collect()
    assert {c.run_id for c in dash} == {"r2"} and max(c.end_frame for c in dash) == videos[0].frame_count


def test_clips_can_be_materialised_as_mp4_files_with_timestamps_from_zero(spark, state_root, tmp_path):
    import av

    videos = render_demo_sources(tmp_path / "src")[:1]
    cfg = load_config(None, [*overrides_for(state_root, "split_files"), "split.materialize_clips=true",
                             f"paths.root={tmp_path / 'root'}"])
    lake = Lakehouse(get_spark(cfg), cfg, "r")
    ingest.run(lake.spark, cfg, "r", manifest=str(write_manifest(videos, tmp_path / "src" / "manifest.csv")))
    split.run(lake.spark, cfg, "r")
    clips = lake.read("clips").collect()
    assert clips
    for clip in clips:
        assert clip.clip_path == f"{tmp_path / 'root'}/clips/{clip.clip_id[:2]}/{clip.clip_id}.mp4"
        with av.open(clip.clip_path) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == clip.end_frame - clip.start_frame
        assert frames[0].time == 0.0
        assert frames[-1].time == pytest.approx((len(frames) - 1) / 25.0)


def test_split_conf_defaults_to_the_panda70m_detector_and_preset():
    params = split.split_params(load_config(None, []).split)
    assert params.preset == "panda70m" and params.stitch == stitch_params("panda70m")
    assert (params.scan.flash_filter, params.scan.analysis_size) == ("suppress", "auto")
    fast = split.split_params(load_config(None, ["split.flash_filter=merge", "split.analysis_size=fixed",
                                                 "split.analysis_width=96", "split.analysis_height=54"]).split)
    assert (fast.scan.flash_filter, fast.scan.analysis_size, fast.scan.analysis_width, fast.scan.analysis_height) \
        == ("merge", "fixed", 96, 54)


@pytest.mark.parametrize("key, value", [("preset", "paper"), ("flash_filter", "flash"), ("analysis_size", "128x72")])
def test_unknown_split_choices_name_the_key_and_the_known_values(key, value):
    with pytest.raises(ConfigError, match=f"split.{key}.*expected one of"):
        load_config(None, [f"split.{key}={value}"])

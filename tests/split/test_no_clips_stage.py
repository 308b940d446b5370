"""The split stage on videos that yield no clip: committed, with a NoClips row saying why, cleared
once a re-split yields clips; and a rotated video's rotation recorded at ingest and applied."""
from fractions import Fraction

from panda_spark.config import load_config
from panda_spark.ingest import stage as ingest
from panda_spark.spark import get_spark
from panda_spark.split import stage as split
from panda_spark.tables import Lakehouse
from tests.conftest import overrides_for
from tests.video.media import moving_scene, write_video


def test_videos_without_clips_say_why_until_a_resplit_gives_them_clips(spark, state_root, tmp_path):
    tick = Fraction(1, 25)
    write_video(tmp_path / "one.mp4", moving_scene(1, 72, 128, (200, 40, 40), 1), [0], tick, 25)
    write_video(tmp_path / "short.mp4", moving_scene(25, 72, 128, (40, 60, 200), 2), range(25), tick, 25)
    write_video(tmp_path / "turned.mp4", moving_scene(25, 32, 64, (60, 160, 60), 3), range(25), tick, 25, rotation=90)
    (tmp_path / "manifest.csv").write_text("video_id,path\none,one.mp4\nshort,short.mp4\nturned,turned.mp4\n")
    overrides = [*overrides_for(state_root, "split_no_clips"), "split.preset=released_code"]
    cfg = load_config(None, overrides)
    lake = Lakehouse(get_spark(cfg), cfg, "r1")
    ingest.run(lake.spark, cfg, "r1", manifest=str(tmp_path / "manifest.csv"))
    rotation = {r.video_id: r.rotation for r in lake.read("videos").collect()}
    assert rotation == {"one": 0, "short": 0, "turned": 90}

    report = split.run(lake.spark, cfg, "r1")
    assert {k: report.counts[k] for k in ("videos", "clips", "no_clips", "errored")} == {
        "videos": 3, "clips": 0, "no_clips": 3, "errored": 0}
    errors = {r.key: (r.error_class, r.message) for r in lake.read("errors").filter("stage = 'split'").collect()}
    assert errors == {
        "one": ("NoClips", "no clips from 1 shot: 0 transitions, 1 shorter than min_len 2.0 s, 0 still, 0 redundant"),
        "short": ("NoClips", "no clips from 1 shot: 0 transitions, 1 shorter than min_len 2.0 s, 0 still, 0 redundant"),
        "turned": ("NoClips", "no clips from 1 shot: 0 transitions, 1 shorter than min_len 2.0 s, 0 still, 0 redundant"),
    }
    assert lake.read("shots").count() == 3
    assert split.run(lake.spark, cfg, "r2").counts["skipped"] == 3  # committed: not split again

    shorter = load_config(None, [*overrides, "split.min_len_s=0.5"])  # the 1 s videos now make clips
    report = split.run(lake.spark, shorter, "r3")
    assert (report.counts["videos"], report.counts["clips"], report.counts["no_clips"]) == (3, 2, 1)
    errors = {r.key: r.message for r in lake.read("errors").filter("stage = 'split'").collect()}
    assert errors == {
        "one": "no clips from 1 shot: 0 transitions, 1 shorter than min_len 0.5 s, 0 still, 0 redundant"}
    frames = lake.read("clip_frames").filter("video_id = 'turned'").select("width", "height").distinct().collect()
    assert [(f.width, f.height) for f in frames] == [(224, 448)]  # upright: 32×64 shown, short side 224

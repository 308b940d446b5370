"""split on imported Panda-70M videos once their file is there (as `download` leaves them): cut
at the published timestamps (same clip ids, times and shots), frames sampled, the published caption
a candidate for select; a clip past the file's end said in `errors`; a rerun does nothing; detect
mode replaces the published clips."""
from fractions import Fraction

import pytest
from pyspark.sql import Row

from panda_spark import storage
from panda_spark.config import load_config
from panda_spark.dataset import import_stage
from panda_spark.spark import get_spark
from panda_spark.split import stage as split
from panda_spark.split.published import published_hash
from panda_spark.tables import TABLES, Lakehouse
from panda_spark.video.probe import PROBE_VERSION, probe_video
from tests.conftest import overrides_for
from tests.video.media import moving_scene, write_video

TIMESTAMPS = [["0:00:00.500", "0:00:02.500"], ["0:00:03.000", "0:00:05.967"], ["0:00:07.000", "0:00:12.000"],
              ["0:00:09.000", "0:00:10.000"]]  # the file is 8.167 s: the third reaches its end, the fourth is past it


def downloaded(lake: Lakehouse, video_id: str, path: str) -> None:
    """The `videos` row as `download` leaves it: url and extra kept, the file probed."""
    row = lake.read("videos").filter(f"video_id = '{video_id}'").first().asDict()
    with storage.open_binary(path) as fh:
        probe = probe_video(fh, storage.stat_file(path).size)
    row.update(path=path, **{k: getattr(probe, k) for k in ("duration_s", "fps", "width", "height", "frame_count")},
               content_hash=storage.sha256_file(path), probe_version=PROBE_VERSION)
    columns = TABLES["videos"].domain_columns
    lake.merge("videos", lake.spark.createDataFrame([Row(**{c: row.get(c) for c in columns})],
                                                    lake.read("videos").select(*columns).schema))


@pytest.fixture(scope="module")
def imported(spark, state_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("published")
    frames = (moving_scene(75, 72, 128, (200, 40, 40), 1) + moving_scene(90, 72, 128, (40, 60, 200), 2)
              + moving_scene(80, 72, 128, (40, 200, 60), 3))
    video = write_video(tmp / "src.mp4", frames, range(len(frames)), Fraction(1, 30))
    shots = [[["0:00:00.000", "0:00:02.000"]], [["0:00:00.000", "0:00:02.967"]],
             [["0:00:00.000", "0:00:05.000"]], [["0:00:00.000", "0:00:01.000"]]]
    (tmp / "panda.csv").write_text(
        "videoID,url,timestamp,caption,matching_score,desirable_filtering,shot_boundary_detection\n"
        f"-vidA,https://www.youtube.com/watch?v=-vidA,\"{TIMESTAMPS}\","
        "\"['a red room.', 'a blue sky.', 'a green field.', 'after the end.']\",\"[0.5, 0.4, 0.3, 0.2]\","
        f"\"{['desirable'] * 4}\",\"{shots}\"\n")
    cfg = load_config(None, overrides_for(state_root, "split_published"))
    lake = Lakehouse(get_spark(cfg), cfg, "imp")
    import_stage.run(spark, cfg, "imp", csv=str(tmp / "panda.csv"))
    before = {r.clip_id: r for r in lake.read("clips").collect()}
    downloaded(lake, "-vidA", str(video))
    report = split.run(spark, cfg, "cut")
    return cfg, lake, before, report


def test_imported_clips_are_cut_at_their_published_times_and_get_frames(imported):
    cfg, lake, before, report = imported
    assert (report.counts["videos"], report.counts["published"], report.counts["clips"]) == (1, 1, 4)
    clips = {r.clip_id: r for r in lake.read("clips").collect()}
    assert set(clips) == set(before)  # the published clips, same ids
    by_time = sorted(clips.values(), key=lambda c: c.start_s)
    assert [[c.start_timecode, c.end_timecode] for c in by_time] == TIMESTAMPS
    assert [(c.start_s, c.end_s) for c in by_time] == [(before[c.clip_id].start_s, before[c.clip_id].end_s)
                                                       for c in by_time]
    # at 30 fps: the first frames shown at or after (within 1 ms) each start and end (5.967 s:
    # frame 179); the third ends with the file; the fourth has none
    assert [(c.start_frame, c.end_frame) for c in by_time] == [(15, 75), (90, 179), (210, 245), (None, None)]
    assert {c.params_hash for c in by_time} == {published_hash(split.split_params(cfg.split))}
    assert [c.shot_ids for c in by_time] == [before[c.clip_id].shot_ids for c in by_time]
    frames = lake.read("clip_frames").groupBy("clip_id").count().collect()
    assert sorted(r["count"] for r in frames) == [9, 9, 9]
    assert lake.read("shots").count() == 4  # the imported shots stay
    errors = [(r.key, r.error_class) for r in lake.read("errors").filter("stage = 'split'").collect()]
    assert errors == [("-vidA", "ClipsPastEnd")]
    assert lake.visible_clips().count() == 4 and lake.visible_clips(imported=False).count() == 4


def test_the_published_captions_join_the_candidates(imported):
    _, lake, _, _ = imported
    candidates = {(r.teacher, r.caption, tuple(r.inputs)) for r in lake.read("candidate_captions").collect()}
    assert candidates == {("panda70m", c, ("published",))
                          for c in ("a red room.", "a blue sky.", "a green field.", "after the end.")}


def test_a_rerun_cuts_nothing_and_detect_mode_replaces_the_published_clips(imported):
    cfg, lake, before, _ = imported
    assert split.run(lake.spark, cfg, "again").counts["skipped"] == 1
    report = split.run(lake.spark, cfg, "detect", mode="detect")
    assert (report.counts["videos"], report.counts["published"]) == (1, 0)
    clips = lake.read("clips").collect()
    assert clips and not {c.clip_id for c in clips} & set(before)
    assert lake.read("captions").join(lake.read("clips"), "clip_id", "left_anti").count() == 0
    assert lake.read("candidate_captions").count() == 0  # they belonged to the published clips

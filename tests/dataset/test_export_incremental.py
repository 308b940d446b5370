"""The incremental export on the local Spark + Delta session: stable files, only changed files
rewritten, waves that survive a kill.

Tables are written directly (no ingest / split): every clip has a stored clip file, so shards are
written without decoding. Ten videos v00..v09 with 1, 2, 3, 1, 2, 3, ... clips; 3 videos per CSV
and shards closed at 4 clips give CSVs [v00-v02] [v03-v05] [v06-v08] [v09] and shards
[v00 v01 v02] [v03 v04 v05] [v06 v07 v08] [v09].
"""
import csv
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from panda_spark.config import load_config
from panda_spark.dataset import export_stage
from panda_spark.spark import get_spark
from panda_spark.tables import Lakehouse
from tests.conftest import commit_split, overrides_for

HEADER = "videoID,url,timestamp,caption,matching_score,desirable_filtering,shot_boundary_detection\n"
SETTINGS = ("export.videos_per_csv=3", "export.clips_per_shard=4")


def _lake(state_root, schema, export_dir, *overrides):
    cfg = load_config(None, [*overrides_for(state_root, schema), f"export.path={export_dir}", *SETTINGS, *overrides])
    return Lakehouse(get_spark(cfg), cfg, "test")


def _add_videos(lake, media: Path, clips_of: dict[str, int], fail: tuple[str, ...] = ()):
    """Videos with `clips_of[video_id]` captioned clips, each with a stored clip file (missing for
    the videos in `fail`: their shard write fails)."""
    spark = lake.spark
    media.mkdir(exist_ok=True)
    videos, clips, captions = [], [], []
    for video_id, n in clips_of.items():
        videos.append((video_id, str(media / f"{video_id}.mp4"), f"https://example.invalid/{video_id}", f"src-{video_id}"))
        for j in range(n):
            clip_id = f"{video_id}-c{j}"
            stored = media / f"{clip_id}.mp4"
            if video_id not in fail:
                stored.write_bytes(f"mp4 of {clip_id}".encode())
            start = 2.0 * j + 0.5
            clips.append((clip_id, video_id, j, 60 * j + 15, 60 * j + 90, start, start + 1.25, [], str(stored), "seed"))
            captions.append((clip_id, f"Clip {j} of {video_id}, it's fine.", "t", "t@1", 0.3 + 0.1 * j, j > 0))
    lake.merge("videos", lake.complete("videos", spark.createDataFrame(
        videos, "video_id string, path string, url string, content_hash string")))
    lake.merge("clips", lake.complete("clips", spark.createDataFrame(
        clips, "clip_id string, video_id string, clip_idx int, start_frame bigint, end_frame bigint, start_s double, "
               "end_s double, shot_ids array<string>, clip_path string, params_hash string")))
    commit_split(lake, list(clips_of))
    lake.merge("captions", lake.complete("captions", spark.createDataFrame(
        captions, "clip_id string, caption string, teacher string, teacher_version string, matching_score double, "
                  "good_match boolean").withColumn("selected_at", F.current_timestamp())))


def _set_captions(lake, video_id, caption):
    rows = lake.read("captions").filter(F.col("clip_id").startswith(f"{video_id}-")).collect()
    lake.merge("captions", lake.spark.createDataFrame([{**r.asDict(), "caption": caption} for r in rows],
                                                      lake.read("captions").schema))


BASE = {f"v{i:02d}": i % 3 + 1 for i in range(10)}


def _stats(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in root.rglob("*") if p.is_file()}


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(lake):
    return sorted(tuple(r) for r in lake.read("exported_videos").select(
        "video_id", "output", "file_index", "clips", "content_hash").collect())


def _csv_ids(path: Path) -> list[str]:
    return [r["videoID"] for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))]


def _tar_videos(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return list(dict.fromkeys(json.loads(tar.extractfile(n).read())["video_id"] for n in tar.getnames()
                                  if n.endswith(".json")))


def _first_export(state_root, schema, out):
    """BASE's tables in `schema`, exported once under `out`: (lake, out, report)."""
    lake = _lake(state_root, schema, out / "export")
    _add_videos(lake, out / "media", BASE)
    report = export_stage.run(lake.spark, lake.cfg, "first")
    return lake, out, report


@pytest.fixture(scope="module")
def incremental(spark, state_root, tmp_path_factory):
    """The first export: read-only (a test that changes tables makes its own)."""
    return _first_export(state_root, "export_incr", tmp_path_factory.mktemp("export_incremental"))


def test_first_export_fills_files_in_video_order(incremental):
    lake, out, report = incremental
    root = out / "export"
    csvs = sorted((root / "panda70m").glob("*.csv"))
    assert [p.name for p in csvs] == [f"panda70m_{i:05d}.csv" for i in range(4)]
    assert [_csv_ids(p) for p in csvs] == [["v00", "v01", "v02"], ["v03", "v04", "v05"], ["v06", "v07", "v08"], ["v09"]]
    shards = sorted((root / "webdataset").glob("*.tar"))
    assert [p.name for p in shards] == [f"{i:06d}.tar" for i in range(4)]
    assert [_tar_videos(p) for p in shards] == [["v00", "v01", "v02"], ["v03", "v04", "v05"], ["v06", "v07", "v08"],
                                                ["v09"]]
    manifest = json.loads((root / "_manifest.json").read_text())
    assert [e["path"] for e in manifest["files"]] == sorted(str(p.relative_to(root)) for p in csvs + shards)
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256((root / entry["path"]).read_bytes()).hexdigest()
    assert {e["path"]: (e["rows"], e["clips"]) for e in manifest["files"]}["webdataset/000003.tar"] == (1, 1)
    assert report.counts["files_written"] == 8 and report.counts["shard_clips"] == sum(BASE.values()) == 19
    assert {(r[0], r[1]): r[2] for r in _rows(lake)}[("v05", "webdataset")] == 1
    assert not (root / "_pending.json").exists() and not list(root.glob(".staging-*"))
    assert (root / "_manifest.json").stat().st_mode == csvs[0].stat().st_mode  # as readable as the files


def test_a_noop_rerun_writes_no_file(incremental):
    lake, out, _ = incremental
    root = out / "export"
    before, rows = _stats(root), _rows(lake)
    report = export_stage.run(lake.spark, lake.cfg, "noop")
    assert _stats(root) == before  # same mtime and inode: nothing rewritten, not even the manifest
    assert (report.counts["files_written"], report.counts["waves"], report.rows_in, report.rows_out) == (0, 0, 0, 0)
    assert (report.counts["csv_rows"], report.counts["shard_clips"], report.counts["shards"]) == (10, 19, 4)
    assert _rows(lake) == rows
    print(f"no-op export: {report.seconds} s")


def test_only_the_files_holding_new_changed_or_removed_videos_are_rewritten(spark, state_root, tmp_path):
    lake, out, _ = _first_export(state_root, "export_incr_changes", tmp_path)
    root = out / "export"

    def changed_since(before):
        now = _stats(root)
        return sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))

    # one new video, sorting in the middle: it fills the last files, nothing shifts
    before = _stats(root)
    _add_videos(lake, out / "media", {"v045": 2})
    report = export_stage.run(lake.spark, lake.cfg, "add")
    assert changed_since(before) == ["_manifest.json", "panda70m/panda70m_00003.csv", "webdataset/000003.tar"]
    assert report.counts["files_written"] == 2 and report.counts["new"] == 2  # its CSV row and its shard entry
    assert _csv_ids(root / "panda70m" / "panda70m_00003.csv") == ["v045", "v09"]  # video_id order inside
    assert _tar_videos(root / "webdataset" / "000003.tar") == ["v045", "v09"]

    # more new videos: the last CSV fills up, then new files open after it
    before = _stats(root)
    _add_videos(lake, out / "media", {"v10": 3, "v11": 1})
    report = export_stage.run(lake.spark, lake.cfg, "add-more")
    assert changed_since(before) == ["_manifest.json", "panda70m/panda70m_00003.csv", "panda70m/panda70m_00004.csv",
                                     "webdataset/000003.tar", "webdataset/000004.tar"]
    assert [_csv_ids(root / "panda70m" / f"panda70m_0000{i}.csv") for i in (3, 4)] == [["v045", "v09", "v10"], ["v11"]]
    assert [_tar_videos(root / "webdataset" / f"00000{i}.tar") for i in (3, 4)] == [["v045", "v09", "v10"], ["v11"]]

    # a changed caption: exactly the CSV and the shard holding the video, with the new text
    before = _stats(root)
    _set_captions(lake, "v04", 'A "new" caption, with commas.')
    report = export_stage.run(lake.spark, lake.cfg, "change")
    assert changed_since(before) == ["_manifest.json", "panda70m/panda70m_00001.csv", "webdataset/000001.tar"]
    assert report.counts["changed"] == 2 and report.counts["files_written"] == 2
    text = (root / "panda70m" / "panda70m_00001.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["videoID"] for r in rows] == ["v03", "v04", "v05"] and text.startswith(HEADER)
    assert rows[1]["caption"] == repr(['A "new" caption, with commas.'] * 2)
    assert rows[0]["caption"] == repr(["Clip 0 of v03, it's fine."])
    with tarfile.open(root / "webdataset" / "000001.tar") as tar:
        assert tar.extractfile("v04-c1.txt").read().decode() == 'A "new" caption, with commas.'
        assert tar.extractfile("v04-c1.mp4").read() == b"mp4 of v04-c1"

    # a video without exported clips leaves its files; a file left without videos is deleted
    before = _stats(root)
    _set_captions(lake, "v07", None)
    _set_captions(lake, "v11", None)
    report = export_stage.run(lake.spark, lake.cfg, "remove")
    assert changed_since(before) == ["_manifest.json", "panda70m/panda70m_00002.csv", "panda70m/panda70m_00004.csv",
                                     "webdataset/000002.tar", "webdataset/000004.tar"]
    assert not (root / "panda70m" / "panda70m_00004.csv").exists() and not (root / "webdataset" / "000004.tar").exists()
    assert (report.counts["removed"], report.counts["files_written"], report.counts["files_deleted"]) == (4, 2, 2)
    assert _csv_ids(root / "panda70m" / "panda70m_00002.csv") == ["v06", "v08"]
    assert _tar_videos(root / "webdataset" / "000002.tar") == ["v06", "v08"]
    rows = {(r[0], r[1]): r[2:] for r in _rows(lake)}
    assert rows[("v07", "csv")] == (None, None, None) and rows[("v08", "csv")][0] == 2  # a tombstone; others stay
    manifest = json.loads((root / "_manifest.json").read_text())
    assert [e["path"] for e in manifest["files"]] == sorted(
        [f"panda70m/panda70m_0000{i}.csv" for i in range(4)] + [f"webdataset/00000{i}.tar" for i in range(4)])
    assert {e["path"]: e["sha256"] for e in manifest["files"]}["panda70m/panda70m_00002.csv"] == hashlib.sha256(
        (root / "panda70m" / "panda70m_00002.csv").read_bytes()).hexdigest()

    # v045 kept the file it was appended to (a layout by video_id would have moved it to file 1)
    assert _csv_ids(root / "panda70m" / "panda70m_00003.csv") == ["v045", "v09", "v10"]


def test_a_killed_export_and_a_plain_rerun_end_like_an_uninterrupted_one(spark, state_root, tmp_path, monkeypatch):
    ref = _lake(state_root, "export_crash_ref", tmp_path / "ref", "export.wave_files=2")
    hit = _lake(state_root, "export_crash_hit", tmp_path / "hit", "export.wave_files=2")
    for lake in (ref, hit):
        _add_videos(lake, tmp_path / "media", BASE)

    def kill_at(wave):
        def hook(k, n):
            if k == wave:
                raise RuntimeError(f"killed before the commit of wave {k} of {n}")
        monkeypatch.setattr(export_stage, "_before_commit", hook)

    def check_rerun_matches(run_id):
        monkeypatch.setattr(export_stage, "_before_commit", None)
        (tmp_path / "hit" / ".staging-dead" / "panda70m").mkdir(parents=True)  # what a real kill leaves
        export_stage.run(hit.spark, hit.cfg, run_id)
        export_stage.run(ref.spark, ref.cfg, run_id)
        assert _contents(tmp_path / "hit") == _contents(tmp_path / "ref")
        assert _rows(hit) == _rows(ref)

    # first export: CSVs 0-1, 2-3, then shards 0-1, 2-3; killed in the 3rd wave, after publishing
    kill_at(3)
    with pytest.raises(RuntimeError, match="wave 3 of 4"):
        export_stage.run(hit.spark, hit.cfg, "first")
    assert _tar_videos(tmp_path / "hit" / "webdataset" / "000001.tar") == ["v03", "v04", "v05"]
    assert not [r for r in _rows(hit) if r[1] == "webdataset"] and len(_rows(hit)) == 10  # CSV waves committed
    assert json.loads((tmp_path / "hit" / "_pending.json").read_text())["files"] == [
        "webdataset/000000.tar", "webdataset/000001.tar"]
    check_rerun_matches("first")
    assert not (tmp_path / "hit" / "_pending.json").exists() and not list((tmp_path / "hit").glob(".staging-*"))

    # an increment (a change, a removal, new videos: CSVs 0-1, 3-4, shards 0-1, 3-4) killed in its
    # 2nd wave: the first is committed, the second published, the new videos' rows not written
    for lake in (ref, hit):
        _set_captions(lake, "v01", "Changed.")
        _set_captions(lake, "v05", None)
        _add_videos(lake, tmp_path / "media", {"v12": 3, "v13": 2, "v14": 2})
    kill_at(2)
    with pytest.raises(RuntimeError, match="wave 2 of 4"):
        export_stage.run(hit.spark, hit.cfg, "increment")
    assert _csv_ids(tmp_path / "hit" / "panda70m" / "panda70m_00001.csv") == ["v03", "v04"]
    assert _csv_ids(tmp_path / "hit" / "panda70m" / "panda70m_00004.csv") == ["v14"]
    csv_rows = {r[0]: r[2] for r in _rows(hit) if r[1] == "csv"}
    assert csv_rows["v05"] is None and "v14" not in csv_rows  # wave 1 committed, wave 2 not
    check_rerun_matches("increment")
    assert _csv_ids(tmp_path / "hit" / "panda70m" / "panda70m_00003.csv") == ["v09", "v12", "v13"]

    # killed after publishing a change that is then undone before the rerun: the files of the
    # uncommitted wave (_pending.json) are rewritten from the tables as they are now
    original = hit.read("captions").filter("clip_id = 'v00-c0'").first().caption
    _set_captions(hit, "v00", "Changed, then undone.")
    kill_at(1)
    with pytest.raises(RuntimeError, match="wave 1 of 1"):
        export_stage.run(hit.spark, hit.cfg, "undone")
    assert "Changed, then undone." in (tmp_path / "hit" / "panda70m" / "panda70m_00000.csv").read_text()
    _set_captions(hit, "v00", original)
    check_rerun_matches("after-undo")
    assert "Changed, then undone." not in (tmp_path / "hit" / "panda70m" / "panda70m_00000.csv").read_text()


def test_a_failing_video_is_probed_not_rewritten_and_clears_once_fixed(spark, state_root, tmp_path):
    lake = _lake(state_root, "export_probe", tmp_path / "export")
    _add_videos(lake, tmp_path / "media", {"a1": 2, "a2": 1, "a3": 3}, fail=("a2",))
    report = export_stage.run(lake.spark, lake.cfg, "first")
    (error,) = lake.read("errors").filter("stage = 'export'").collect()
    assert (error.key, error.error_class, report.errored) == ("a2", "FileNotFound", 1)
    assert _tar_videos(tmp_path / "export" / "webdataset" / "000000.tar") == ["a1", "a3"]
    assert _csv_ids(tmp_path / "export" / "panda70m" / "panda70m_00000.csv") == ["a1", "a2", "a3"]

    before = _stats(tmp_path / "export")
    report = export_stage.run(lake.spark, lake.cfg, "still-broken")  # probed, still failing: no file written
    assert _stats(tmp_path / "export") == before
    assert (report.counts["still_failing"], report.counts["files_written"]) == (1, 0)
    assert lake.read("errors").filter("stage = 'export'").count() == 1

    (tmp_path / "media" / "a2-c0.mp4").write_bytes(b"mp4 of a2-c0")
    report = export_stage.run(lake.spark, lake.cfg, "fixed")
    assert (report.counts["retried"], report.counts["files_written"]) == (1, 1)
    assert _tar_videos(tmp_path / "export" / "webdataset" / "000000.tar") == ["a1", "a2", "a3"]
    assert lake.read("errors").filter("stage = 'export'").count() == 0
    assert _stats(tmp_path / "export")["panda70m/panda70m_00000.csv"] == before["panda70m/panda70m_00000.csv"]


def test_publishing_on_an_object_store_moves_whole_files(tmp_path):
    """The driver-side file operations on an fsspec URI (the in-memory filesystem)."""
    import fsspec

    from panda_spark.dataset import writers

    fs = fsspec.filesystem("memory")
    root = f"memory://export-{tmp_path.name}"
    assert writers.list_names(f"{root}/panda70m") == [] and writers.read_text(f"{root}/_manifest.json") is None
    writers.write_text_atomic(f"{root}/.staging-x/panda70m/panda70m_00000.csv", HEADER + "a\n")
    writers.write_text_atomic(f"{root}/panda70m/panda70m_00000.csv", HEADER)
    writers.write_text_atomic(f"{root}/panda70m/panda70m_00001.csv", HEADER + "old\n")
    writers.replace_files([(f"{root}/.staging-x/panda70m/panda70m_00000.csv", f"{root}/panda70m/panda70m_00000.csv")])
    writers.remove_files([f"{root}/panda70m/panda70m_00001.csv", f"{root}/panda70m/panda70m_00009.csv"])
    assert writers.list_names(f"{root}/panda70m") == ["panda70m_00000.csv"]
    assert writers.read_text(f"{root}/panda70m/panda70m_00000.csv") == HEADER + "a\n"
    assert not fs.exists(f"/export-{tmp_path.name}/.staging-x/panda70m/panda70m_00000.csv")

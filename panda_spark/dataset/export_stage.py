"""export (Spark wrapper): `videos` + `clips` + `shots` + `captions` → Panda-70M CSVs and webdataset shards.

Input: every clip with a selected caption (`captions.caption` and a finite `matching_score`; with
`export.good_match_only` only good matches), its video's `url`, `path`, `content_hash` and
`extra`, and the `shots` named by `clips.shot_ids`. Output, under `export.path` (default
`<paths.root>/export`):

- `panda70m/panda70m_NNNNN.csv`: one row per source video in the published format
  (:mod:`panda_spark.dataset.panda70m`), at most `export.videos_per_csv` rows per file, rows in
  video_id order inside a file. `desirable_filtering` holds the labels imported clips came with,
  and is empty for a video with a clip of unknown label (the release has no "unknown" label; it
  is never derived from good_match); `shot_boundary_detection` holds each clip's detected shots
  (forced 5-s pieces merged back into the shot they were cut from) cut to the clip, relative to
  its start.
- `webdataset/NNNNNN.tar` (`export.webdataset`): per clip `<clip_id>.mp4` (the stored clip file,
  or cut from the source: every video decoded once, in one task), `.txt` (caption) and `.json`
  (clip_id, video_id, url, times, teacher, matching_score, good_match, ...); a video's clips stay
  in one shard, a shard is closed once it holds `export.clips_per_shard` clips. Clips of imported
  videos not downloaded (no file), and published clips past the end of their download (no frame
  range), are in the CSV only.
- `_manifest.json`: every file with its rows (videos), clips, bytes and sha256, sorted by path;
  rewritten after each wave, so it always describes the files on disk.

Incremental, by `exported_videos` (video_id, output 'csv' | 'webdataset', file_index, clips,
content_hash): each video's exported content is hashed in Spark (sha2 over what the output holds
of it, see :func:`with_hashes`) and compared with the row of the last export:

- a video keeps its file once exported, also when its content changes; a video that no longer
  has exported clips is taken out of its file (its row becomes a tombstone: file_index NULL);
- new videos, in video_id order, fill the highest-numbered file while it has room (fewer than
  `videos_per_csv` rows / `clips_per_shard` clips), then open the next index. A changed video
  can grow its file past the bound; changing the bounds only affects files filled later;
- only files holding a new, changed or removed video are rewritten, each whole from all of its
  current videos (also files missing on disk, stray files with a contract name, and the files of
  a wave that did not commit: `_pending.json`). A no-op rerun writes nothing;
- a video whose clips could not be cut keeps its place with clips = 0 (`errors`, stage export,
  key video_id); each run probes those videos (a decode, no write) and rewrites the shard of
  those that now work, so errors clear once the source is fixed.

Crash safety: the affected files are written in waves of `export.wave_files` files, in
(output, index) order. A wave writes its files to `<export.path>/.staging-<uuid>` (Spark tasks),
lists them in `_pending.json`, publishes each by atomic replace, rewrites `_manifest.json`,
records / clears the wave's errors, and only then MERGEs its `exported_videos` rows (the commit
marker). Killed anywhere, a plain rerun recomputes the same plan from the tables (committed waves
are unchanged now, new videos continue from the last committed file) and rewrites the
uncommitted files with identical bytes.
Resources: CSV tasks are light; shard tasks hold one video's decoder and its clips' encoders.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.dataset import writers
from panda_spark.dataset.panda70m import header_line
from panda_spark.runs import StageReport
from panda_spark.tables import Lakehouse, has_file
from panda_spark.waves import Progress

log = logging.getLogger(__name__)

STAGE = "export"
# Part of every content hash: bump it when the bytes written for the same rows change, and the
# next export rewrites every file.
FORMAT_VERSION = "panda70m-export/2"
MANIFEST = "_manifest.json"
PENDING = "_pending.json"

# Plan states of a (video, output): its row in exported_videos against its current content.
UNCHANGED, CHANGED, NEW, REMOVED, FAILED, RETRY = "unchanged", "changed", "new", "removed", "failed", "retry"
_REWRITE = (CHANGED, NEW, REMOVED, RETRY)  # a file holding one of these is rewritten
_KEPT = (UNCHANGED, CHANGED, FAILED, RETRY)  # already has a file

# Test hook: called on the driver as `_before_commit(wave, waves)` after a wave's files are
# published and before its exported_videos MERGE (crash-safety tests raise here).
_before_commit: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Output:
    name: str  # exported_videos.output
    folder: str
    file_name: Callable[[int], str]
    pattern: str  # file names of the contract, to find stray files


OUTPUTS = (Output("csv", "panda70m", writers.csv_name, r"panda70m_(\d+)\.csv"),
           Output("webdataset", "webdataset", writers.shard_name, r"(\d+)\.tar"))
_CSV_FIELDS = ("start_s", "end_s", "caption", "matching_score", "desirable_filtering", "shots")


def export_root(cfg: Config) -> str:
    return (cfg.export.path or f"{cfg.paths.root.rstrip('/')}/export").rstrip("/")


def exported_clips(lake: Lakehouse, good_match_only: bool) -> DataFrame:
    """One row per exported clip: the clip, its selected caption, its video, its shots and label."""
    captions = lake.read("captions").filter(
        F.col("caption").isNotNull() & F.col("matching_score").isNotNull() & ~F.isnan("matching_score"))
    if good_match_only:
        captions = captions.filter("good_match")
    clips = lake.visible_clips().select("clip_id", "video_id", "clip_idx", "start_frame", "end_frame", "start_s",
                                      "end_s", "shot_ids", "clip_path")
    shots = (clips.select("clip_id", F.explode("shot_ids").alias("shot_id"))
             .join(lake.read("shots").select("shot_id", "start_s", "end_s", "forced"), "shot_id")
             .groupBy("clip_id").agg(F.array_sort(F.collect_list(F.struct("start_s", "end_s", "forced")))
                                     .alias("shots")))
    videos = lake.read("videos").select(
        "video_id", "url", "path", (~has_file()).alias("csv_only"), F.col("content_hash").alias("source_hash"),
        F.from_json(F.col("extra").getItem("desirable_filtering"), "MAP<STRING, STRING>").alias("labels"))
    return (clips.join(captions.select("clip_id", "caption", "teacher", "teacher_version", "matching_score",
                                       "good_match"), "clip_id")
            .join(videos, "video_id").join(shots, "clip_id", "left")
            .withColumn("desirable_filtering", F.col("labels")[F.col("clip_id")]).drop("labels", "shot_ids"))


def per_video(clips: DataFrame) -> DataFrame:
    """video_id, url, path, csv_only, source_hash, clips (array of the clip rows, in time order)."""
    fields = ["start_s", "end_s", "clip_id", "clip_idx", "start_frame", "end_frame", "clip_path", "caption",
              "teacher", "teacher_version", "matching_score", "good_match", "desirable_filtering", "shots"]
    return clips.groupBy("video_id", "url", "path", "csv_only", "source_hash").agg(
        F.array_sort(F.collect_list(F.struct(*fields))).alias("clips"))


def with_hashes(videos: DataFrame) -> DataFrame:
    """+ csv_hash (what the video's CSV row is made of), wds_hash (what its shard members are made
    of: every clip field, the source path and its content hash) and n (its clips)."""
    csv = F.struct(F.lit(FORMAT_VERSION).alias("format"), "video_id", "url", F.transform(
        "clips", lambda c: F.struct(*[c[f].alias(f) for f in _CSV_FIELDS])).alias("clips"))
    wds = F.struct(F.lit(FORMAT_VERSION).alias("format"), "video_id", "url", "path", "source_hash", "clips")
    return videos.select("*", F.sha2(F.to_json(csv), 256).alias("csv_hash"),
                         F.sha2(F.to_json(wds), 256).alias("wds_hash"), F.size("clips").alias("n"))


def current_videos(lake: Lakehouse, cfg: Config) -> DataFrame:
    return with_hashes(per_video(exported_clips(lake, cfg.export.good_match_only)))


@dataclass
class _Run:
    """Driver state of one export run."""
    spark: SparkSession
    cfg: Config
    lake: Lakehouse
    root: str
    staging: str
    manifest: dict  # relative path → entry, describing the files on disk
    manifest_text: str | None  # as last read / written
    pending: set  # relative paths of files published by a wave that has not committed
    written: int = 0
    deleted: int = 0
    rows_out: int = 0
    errored: int = 0
    journal: bool = False  # _pending.json exists
    empty_csv: bool = False  # no video has a CSV row
    has_errors: bool = True  # the errors table may hold rows of this stage


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    root = export_root(cfg)
    spark.sparkContext.setJobGroup(f"panda-{STAGE}", f"export to {root}")
    storage.use_options(cfg.paths.storage_options)
    for name in writers.list_names(root):  # staging left by a killed run
        if name.startswith(".staging-"):
            storage.remove_tree(f"{root}/{name}")
    manifest_text = writers.read_text(f"{root}/{MANIFEST}")
    pending_text = writers.read_text(f"{root}/{PENDING}")
    state = _Run(spark, cfg, lake, root, f"{root}/.staging-{uuid.uuid4().hex}",
                 {e["path"]: e for e in json.loads(manifest_text)["files"]} if manifest_text else {}, manifest_text,
                 set(json.loads(pending_text)["files"]) if pending_text else set(), journal=pending_text is not None)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")  # rows of whole videos

    spark.sparkContext.setJobDescription("export: content hashes against exported_videos")
    plan, states, files = _plan(state)
    waves, present = _affected(state, files)
    if waves:
        state.has_errors = not lake.read("errors").filter(F.col("stage") == STAGE).isEmpty()
    try:
        _write_waves(state, plan, waves)
    except BaseException:
        storage.remove_tree(state.staging)
        raise
    storage.remove_tree(state.staging)
    _save_manifest(state)
    if state.journal:  # every wave committed
        writers.remove_files([f"{root}/{PENDING}"])

    # the snapshot: the files there are now, with their rows and clips (from the manifest)
    totals = {out.name: {"rows": 0, "clips": 0} for out in OUTPUTS}
    for out in OUTPUTS:
        for index in present[out.name]:
            entry = state.manifest.get(f"{out.folder}/{out.file_name(index)}", {"rows": 0, "clips": 0})
            totals[out.name]["rows"] += entry["rows"]
            totals[out.name]["clips"] += entry["clips"]
    csv, shards = totals["csv"], totals["webdataset"]
    taken = states["taken"]
    report.counts = {
        "videos": states.get("videos", 0), "csv_rows": csv["rows"], "csv_files": max(len(present["csv"]), 1),
        "shard_videos": shards["rows"], "shard_clips": shards["clips"], "shards": len(present["webdataset"]),
        "errored": state.errored, "new": states.get(NEW, 0), "changed": states.get(CHANGED, 0),
        "removed": states.get(REMOVED, 0), "retried": states.get(RETRY, 0), "still_failing": states.get(FAILED, 0),
        "waves": len(waves), "files_written": state.written, "files_deleted": state.deleted}
    return report.finish(rows_in=taken, rows_out=state.rows_out, errored=state.errored)


# ---------------------------------------------------------------- planning


def _plan(state: _Run) -> tuple[DataFrame, dict, dict]:
    """One row per (video, output) now or formerly exported: video_id, output, hash, weight
    (1 per CSV row, its clips per shard), prior_clips, file_index, state; the count of rows per
    state; the files (see :func:`_files`)."""
    spark, cfg, lake = state.spark, state.cfg, state.lake
    current = current_videos(lake, cfg).select("video_id", "csv_only", "csv_hash", "wds_hash", "n")
    cur = current.select("video_id", F.lit("csv").alias("output"), F.col("csv_hash").alias("hash"),
                         F.lit(1).alias("weight"))
    if cfg.export.webdataset:
        cur = cur.unionByName(current.filter(~F.col("csv_only")).select(
            "video_id", F.lit("webdataset").alias("output"), F.col("wds_hash").alias("hash"), F.col("n").alias("weight")))
    prior = lake.read("exported_videos").filter(F.col("file_index").isNotNull()).select(
        "video_id", "output", F.col("file_index").alias("prior_file"), F.col("clips").alias("prior_clips"),
        F.col("content_hash").alias("prior_hash"))
    status = (F.when(F.col("hash").isNull(), F.lit(REMOVED)).when(F.col("prior_file").isNull(), F.lit(NEW))
              .when(~F.col("hash").eqNullSafe(F.col("prior_hash")), F.lit(CHANGED))
              .when(F.col("prior_clips") == 0, F.lit(FAILED)).otherwise(F.lit(UNCHANGED)))
    plan = cur.join(prior, ["video_id", "output"], "full").select(
        "video_id", "output", "hash", "weight", "prior_clips", F.col("prior_file").alias("file_index"),
        status.alias("state")).localCheckpoint(eager=True)
    counts, files = _files(plan)

    if counts.get(("webdataset", FAILED)):  # shards that failed before: rewrite those that work now
        spark.sparkContext.setJobDescription("export: probe the videos whose clips could not be cut")
        failed = plan.filter((F.col("output") == "webdataset") & (F.col("state") == FAILED)).select("video_id")
        probed = (current_videos(lake, cfg).join(failed, "video_id", "left_semi").select("video_id", "path", "clips")
                  .repartition(spark.sparkContext.defaultParallelism)
                  .mapInPandas(storage.in_tasks(writers.probe_media, cfg.paths.storage_options),
                               writers.PROBE_SCHEMA).filter("ok")
                  .select("video_id", F.lit("webdataset").alias("output"), F.lit(True).alias("fixed")))
        retry = F.when(F.col("fixed") & (F.col("state") == FAILED), F.lit(RETRY)).otherwise(F.col("state"))
        plan = plan.join(probed, ["video_id", "output"], "left").withColumn("state", retry).drop("fixed") \
            .localCheckpoint(eager=True)
        counts, files = _files(plan)

    if any(s == NEW for _, s in counts):
        plan = _assign_new(state, plan)
        counts, files = _files(plan)
    states: dict[str, int] = {}
    for (_, s), n in counts.items():
        states[s] = states.get(s, 0) + n
    states["videos"] = sum(n for (o, s), n in counts.items() if o == "csv" and s != REMOVED)
    states["taken"] = plan.filter(F.col("state").isin(*_REWRITE)).select("video_id").distinct().count() \
        if any(states.get(s) for s in _REWRITE) else 0
    return plan, states, files


def _assign_new(state: _Run, plan: DataFrame) -> DataFrame:
    """file_index for the NEW rows: in video_id order, fill the highest file of the output while it
    has room, then the next indexes (one task per output on two narrow columns)."""
    per_file = {"csv": state.cfg.export.videos_per_csv, "webdataset": state.cfg.export.clips_per_shard}
    loads = (plan.filter(F.col("state").isin(*_KEPT)).groupBy("output", "file_index")
             .agg(F.sum("weight").alias("load")).groupBy("output")
             .agg(F.max("file_index").alias("last"), F.max_by("load", "file_index").alias("load")).collect())
    start = {o: (0, 0, per_file[o]) for o in per_file}
    start.update({r.output: (r["last"], r["load"], per_file[r.output]) for r in loads})
    new = plan.filter(F.col("state") == NEW)
    assigned = new.select("output", "video_id", "weight").groupBy("output").applyInPandas(
        partial(_fill, start=start), "output STRING, video_id STRING, assigned INT")
    placed = new.join(assigned, ["output", "video_id"]).withColumn("file_index", F.col("assigned")).drop("assigned")
    return plan.filter(F.col("state") != NEW).unionByName(placed).localCheckpoint(eager=True)


def _fill(rows: pd.DataFrame, start: dict) -> pd.DataFrame:
    """Greedy filling: a file takes videos while it holds fewer than `per_file` units."""
    output = rows["output"].iloc[0]
    last, load, per_file = start[output]
    rows = rows.sort_values("video_id", kind="stable")
    weights = rows["weight"].to_numpy()
    if (weights == 1).all():  # CSV rows: plain arithmetic
        index = last + (min(load, per_file) + np.arange(len(rows))) // per_file
    else:
        index = np.empty(len(rows), dtype=np.int64)
        for i, w in enumerate(weights):
            if load >= per_file:
                last, load = last + 1, 0
            index[i], load = last, load + int(w)
    return pd.DataFrame({"output": output, "video_id": rows["video_id"].to_numpy(), "assigned": index.astype("int32")})


def _files(plan: DataFrame) -> tuple[dict, dict]:
    """(output, state) → rows of the plan; (output, index) → (rewrite, present, rows, clips as
    exported before) for every file the plan names. One small aggregate."""
    agg = plan.groupBy("output", "state", "file_index").agg(
        F.count(F.lit(1)).alias("n"), F.count(F.when(F.col("prior_clips") > 0, 1)).alias("rows"),
        F.coalesce(F.sum("prior_clips"), F.lit(0)).alias("clips")).collect()
    counts, files = {}, {}
    for r in agg:
        counts[(r.output, r.state)] = counts.get((r.output, r.state), 0) + r.n
        if r.file_index is None:  # NEW, not assigned yet
            continue
        rewrite, present, rows, clips = files.get((r.output, r.file_index), (False, False, 0, 0))
        if r.state != REMOVED:
            present, rows, clips = True, rows + r.rows, clips + r.clips
        files[(r.output, r.file_index)] = (rewrite or r.state in _REWRITE, present, rows, clips)
    return counts, files


def _affected(state: _Run, files: dict) -> tuple[list, dict]:
    """The waves ([[(output, [indexes])]]) and the files each output holds after this run. Also
    brings the manifest in line with the disk: entries of files that are gone are dropped, files
    it lacks (written before it existed) are hashed once."""
    size = state.cfg.export.wave_files
    todo, present, unlisted, on_disk = [], {}, [], set()
    for out in OUTPUTS:
        names = writers.list_names(f"{state.root}/{out.folder}")
        existing = {int(m[1]) for m in (re.fullmatch(out.pattern, n) for n in names)
                    if m and out.file_name(int(m[1])) == m[0]}
        on_disk |= {f"{out.folder}/{out.file_name(i)}" for i in existing}
        mine = {i: v for (o, i), v in files.items() if o == out.name}
        keep = {i for i, (_, has_videos, _, _) in mine.items() if has_videos}
        empty_csv = out.name == "csv" and not keep
        if empty_csv:  # an empty export still says what it is: a header-only file 0
            keep, state.empty_csv = {0}, True
        rewrite = {i for i, (changes, _, _, _) in mine.items() if changes}
        rewrite |= keep - existing  # missing on disk
        rewrite |= existing - keep  # stray, or all of its videos gone: deleted
        rewrite |= {i for i in existing | set(mine) if f"{out.folder}/{out.file_name(i)}" in state.pending}
        if empty_csv:
            entry = state.manifest.get(f"{out.folder}/{out.file_name(0)}")
            if entry is None or entry["rows"]:
                rewrite.add(0)
        present[out.name] = sorted(keep)
        todo += [(out, i) for i in sorted(rewrite)]
        for index in keep - rewrite:
            name = f"{out.folder}/{out.file_name(index)}"
            if name not in state.manifest:
                _, _, rows, clips = mine[index]
                unlisted.append((name, rows, clips))
    state.manifest = {k: v for k, v in state.manifest.items() if k in on_disk}
    if unlisted:
        state.spark.sparkContext.setJobDescription("export: hash the files the manifest lacks")
        paths = [f"{state.root}/{name}" for name, _, _ in unlisted]
        digest = storage.in_tasks(_digest, state.cfg.paths.storage_options)
        digests = state.spark.sparkContext.parallelize(paths, min(len(paths), 256)).map(digest).collect()
        for (name, rows, clips), (sha, nbytes) in zip(unlisted, digests):
            state.manifest[name] = {"path": name, "rows": rows, "clips": clips, "bytes": nbytes, "sha256": sha}
    waves = []  # chunks of `size` files, CSVs first; a wave's files grouped by output
    for start in range(0, len(todo), size):
        chunk = todo[start:start + size]
        waves.append([(out, [i for o, i in chunk if o is out]) for out in OUTPUTS if any(o is out for o, _ in chunk)])
    return waves, present


def _digest(path: str) -> tuple[str, int]:
    return storage.sha256_file(path), storage.stat_file(path).size


# ---------------------------------------------------------------- writing


def _write_waves(state: _Run, plan: DataFrame, waves: list) -> None:
    if not waves:
        log.info("export: nothing changed, no file written")
        return
    spark, lake = state.spark, state.lake
    affected = spark.createDataFrame([(out.name, i) for wave in waves for out, indexes in wave for i in indexes],
                                     "output STRING, file_index INT")
    members = plan.filter(F.col("state") != REMOVED).join(F.broadcast(affected), ["output", "file_index"])
    spark.sparkContext.setJobDescription("export: the videos of the files to rewrite")
    full = current_videos(lake, state.cfg).join(members.select("video_id").distinct(), "video_id", "left_semi") \
        .localCheckpoint(eager=True)
    progress = Progress(STAGE, "files", sum(len(indexes) for wave in waves for _, indexes in wave), len(waves))
    for k, wave in enumerate(waves, 1):
        _write_wave(state, plan, full, wave, k, len(waves))
        progress.advance(k - 1, sum(len(indexes) for _, indexes in wave))


def _write_wave(state: _Run, plan: DataFrame, full: DataFrame, wave: list, k: int, n: int) -> None:
    """Write the wave's files (every output in one Spark job) to staging, publish them, update the
    manifest and the errors, then commit the wave's exported_videos rows."""
    spark, lake, root = state.spark, state.lake, state.root
    spark.sparkContext.setJobDescription(
        f"export: wave {k} of {n}, " + ", ".join(f"{len(ix)} {out.folder} files" for out, ix in wave))
    parts, hashes, removed = [], [], []
    for out, indexes in wave:
        mine = plan.filter(F.col("output") == out.name).join(
            F.broadcast(spark.createDataFrame([(i,) for i in indexes], "file_index INT")), "file_index")
        rows = full.join(mine.filter(F.col("state") != REMOVED).select(
            "video_id", F.col("file_index").alias("file")), "video_id")
        staged_dir = f"{state.staging}/{out.folder}"
        if out.name == "csv":
            written, writer = rows.select("file", "video_id", "url", "clips"), writers.write_csv_parts
        else:
            written, writer = rows.select("file", "video_id", "path", "url", "clips"), writers.write_shards
        write = storage.in_tasks(partial(writer, out_dir=staged_dir), state.cfg.paths.storage_options)
        parts.append(written.repartition(len(indexes), "file").sortWithinPartitions("file", "video_id")
                     .mapInPandas(write, writers.STATUS_SCHEMA)
                     .withColumn("output", F.lit(out.name)))
        hashes.append(rows.select("video_id", F.lit(out.name).alias("output"), F.col(
            "csv_hash" if out.name == "csv" else "wds_hash").alias("content_hash")))
        removed.append(mine.filter(F.col("state") == REMOVED).select("video_id", F.lit(out.name).alias("output")))
    status = _union(parts).localCheckpoint(eager=True)
    reported = status.filter("status IN ('file', 'error')").collect()  # a row per file, and the failures
    summaries = {(r.output, r.file): r for r in reported if r.status == "file"}
    n_failed = sum(r.status == "error" for r in reported)

    names = {(out.name, i): f"{out.folder}/{out.file_name(i)}" for out, indexes in wave for i in indexes}
    header_only = state.empty_csv and ("csv", 0) in names
    if header_only:  # an empty export: file 0 with the header only
        writers.write_text_atomic(f"{state.staging}/{names[('csv', 0)]}", header_line())
    # the journal first: a crash from here on makes the next run rewrite these files
    state.pending |= set(names.values())
    state.journal = True
    writers.write_text_atomic(f"{root}/{PENDING}", json.dumps({"files": sorted(state.pending)}, indent=1) + "\n")
    publish = [key for key in names if key in summaries or (header_only and key == ("csv", 0))]
    writers.replace_files([(f"{state.staging}/{names[key]}", f"{root}/{names[key]}") for key in publish])
    gone = [key for key in names if key not in publish]
    writers.remove_files([f"{root}/{names[key]}" for key in gone])
    for key in gone:
        state.manifest.pop(names[key], None)
    header = header_line().encode("utf-8")
    for key in publish:
        s = summaries.get(key)
        state.manifest[names[key]] = {
            "path": names[key], "rows": s.rows if s else 0, "clips": s.clips if s else 0,
            "bytes": s.bytes if s else len(header), "sha256": s.sha256 if s else hashlib.sha256(header).hexdigest()}
    _save_manifest(state)
    state.written += len(publish)
    state.deleted += len(gone)
    state.rows_out += sum((s.rows if output == "csv" else s.clips) for (output, _), s in summaries.items())

    # errors of this wave; a video's error is cleared only when none of its outputs still fails
    removed_rows = _union(removed)
    state.errored += n_failed
    if n_failed:
        state.has_errors = True
        lake.record_errors(STAGE, status.filter("status = 'error'").select(
            F.col("video_id").alias("key"), "error_class", "message",
            F.to_json(F.struct("video_id", "output", F.col("file").alias("file_index"))).alias("input_snapshot")))
    if state.has_errors:
        videos = status.filter(F.col("video_id").isNotNull())
        in_wave = videos.select("video_id", "output").unionByName(removed_rows)
        elsewhere = lake.read("exported_videos").filter((F.col("clips") == 0) & F.col("file_index").isNotNull()) \
            .join(in_wave, ["video_id", "output"], "left_anti")
        failing = videos.filter("status = 'error'").select("video_id").unionByName(elsewhere.select("video_id"))
        lake.clear_errors(STAGE, videos.filter("status = 'written'").select("video_id")
                          .unionByName(removed_rows.select("video_id"))
                          .join(failing, "video_id", "left_anti").select(F.col("video_id").alias("key")))

    if _before_commit is not None:
        _before_commit(k, n)
    # the commit marker: this wave's rows of exported_videos
    marker = status.filter(F.col("video_id").isNotNull()).join(_union(hashes), ["video_id", "output"]).select(
        "video_id", "output", F.col("file").alias("file_index"),
        F.when(F.col("status") == "written", F.col("clips")).otherwise(F.lit(0)).alias("clips"), "content_hash")
    tombstones = removed_rows.select("video_id", "output", F.lit(None).alias("file_index"),
                                     F.lit(None).alias("clips"), F.lit(None).alias("content_hash"))
    lake.merge("exported_videos", marker.unionByName(tombstones))
    state.pending -= set(names.values())


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _save_manifest(state: _Run) -> None:
    """Write `_manifest.json` when its content differs from the one on disk."""
    text = json.dumps({"files": [state.manifest[k] for k in sorted(state.manifest)]}, indent=1, sort_keys=True) + "\n"
    if text != state.manifest_text:
        writers.write_text_atomic(f"{state.root}/{MANIFEST}", text)
        state.manifest_text = text

"""Scale: does the cost of an increment, and of a no-op rerun, stay flat as the lakehouse grows?

For each size N of `--sizes` a fresh lakehouse of N videos "already done by every stage" is built
directly with Spark (Panda-like shape: 18 clips per video, 9 frames per clip — 8 'uniform' + 1
'keyframe', tiny 32×32 JPEGs —, one shot per clip, split `commits` rows with the current parameter
hash, candidate captions of both teachers at their current teacher_version, a selected caption
per clip at the current scorer_version, all written two days ago), then exported once by the real
export stage. Then the same increment — `--increment` new small real mp4 videos (the demo set,
re-rendered with other seeds, renamed) — goes through the real stages, each timed: ingest (a
manifest), split, caption (2 tiny teachers: blip2-tiny on a frame, text-llm-tiny on subtitles +
metadata), select (`--scorer`, default tiny:clip, which reads frames) and export (CSV only,
export.webdataset=false). Then every stage runs again on the unchanged lakehouse: the no-op rerun.
A stage that touches base rows in the increment, or does any work in the no-op, is reported as a
FINDING. Each N runs in its own Python process (own embedded Spark, local[2] by default).

Printed: per N the base build s, the increment s per stage and total, the no-op s per stage;
the ratio increment(largest N) / increment(smallest N) (target ≤ 1.5); the slowest no-op stage
against the start-up of a fresh embedded Spark session (get_spark in a new process; target
≤ 2×); and split's peak worker RSS on a 1-min and a 10-min 640×360 video (bench/split_memory.py,
target ratio ≤ 1.3).

100k videos (1.8M clips, 16M frame rows) needs a bigger machine than a 2-core laptop-class box;
the defaults are 1k and 10k.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale_bench.py [--sizes 1000,10000] [--increment 100]
        [--root DIR] [--skip-rss]
    smoke: .venv/bin/python bench/scale_bench.py --sizes 200,1000 --increment 3 --skip-rss
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIPS_PER_VIDEO = 18
FRAMES_PER_CLIP = 9  # 8 uniform + 1 keyframe, as split writes them with uniform_frames 8
STAGES = ("ingest", "split", "caption", "select", "export")
TEACHERS = ('[{name: blip2-tiny, model: "tiny:blip2", adapter: blip2, inputs: [frame], max_new_tokens: 12}, '
            '{name: text-llm-tiny, model: "tiny:text-llm", adapter: text-llm, inputs: [subtitles, metadata], '
            'max_new_tokens: 12}]')


def overrides(root: Path, models: Path, master: str, scorer: str) -> list[str]:
    return [f"paths.root={root}", f"models.cache_dir={models}", "spark.mode=embedded", f"spark.master={master}",
            'spark.conf={"spark.ui.enabled": "false"}', "spark.log_level=ERROR", f"caption.teachers={TEACHERS}",
            f"select.scorer={scorer}", "export.webdataset=false"]


def _log(msg: str) -> None:
    print(f"[scale_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ increment videos (rendered once)


def render_increment(folder: Path, n: int) -> Path:
    """`n` distinct small real videos (demo set, seed k for the k-th batch of three, renamed
    inc<k>_<demo id>) with their subtitles, and the ingest manifest naming them."""
    from panda_spark.demo.synthetic import render_demo_sources, write_manifest

    manifest = folder / "manifest.csv"
    if manifest.exists() and sum(1 for _ in open(manifest)) - 1 == n:
        return manifest
    videos, seed = [], 0
    while len(videos) < n:
        batch = folder / f"seed{seed}"
        for v in render_demo_sources(batch, seed=seed + 1):
            if len(videos) == n:
                break
            vid = f"inc{seed:03d}_{v.video_id}"
            path = v.path.with_name(f"{vid}.mp4")
            os.replace(v.path, path)
            subs = None
            if v.subtitles_path is not None:
                subs = v.subtitles_path.with_name(vid + v.subtitles_path.suffix)
                os.replace(v.subtitles_path, subs)
            videos.append(dataclasses.replace(v, video_id=vid, path=path, subtitles_path=subs))
        seed += 1
    return write_manifest(videos, manifest)


# ------------------------------------------------------------------ the base lakehouse


def build_base(spark, cfg, n: int, demo_path: str) -> dict[str, float]:
    """Write a lakehouse of `n` videos that every stage treats as done; seconds per table."""
    import numpy as np
    from pyspark.sql import functions as F

    from panda_spark.caption.inputs import teacher_version
    from panda_spark.select.registry import scorer_spec
    from panda_spark.split.core import SPLITTER_VERSION
    from panda_spark.split.stage import EmbedderSpec, embedder_version, split_params
    from panda_spark.tables import Lakehouse
    from panda_spark.video.frames import encode_jpeg

    lake = Lakehouse(spark, cfg, "scale-bench-base")
    params_hash = split_params(cfg.split).hash(embedder_version(EmbedderSpec.from_config(cfg)))
    scorer_version = scorer_spec(cfg).version
    teachers = [(t.name, teacher_version(t), t.inputs) for t in cfg.caption.teachers]
    written = datetime.now(timezone.utc) - timedelta(days=2)  # an older increment: its own files
    selected = written + timedelta(hours=1)
    jpegs = [encode_jpeg(np.full((32, 32, 3), c, np.uint8)) for c in ((200, 40, 40), (40, 200, 40), (40, 40, 200),
                                                                      (120, 120, 120))]
    parts = max(2, n // 2000)
    seconds: dict[str, float] = {}

    def append(table: str, df, at=written) -> None:
        started = time.perf_counter()
        lake.ensure(table)
        df = df.withColumn("created_at", F.lit(at)).withColumn("updated_at", F.lit(at))
        lake.conform(table, df).write.format("delta").mode("append").saveAsTable(lake.name(table))
        seconds[table] = round(time.perf_counter() - started, 1)
        _log(f"base {n}: {table} written in {seconds[table]} s")

    ids = spark.range(0, n, 1, parts).select(F.format_string("base%07d", "id").alias("video_id"))
    ids = ids.withColumn("content_hash", F.sha2(F.concat(F.lit("scale-bench:"), "video_id"), 256))
    videos = ids.select(
        "video_id", "content_hash", F.lit(demo_path).alias("path"),
        F.concat(F.lit("https://example.invalid/watch?v="), "video_id").alias("url"),
        F.concat(F.lit("synthetic video "), "video_id").alias("title"),
        F.lit("a synthetic base video of the scale bench").alias("description"),
        F.lit(36.0).alias("duration_s"), F.lit(25.0).alias("fps"), F.lit("25/1").alias("fps_rational"),
        F.lit(25.0).alias("avg_fps"), F.lit(900).alias("frame_count"), F.lit(320).alias("width"),
        F.lit(180).alias("height"), F.lit("h264").alias("codec"), F.lit("yuv420p").alias("pix_fmt"),
        F.lit("mp4").alias("container"), F.lit(False).alias("has_audio"), F.lit(1_000_000).alias("bytes"),
        F.lit(written).alias("file_mtime"), F.lit("scale-bench").alias("source_signature"),
        F.lit("scale-bench").alias("probe_version"))
    append("videos", lake.complete("videos", videos))

    per_clip = ids.crossJoin(spark.range(CLIPS_PER_VIDEO).select(F.col("id").cast("int").alias("clip_idx")))
    per_clip = per_clip.select(
        "video_id", "content_hash", "clip_idx",
        F.format_string("%s-c%02d", "video_id", "clip_idx").alias("clip_id"),
        F.format_string("%s-s%02d", "video_id", "clip_idx").alias("shot_id"),
        (F.col("clip_idx") * 50).cast("bigint").alias("start_frame"),
        (F.col("clip_idx") * 50 + 48).cast("bigint").alias("end_frame"))
    per_clip = per_clip.withColumn("start_s", F.col("start_frame") / 25.0).withColumn("end_s", F.col("end_frame") / 25.0)
    append("shots", per_clip.select(
        "shot_id", "video_id", F.col("clip_idx").alias("shot_idx"), "start_frame", "end_frame", "start_s", "end_s",
        F.lit(False).alias("forced"), F.lit(30.0).alias("cut_score"), F.lit(params_hash).alias("params_hash"),
        F.lit(SPLITTER_VERSION).alias("splitter_version"), F.col("content_hash").alias("source_hash")))
    frames = per_clip.crossJoin(spark.range(FRAMES_PER_CLIP).select(F.col("id").cast("int").alias("frame_idx")))
    append("clip_frames", frames.select(
        "clip_id", "frame_idx", "video_id",
        (F.col("start_frame") + F.col("frame_idx") * 5).alias("frame_number"),
        F.when(F.col("frame_idx") < FRAMES_PER_CLIP - 1, F.lit("uniform")).otherwise(F.lit("keyframe")).alias("role"),
        F.lit(32).alias("width"), F.lit(32).alias("height"),
        F.array(*[F.lit(j) for j in jpegs])[(F.col("clip_idx") + F.col("frame_idx")) % len(jpegs)].alias("jpeg")))
    tc = F.format_string("00:00:%06.3f", "start_s")
    append("clips", per_clip.select(
        "clip_id", "video_id", "clip_idx", "start_frame", "end_frame", "start_s", "end_s",
        tc.alias("start_timecode"), F.format_string("00:00:%06.3f", "end_s").alias("end_timecode"),
        F.array("shot_id").alias("shot_ids"),
        F.array(*[F.lit(float(i) / 16) for i in range(16)]).alias("embedding"),
        F.lit(cfg.split.preset).alias("preset"), F.lit(params_hash).alias("params_hash"),
        F.lit(SPLITTER_VERSION).alias("splitter_version"), F.lit(None).cast("string").alias("clip_path")))
    append("commits", ids.select(
        F.lit("split").alias("stage"), F.col("video_id").alias("key"), F.lit(params_hash).alias("version"),
        F.col("content_hash").alias("input_hash"),
        F.create_map(F.lit("shots"), F.lit(CLIPS_PER_VIDEO).cast("bigint"), F.lit("clips"),
                     F.lit(CLIPS_PER_VIDEO).cast("bigint"), F.lit("clip_frames"),
                     F.lit(CLIPS_PER_VIDEO * FRAMES_PER_CLIP).cast("bigint")).alias("outputs")))
    candidates = None
    for name, version, inputs in teachers:
        rows = per_clip.select(
            "clip_id", F.lit(name).alias("teacher"), F.lit(version).alias("teacher_version"),
            F.array(*[F.lit(i) for i in inputs]).alias("inputs"), F.lit("Describe the clip.").alias("prompt"),
            F.format_string("%s says clip %d of %s", F.lit(name), "clip_idx", "video_id").alias("caption"),
            F.lit(False).alias("degenerate"), F.lit(0.01).alias("generation_s"))
        candidates = rows if candidates is None else candidates.unionByName(rows)
    append("candidate_captions", candidates)
    first, second = teachers[0][0], teachers[-1][0]
    append("captions", per_clip.select(
        "clip_id", F.format_string("%s says clip %d of %s", F.lit(first), "clip_idx", "video_id").alias("caption"),
        F.lit(first).alias("teacher"), F.lit(teachers[0][1]).alias("teacher_version"),
        F.lit(0.5).alias("matching_score"),
        F.create_map(F.lit(first), F.lit(0.5), F.lit(second), F.lit(0.4)).alias("candidate_scores"),
        F.lit(scorer_version).alias("scorer_version"), F.lit(0.5 > cfg.select.good_match_threshold).alias("good_match"),
        F.lit("scale-bench").alias("candidates_hash"), F.lit(selected).alias("selected_at")), at=selected)
    return seconds


# ------------------------------------------------------------------ one size, in its own process


def run_size(args) -> dict:
    sys.path.insert(0, str(REPO))
    from panda_spark.config import load_config
    from panda_spark.pipeline import run_stage
    from panda_spark.spark import get_spark

    root = Path(args.root) / f"n{args.child}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cfg = load_config(None, overrides(root, Path(args.root) / "models", args.master, args.scorer))
    started = time.perf_counter()
    spark = get_spark(cfg)
    result: dict = {"n": args.child, "spark_start_s": round(time.perf_counter() - started, 1), "findings": []}

    started = time.perf_counter()
    result["base_tables_s"] = build_base(spark, cfg, args.child, str(Path(args.root) / "increment" / "base.mp4"))
    result["base_build_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    report = run_stage(spark, cfg, "scale-bench-base-export", "export")
    result["base_export_s"] = round(time.perf_counter() - started, 1)
    result["base_export_rows_out"] = report.rows_out
    _log(f"n={args.child}: base built in {result['base_build_s']} s, exported in {result['base_export_s']} s")

    manifest = str(Path(args.root) / "increment" / "manifest.csv")
    for phase in ("increment", "noop"):
        result[phase] = {}
        for stage in STAGES:
            options = {"manifest": manifest} if stage == "ingest" else {}
            started = time.perf_counter()
            report = run_stage(spark, cfg, f"scale-bench-{phase}", stage, **options)
            seconds = round(time.perf_counter() - started, 2)
            result[phase][stage] = {"s": seconds, "rows_in": report.rows_in, "rows_out": report.rows_out,
                                    "errored": report.errored, "counts": {k: v for k, v in report.counts.items()}}
            _log(f"n={args.child} {phase} {stage}: {seconds} s, rows_in {report.rows_in}, "
                 f"rows_out {report.rows_out}, errored {report.errored}, {report.counts}")
    result["findings"] = findings(result, args.increment)
    return result


def findings(result: dict, increment: int) -> list[str]:
    """Stages that did work on base rows in the increment, or any work in the no-op rerun."""
    out = []
    inc, noop = result["increment"], result["noop"]
    split_videos = inc["split"]["counts"].get("videos", 0)
    if inc["split"]["rows_in"] > increment:
        out.append(f"split took {inc['split']['rows_in']} videos in the increment, {increment} are new")
    new_clips = inc["split"]["rows_out"]
    if inc["caption"]["rows_in"] > 2 * new_clips:
        out.append(f"caption took {inc['caption']['rows_in']} (clip, teacher)s in the increment; "
                   f"{new_clips} new clips × 2 teachers = {2 * new_clips}")
    if inc["select"]["rows_in"] > new_clips:
        out.append(f"select scored {inc['select']['rows_in']} clips in the increment; {new_clips} are new")
    new_export = inc["export"]["counts"].get("new", 0)
    if new_export > split_videos:
        out.append(f"export planned {new_export} new (video, output)s in the increment; {split_videos} videos are new")
    for stage, r in noop.items():
        if r["rows_out"] or (r["rows_in"] and stage != "ingest"):
            out.append(f"no-op {stage}: rows_in {r['rows_in']}, rows_out {r['rows_out']} (expected 0)")
        if stage == "export" and r["counts"].get("files_written"):
            out.append(f"no-op export wrote {r['counts']['files_written']} files")
    if inc["export"]["counts"].get("files_written"):
        out.append(f"note: increment export rewrote {inc['export']['counts']['files_written']} file(s); the export "
                   f"holds {inc['export']['counts'].get('csv_rows')} CSV rows in all (new videos fill the "
                   "current CSV of up to export.videos_per_csv rows, which is rewritten whole)")
    return out


def spark_startup(master: str, root: Path) -> float:
    code = ("import sys, time; sys.path.insert(0, %r); t = time.perf_counter(); "
            "from panda_spark.config import load_config; from panda_spark.spark import get_spark; "
            "get_spark(load_config(None, [%r, 'spark.mode=embedded', %r, "
            "'spark.conf={\"spark.ui.enabled\": \"false\"}', 'spark.log_level=ERROR'])); "
            "print(round(time.perf_counter() - t, 2))") % (str(REPO), f"paths.root={root}", f"spark.master={master}")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def warm_models(root: Path, master: str, scorer: str) -> None:
    """Build the tiny models once into the shared cache, so that no size pays for it."""
    from panda_spark.caption.teachers import load_teacher
    from panda_spark.config import load_config
    from panda_spark.select.registry import scorer_spec
    from panda_spark.select.scorers import load_scorer

    cfg = load_config(None, overrides(root / "warm", root / "models", master, scorer))
    for teacher in cfg.caption.teachers:
        load_teacher(teacher, cfg.model_cache_dir)
    load_scorer(scorer_spec(cfg))


# ------------------------------------------------------------------ report


def table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(results: list[dict], startup: float, rss: dict | None, increment: int, elapsed: float) -> None:
    print(f"\n=== scale bench: increment of {increment} new videos, sizes {[r['n'] for r in results]} ===")
    rows = []
    for r in results:
        inc_total = sum(s["s"] for s in r["increment"].values())
        rows.append([r["n"], r["base_build_s"], r["base_export_s"],
                     *[r["increment"][s]["s"] for s in STAGES], round(inc_total, 1),
                     *[r["noop"][s]["s"] for s in STAGES]])
    print(table(rows, ["N", "base s", "base export s", *[f"inc {s}" for s in STAGES], "inc total",
                       *[f"noop {s}" for s in STAGES]]))
    print("\nrows (increment: rows_in/rows_out; no-op: rows_in/rows_out):")
    print(table([[r["n"], *[f"{r['increment'][s]['rows_in']}/{r['increment'][s]['rows_out']}" for s in STAGES],
                  *[f"{r['noop'][s]['rows_in']}/{r['noop'][s]['rows_out']}" for s in STAGES]] for r in results],
                ["N", *[f"inc {s}" for s in STAGES], *[f"noop {s}" for s in STAGES]]))
    small, large = results[0], results[-1]
    totals = [sum(s["s"] for s in r["increment"].values()) for r in (small, large)]
    print(f"\nincrement N={large['n']} / N={small['n']}: {totals[1]:.1f} s / {totals[0]:.1f} s = "
          f"{totals[1] / totals[0]:.2f}  (target <= 1.5)")
    for stage in STAGES:
        a, b = small["increment"][stage]["s"], large["increment"][stage]["s"]
        c, d = small["noop"][stage]["s"], large["noop"][stage]["s"]
        print(f"  {stage:8} increment {a:7.1f} -> {b:7.1f} s (x{b / max(a, 1e-9):.2f});   "
              f"no-op {c:6.1f} -> {d:6.1f} s (x{d / max(c, 1e-9):.2f})")
    worst = max(STAGES, key=lambda s: large["noop"][s]["s"])
    print(f"spark start-up (fresh embedded session, new process): {startup:.1f} s")
    print(f"slowest no-op stage at N={large['n']}: {worst} {large['noop'][worst]['s']:.1f} s = "
          f"{large['noop'][worst]['s'] / startup:.2f} x start-up  (target <= 2)")
    over = [s for s in STAGES if large["noop"][s]["s"] > 2 * startup]
    print(f"no-op stages above 2x start-up at N={large['n']}: {', '.join(over) or 'none'}")
    if rss:
        stream = rss["streaming"]
        lo, hi = min(stream), max(stream)
        print(f"split peak worker RSS (streaming split_batch): {lo:g} min {stream[lo]['peak_rss_mb']:.0f} MB, "
              f"{hi:g} min {stream[hi]['peak_rss_mb']:.0f} MB, ratio {stream[hi]['peak_rss_mb'] / stream[lo]['peak_rss_mb']:.2f}"
              "  (target <= 1.3)")
    else:
        print("split peak worker RSS: skipped (--skip-rss)")
    for r in results:
        for f in r["findings"]:
            print(f"FINDING (N={r['n']}): {f}")
    print(f"bench wall time: {elapsed:.0f} s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=(
        "100k (--sizes 1000,10000,100000) needs a bigger machine than 2 cores / 16 GB: the base alone "
        "is 1.8M clips and 16M frame rows."))
    parser.add_argument("--sizes", default="1000,10000", help="lakehouse sizes in videos, comma-separated "
                        "(default 1000,10000; 100000 needs a bigger machine)")
    parser.add_argument("--increment", type=int, default=100, help="new videos per increment (default 100)")
    parser.add_argument("--root", help="scratch folder (default: a new temp dir)")
    parser.add_argument("--master", default="local[2]", help="embedded Spark master (default local[2])")
    parser.add_argument("--scorer", default="tiny:clip", help="select.scorer (default tiny:clip; or text-consensus)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the split peak-RSS measurement")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child is not None:
        print("SCALE_RESULT " + json.dumps(run_size(args)), flush=True)
        return 0

    began = time.perf_counter()
    sys.path.insert(0, str(REPO))
    root = Path(args.root or tempfile.mkdtemp(prefix="scale_bench_")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    _log(f"root {root}; rendering {args.increment} increment videos")
    started = time.perf_counter()
    manifest = render_increment(root / "increment", args.increment)
    from panda_spark.demo.synthetic import render_demo_sources  # the one file every base video points at
    base = render_demo_sources(root / "increment" / "base_src", seed=0)[0].path
    shutil.copy(base, root / "increment" / "base.mp4")
    _log(f"rendered in {time.perf_counter() - started:.0f} s: {manifest}")
    warm_models(root, args.master, args.scorer)
    startup = spark_startup(args.master, root / "startup")
    _log(f"spark start-up {startup} s")
    results = []
    for n in sizes:
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--child", str(n), "--root", str(root), "--increment",
                                str(args.increment), "--master", args.master, "--scorer", args.scorer],
                               stdout=subprocess.PIPE, text=True)
        lines = [l for l in child.stdout.splitlines() if l.startswith("SCALE_RESULT ")]
        if child.returncode or not lines:
            print(child.stdout[-5000:])
            raise SystemExit(f"size {n} failed (exit {child.returncode})")
        results.append(json.loads(lines[-1][len("SCALE_RESULT "):]))
        _log(f"n={n} done in {time.perf_counter() - started:.0f} s")
    rss = None
    if not args.skip_rss:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from split_memory import measure

        _log("split peak RSS: 1 and 10 min 640x360")
        rss = measure((1, 10), 640, 360, modes=("streaming",))
    report(results, startup, rss, args.increment, time.perf_counter() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

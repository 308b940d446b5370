"""`make demo`: render a synthetic source set, ingest it (plus a few broken inputs), run every
stage built so far on the embedded lakehouse, then print table counts and sample rows."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from panda_spark.cli import write_rows
from panda_spark.config import Config
from panda_spark.demo import bad_inputs
from panda_spark.demo.synthetic import render_demo_sources, write_manifest
from panda_spark.runs import new_run_id
from panda_spark.tables import Lakehouse


def build_demo_manifest(out_dir: Path) -> Path:
    """Render the synthetic videos and write their manifest, with two broken rows appended.

    An existing manifest is reused: re-rendering would give the same bytes but new mtimes, and a
    second demo run should find its videos unchanged."""
    if (out_dir / "manifest.csv").is_file():
        return out_dir / "manifest.csv"
    videos = render_demo_sources(out_dir)
    manifest = write_manifest(videos, out_dir / "manifest.csv")
    broken = out_dir / "broken"
    broken.mkdir(exist_ok=True)
    truncated = bad_inputs.truncated_copy(videos[0].path, broken / "demo_truncated.mp4")
    with manifest.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["demo_truncated", truncated.relative_to(out_dir).as_posix(), "", "An aborted download", "", "", "Travel"])
        writer.writerow(["demo_missing", "videos/was_deleted.mp4", "", "A file that is gone", "", "", "Travel"])
    return manifest


def run_demo(cfg: Config) -> int:
    from panda_spark.caption import stage as caption
    from panda_spark.ingest import stage as ingest
    from panda_spark.spark import get_spark
    from panda_spark.split import stage as split

    manifest = build_demo_manifest(cfg.root / "demo")
    print(f"demo sources and manifest: {manifest}")
    spark = get_spark(cfg)
    run_id = new_run_id(cfg)
    print(ingest.run(spark, cfg, run_id, manifest=str(manifest)).summary())
    print(split.run(spark, cfg, run_id).summary())
    print(caption.run(spark, cfg, run_id).summary())
    print_summary(Lakehouse(spark, cfg, run_id))
    return 0


def print_summary(lake: Lakehouse) -> None:
    out = sys.stdout
    print("\n== table row counts ==", file=out)
    counts = lake.counts()
    rows = [{"table": lake.name(t).replace("`", ""), "rows": n} for t, n in counts.items()]
    write_rows(["table", "rows"], rows, "table", out)
    print("\n== videos ==", file=out)
    videos = lake.read("videos").selectExpr(
        "video_id", "round(duration_s, 2) AS duration_s", "fps_rational AS fps", "frame_count",
        "concat(width, 'x', height) AS size", "has_audio", "size(subtitles) AS cues", "title",
    ).orderBy("video_id")
    write_rows(videos.columns, [r.asDict() for r in videos.collect()], "table", out)
    print("\n== clips ==", file=out)
    clips = lake.read("clips").selectExpr(
        "video_id", "clip_idx", "start_timecode", "end_timecode", "round(end_s - start_s, 2) AS seconds",
        "size(shot_ids) AS shots",
    ).orderBy("video_id", "clip_idx")
    write_rows(clips.columns, [r.asDict() for r in clips.collect()], "table", out)
    print("\n== candidate captions (tiny random teachers locally: their captions are noise) ==", file=out)
    captions = lake.read("candidate_captions").selectExpr(
        "clip_id", "teacher", "array_join(inputs, '+') AS inputs", "degenerate", "substr(caption, 1, 60) AS caption",
    ).orderBy("clip_id", "teacher").limit(8)
    write_rows(captions.columns, [r.asDict() for r in captions.collect()], "table", out)
    print("\n== errors ==", file=out)
    errors = lake.read("errors").select("stage", "key", "error_class", "message").orderBy("stage", "key")
    write_rows(errors.columns, [r.asDict() for r in errors.collect()], "table", out)

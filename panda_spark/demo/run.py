"""`make demo`: render a synthetic source set (plus a few broken inputs), import a "published"
Panda-70M CSV whose urls point at a local HTTP server the demo starts, run `panda-spark pipeline`
on it all in the embedded lakehouse (ingest, download, split — detected and at published
timestamps —, caption, select, student training, evaluation, views, export), then a labelling
round (labels, selector fine-tuning), and print what the tables hold."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from panda_spark.config import Config
from panda_spark.demo import bad_inputs
from panda_spark.demo.published import serve_directory, write_published_csv
from panda_spark.demo.synthetic import describe_demo_sources, render_demo_sources, write_manifest
from panda_spark.runs import new_run_id
from panda_spark.tables import Lakehouse, qualified_name
from panda_spark.tabular import write_rows


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


def write_demo_labels(lake: Lakehouse, path: Path, teacher: str = "qwen2-vl-tiny") -> Path:
    """A stand-in annotator who always prefers one teacher (the one that sees video, subtitles and
    metadata), plus one label for a clip that does not exist: it lands in `errors`."""
    clips = sorted(r.clip_id for r in lake.read("candidate_captions").filter(f"teacher = '{teacher}'")
                   .select("clip_id").distinct().collect())
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "annotator", "chosen_teacher", "chosen_caption"])
        writer.writerows([clip, "demo-annotator", teacher, ""] for clip in clips)
        writer.writerow(["no-such-clip", "demo-annotator", teacher, ""])
    return path


def run_demo(cfg: Config) -> int:
    """The whole pipeline on the synthetic set, then a round of human labels and selector
    fine-tuning (a second, short pipeline run), then what the tables hold."""
    from panda_spark.pipeline import run_pipeline, run_stage
    from panda_spark.spark import get_spark

    demo_dir = cfg.root / "demo"
    manifest = build_demo_manifest(demo_dir)
    print(f"demo sources and manifest: {manifest}")
    spark = get_spark(cfg)
    run_id = new_run_id(cfg)
    dash = next(v for v in describe_demo_sources(demo_dir) if v.video_id == "-demo_dash")
    with serve_directory(demo_dir / "served") as base_url:
        published = write_published_csv(dash, demo_dir / "served", demo_dir / "panda70m_published.csv", base_url)
        print(f"published Panda-70M CSV: {published} (sources served on {base_url})")
        print(run_stage(spark, cfg, run_id, "import-panda-csv", csv=str(published)).summary())
        report = run_pipeline(spark, cfg, run_id, manifest=str(manifest))
    print(report.summary())
    lake = Lakehouse(spark, cfg, report.run_id)
    labels = write_demo_labels(lake, cfg.root / "demo" / "selection_labels.csv")
    relabel = run_pipeline(spark, cfg, new_run_id(cfg), ["load-selection-labels", "finetune-retrieval"],
                           labels=str(labels))
    print(relabel.summary())
    print_summary(lake)
    return 0 if report.ok and relabel.ok else 1


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
    print("\n== captions: the selected caption per clip ==", file=out)
    selected = lake.read("captions").selectExpr(
        "clip_id", "teacher", "round(matching_score, 3) AS score", "good_match", "substr(caption, 1, 50) AS caption",
    ).orderBy("clip_id").limit(8)
    write_rows(selected.columns, [r.asDict() for r in selected.collect()], "table", out)
    print("\n== teacher win rates (view teacher_win_rates) ==", file=out)
    wins = lake.spark.sql(f"SELECT * FROM {qualified_name(lake.cfg, 'teacher_win_rates')} ORDER BY scope, category, teacher")
    write_rows(wins.columns, [r.asDict() for r in wins.collect()], "table", out)
    print_selector_runs(lake.cfg, out)
    print("\n== evaluations (the tiny student's captions are noise) ==", file=out)
    evaluations = lake.read("evaluations").selectExpr("source", "reference", "metric", "round(value, 4) AS value",
                                                      "n_clips").orderBy("source", "metric")
    write_rows(evaluations.columns, [r.asDict() for r in evaluations.collect()], "table", out)
    print_export(lake.cfg, out)
    print("\n== errors ==", file=out)
    errors = lake.read("errors").select("stage", "key", "error_class", "message").orderBy("stage", "key")
    write_rows(errors.columns, [r.asDict() for r in errors.collect()], "table", out)


def print_selector_runs(cfg: Config, out) -> None:
    """The fine-tuning runs in MLflow: held-out R@1 before and after, and where to look."""
    import mlflow

    from panda_spark.tracking import start_experiment

    start_experiment(cfg)
    runs = mlflow.search_runs(filter_string="tags.`panda.stage` = 'finetune-retrieval'", output_format="list",
                              order_by=["attributes.start_time DESC"], max_results=3)
    print("\n== selector fine-tuning runs (MLflow; `make mlflow-ui` to browse) ==", file=out)
    rows = [{"run_id": r.info.run_id, "r1_before": round(r.data.metrics.get("r1_before", float("nan")), 3),
             "r1_after": round(r.data.metrics.get("r1_after", float("nan")), 3), "epochs": r.data.params.get("epochs"),
             "train_clips": r.data.params.get("train_clips"), "val_clips": r.data.params.get("val_clips")} for r in runs]
    write_rows(["run_id", "r1_before", "r1_after", "epochs", "train_clips", "val_clips"], rows, "table", out)


def print_export(cfg: Config, out) -> None:
    """Where `export` wrote the Panda-70M CSVs and the webdataset shards, and one CSV row."""
    from panda_spark.dataset.export_stage import export_root

    root = Path(export_root(cfg))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    print(f"\n== export ({root}) ==", file=out)
    for path in files:
        print(f"{path.relative_to(root)}  {path.stat().st_size} bytes", file=out)
    csvs = [p for p in files if p.suffix == ".csv"]
    if csvs:
        header, first = csvs[0].read_text(encoding="utf-8").splitlines()[:2]
        print(f"{header}\n{first[:160]}...", file=out)

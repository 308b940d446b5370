"""evaluate (Spark wrapper): caption metrics of one caption source against references → `evaluations`.

Sources: `gold` (the selected captions), `teacher:<name>` (that teacher's newest candidates),
`student` (the registered student `student.registered_model@student.alias`, run here over the
reference clips in a `mapInPandas` task, resident per worker). References: `heldout` (the gold
captions of the clips the student's split holds out) or an MSR-VTT-style annotation JSON
(`{"sentences": [{"video_id", "caption"}, ...]}` or `"annotations"`), matched by video_id to the
first clip of each video. BLEU-4, METEOR, ROUGE-L and CIDEr go to `evaluations` (one row per
metric) and to one MLflow run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from functools import partial
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from panda_spark import storage
from panda_spark.config import Config
from panda_spark.errors import ConfigError
from panda_spark.runs import StageReport
from panda_spark.spark import content_fingerprint
from panda_spark.splits import held_out_column
from panda_spark.tables import Lakehouse

log = logging.getLogger(__name__)
STAGE = "evaluate"


def references(lake: Lakehouse, cfg: Config, reference: str) -> DataFrame:
    """clip_id, refs (array of reference captions)."""
    if reference == "heldout":
        return (lake.read("captions").filter(held_out_column(cfg.student.val_fraction) & F.col("caption").isNotNull())
                .select("clip_id", F.array("caption").alias("refs")))
    location = storage.resolve_path(reference, "")
    try:
        with storage.open_binary(location) as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--reference {reference}: expected 'heldout' or an annotation JSON file ({exc})") from exc
    entries = (data.get("sentences") or data.get("annotations")) if isinstance(data, dict) else None
    if not entries:
        raise ConfigError(f"--reference {reference}: expected a JSON object with 'sentences' or 'annotations' "
                          "holding {video_id, caption} entries")
    pairs = [(str(e.get("video_id", e.get("image_id"))), str(e["caption"])) for e in entries if "caption" in e]
    refs = lake.spark.createDataFrame(pairs, "video_id STRING, caption STRING").groupBy("video_id").agg(
        F.collect_list("caption").alias("refs"))
    first_clip = Window.partitionBy("video_id").orderBy("clip_idx")
    clips = (lake.read("clips").withColumn("_n", F.row_number().over(first_clip)).filter("_n = 1")
             .select("clip_id", "video_id"))
    return refs.join(clips, "video_id").select("clip_id", "refs")


def candidates(lake: Lakehouse, cfg: Config, source: str, clips: DataFrame, student: str | None = None) -> DataFrame:
    """clip_id, caption of `source` for the clips in `clips` (`student`: the pinned student model URI)."""
    if source == "gold":
        return lake.read("captions").select("clip_id", "caption").join(clips, "clip_id", "left_semi")
    if source.startswith("teacher:"):
        newest = Window.partitionBy("clip_id").orderBy(F.col("updated_at").desc())
        return (lake.read("candidate_captions").filter(F.col("teacher") == source[len("teacher:"):])
                .withColumn("_n", F.row_number().over(newest)).filter("_n = 1").select("clip_id", "caption")
                .join(clips, "clip_id", "left_semi"))
    if source == "student":
        return student_captions(lake, cfg, clips, student or pinned_student(cfg))
    raise ConfigError(f"--source {source}: expected gold, student or teacher:<name>")


def pinned_student(cfg: Config) -> str:
    """`models:/<student.registered_model>/<version>` that `student.alias` points at now."""
    from panda_spark.tracking import pin_registered

    return pin_registered(cfg, f"models:/{cfg.student.registered_model}@{cfg.student.alias}", "student.registered_model")


def student_captions(lake: Lakehouse, cfg: Config, clips: DataFrame, pinned: str) -> DataFrame:
    from panda_spark.student.infer import ARTIFACT
    from panda_spark.student.model import Decoding
    from panda_spark.student.stage import clip_inputs
    from panda_spark.tiny_models import resolve_model
    from panda_spark.tracking import download_registered

    download_registered(cfg, pinned, ARTIFACT, "student.registered_model")
    rows = clip_inputs(lake, clips.select("clip_id")).filter(F.col("frames").isNotNull())
    lake.spark.sparkContext.setJobDescription(f"evaluate: captions of {pinned}")
    return rows.mapInPandas(partial(_student_batch, directory=resolve_model(pinned, cfg.model_cache_dir),
                                    max_new_tokens=cfg.student.max_new_tokens, decoding=Decoding.of(cfg.student)),
                            "clip_id STRING, caption STRING")


_RUNNERS: dict = {}  # per Python worker


def _student_batch(batches: Iterator[pd.DataFrame], directory: str, max_new_tokens: int,
                   decoding) -> Iterator[pd.DataFrame]:
    from panda_spark.student.data import clip_texts
    from panda_spark.student.infer import StudentRunner
    from panda_spark.video.frames import uniform_frames

    key = (directory, max_new_tokens, decoding)
    if key not in _RUNNERS:
        _RUNNERS.clear()
        _RUNNERS[key] = StudentRunner(directory, max_new_tokens=max_new_tokens, decoding=decoding)
    runner = _RUNNERS[key]
    for batch in batches:
        clips = batch.to_dict("records")
        frames = [uniform_frames(list(c["frames"]), runner.num_frames) for c in clips]
        texts = [clip_texts(c, runner.max_text_tokens) for c in clips]
        captions = runner.caption(frames, [m for _, m in texts], [s for s, _ in texts])
        yield pd.DataFrame({"clip_id": [c["clip_id"] for c in clips], "caption": captions})


def run(spark: SparkSession, cfg: Config, run_id: str, source: str = "student", reference: str = "heldout") -> StageReport:
    import mlflow

    from panda_spark.student.metrics import caption_metrics
    from panda_spark.student.model import Decoding
    from panda_spark.tracking import finished_run_with, run_tags, start_experiment

    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    refs = references(lake, cfg, reference).localCheckpoint(eager=True)
    clips = refs.select("clip_id")
    # what the scores depend on: the references, and the student version or the captions themselves
    # (those of a table source are read once, here; the student's are generated only if needed)
    student = pinned_student(cfg) if source == "student" else None
    cands = None if student else candidates(lake, cfg, source, clips).localCheckpoint(eager=True)
    version = ([student, cfg.student.max_new_tokens, dataclasses.asdict(Decoding.of(cfg.student))] if student
               else content_fingerprint(cands, []))
    fingerprint = content_fingerprint(refs, [source, version, reference])
    start_experiment(cfg)
    done = finished_run_with(fingerprint)
    if done:
        log.info("evaluate: MLflow run %s already scored %s against %s on these inputs", done, source, reference)
        report.counts.update(evaluated=0)
        return report.finish(rows_in=refs.count(), rows_out=0)
    if cands is None:
        cands = candidates(lake, cfg, source, clips, student)
    pairs = refs.join(cands, "clip_id").collect()
    if not pairs:
        raise ConfigError(f"--source {source} --reference {reference}: no clip has both a caption and a reference")
    scores = caption_metrics({r.clip_id: list(r.refs) for r in pairs}, {r.clip_id: r.caption or "" for r in pairs})
    with mlflow.start_run(run_name=f"{STAGE} {source} vs {reference}",
                          tags=run_tags(run_id, STAGE, **{"panda.training_fingerprint": fingerprint})) as active:
        mlflow.log_params({"source": source, "reference": reference, "clips": len(pairs)})
        mlflow.log_metrics({k.replace("-", ""): v for k, v in scores.items()})
    rows = [(source, reference, metric, value, len(pairs), active.info.run_id) for metric, value in scores.items()]
    lake.merge("evaluations", spark.createDataFrame(
        rows, "source STRING, reference STRING, metric STRING, value DOUBLE, n_clips BIGINT, mlflow_run_id STRING"))
    report.counts.update(clips=len(pairs), evaluated=1, **{k: round(v, 4) for k, v in scores.items()})
    return report.finish(rows_in=len(pairs), rows_out=len(rows))

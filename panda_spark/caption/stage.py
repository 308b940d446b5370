"""Caption stage (Spark wrapper): `clips` + `clip_frames` + `videos` → `candidate_captions`.

The clips that lack a caption of some teacher's current version go in waves of
`caption.wave_clips`; per wave their stored frames and their video's subtitles and metadata are
read once, and each teacher with work in the wave (in dependency order: a teacher with
`captions:<name>` inputs after the teachers it names, whose captions of the wave it then gets)
captions it in a `mapInPandas` task
(`caption_batch`) that keeps the model resident in the Python worker (at most three models per
worker) and generates in batches of the teacher's `batch_size`. A failing batch is retried in halves down to single clips; a clip that still fails
goes to `errors` (key `<clip_id>/<teacher>`), and so does a clip that lacks an upstream caption
(`MissingUpstreamCaption`): it stays pending for the dependent teacher and is captioned by a later
run once the upstream caption exists. Empty or degenerate captions are kept and flagged.
Resources: the teacher's device (`auto`: the task's GPU on clusters, bf16/fp16 there).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from panda_spark.caption.inputs import TeacherInput, is_degenerate, teacher_inputs, teacher_version, teacher_versions
from panda_spark.caption.teachers import load_teacher
from panda_spark.config import Config, TeacherSettings, teacher_order
from panda_spark.errors import InputError
from panda_spark.runs import StageReport, process_in_halves
from panda_spark.spark import gpu_profile
from panda_spark.tables import Lakehouse
from panda_spark.waves import waves

log = logging.getLogger(__name__)
STAGE = "caption"
RESULT_SCHEMA = (
    "clip_id STRING, teacher STRING, teacher_version STRING, inputs ARRAY<STRING>, prompt STRING, "
    "caption STRING, degenerate BOOLEAN, generation_s DOUBLE, status STRING, error_class STRING, message STRING"
)


def caption_batch(batches: Iterator[pd.DataFrame], teacher: TeacherSettings, cache_dir: str,
                  trust_remote_code: bool, max_subtitle_tokens: int, max_metadata_tokens: int,
                  version: str | None = None) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: one row per clip (clip_id, start_s, end_s, subtitles, title,
    description, frames, and for a teacher with `captions:<name>` inputs `captions`: an array of
    (teacher, caption) of the clip's upstream captions) in, one RESULT_SCHEMA row per clip out.
    `version`: the teacher's, as :func:`teacher_versions` gives it (default: :func:`teacher_version`
    of a teacher that takes no other teacher's captions)."""
    model = load_teacher(teacher, cache_dir, trust_remote_code)
    version = version or teacher_version(teacher)
    for batch in batches:
        rows, ready = [], []
        for clip in batch.to_dict("records"):
            upstream = clip.get("captions")
            try:
                ready.append(teacher_inputs(
                    clip["clip_id"], list(clip["frames"] if clip["frames"] is not None else []),
                    list(clip["subtitles"] if clip["subtitles"] is not None else []), clip["start_s"], clip["end_s"],
                    clip["title"], clip["description"], teacher, max_subtitle_tokens, max_metadata_tokens,
                    captions={c["teacher"]: c["caption"] for c in upstream} if upstream is not None else None))
            except InputError as exc:
                rows.append(_error_row(clip["clip_id"], teacher, version, exc.error_class, exc.message))
        for start in range(0, len(ready), teacher.batch_size):
            rows += process_in_halves(
                ready[start:start + teacher.batch_size], partial(_caption_items, model, teacher=teacher, version=version),
                lambda item, exc: _error_row(item.clip_id, teacher, version, type(exc).__name__, str(exc)[:2000]),
                what=f"teacher {teacher.name}: batch")
        yield pd.DataFrame(rows, columns=[c.split()[0] for c in RESULT_SCHEMA.split(", ")])


def _caption_items(model, items: list[TeacherInput], teacher: TeacherSettings, version: str) -> list[dict]:
    started = time.perf_counter()
    captions = model.caption(items)
    seconds = (time.perf_counter() - started) / len(items)
    return [{"clip_id": item.clip_id, "teacher": teacher.name, "teacher_version": version,
             "inputs": item.inputs_used, "prompt": item.prompt, "caption": caption,
             "degenerate": is_degenerate(caption), "generation_s": seconds, "status": "captioned",
             "error_class": None, "message": None} for item, caption in zip(items, captions)]


def _error_row(clip_id: str, teacher: TeacherSettings, version: str, error_class: str, message: str) -> dict:
    return {"clip_id": clip_id, "teacher": teacher.name, "teacher_version": version, "inputs": None,
            "prompt": None, "caption": None, "degenerate": None, "generation_s": None, "status": "error",
            "error_class": error_class, "message": message}


def clip_rows(lake: Lakehouse, clip_ids: DataFrame | None = None) -> DataFrame:
    """The clips of `clip_ids` (default: all) that split committed (not imported ones: those have
    published captions and no frames) with their stored frames and their video's subtitles, title
    and description."""
    clips = lake.visible_clips(imported=False)
    if clip_ids is not None:
        clips = clips.join(clip_ids, "clip_id", "left_semi")
    clips = clips.select("clip_id", "video_id", "start_s", "end_s").localCheckpoint(eager=True)
    videos = lake.rows_of_videos("videos", clips).select("video_id", "subtitles", "title", "description")
    return (clips.join(videos, "video_id", "left").join(lake.frames_for(clips, role=None), "clip_id", "left")
            .drop("video_id"))


def _pin_registered(cfg: Config, index: int, teacher: TeacherSettings) -> TeacherSettings:
    """A teacher named `models:/name@alias` (a registered student) → `models:/name/N`, downloaded once
    into the model cache: the version goes into teacher_version, the workers load the download."""
    if not teacher.model.startswith("models:/"):
        return teacher
    from panda_spark.caption.adapters import ADAPTERS
    from panda_spark.tracking import download_registered, pin_registered

    key = f"caption.teachers[{index}].model"
    pinned = pin_registered(cfg, teacher.model, key)
    download_registered(cfg, pinned, ADAPTERS[teacher.adapter].artifact, key)
    return replace(teacher, model=pinned, revision=None)


def _upstream_captions(lake: Lakehouse, clip_ids: DataFrame, teacher: TeacherSettings,
                       versions: dict[str, str]) -> DataFrame:
    """clip_id, captions (array of teacher, caption): the captions of `clip_ids` by the current
    versions of the teachers whose captions `teacher` takes."""
    wanted = [versions[name] for name in teacher.upstream]
    return (lake.read("candidate_captions").filter(F.col("teacher_version").isin(wanted))
            .join(clip_ids, "clip_id", "left_semi")
            .groupBy("clip_id").agg(F.collect_list(F.struct("teacher", "caption")).alias("captions")))


def run(spark: SparkSession, cfg: Config, run_id: str, teachers: list[str] | None = None) -> StageReport:
    """Caption the clips that lack a caption of a teacher's current version, in waves of
    `caption.wave_clips` clips: each wave's frames and texts are read once, then every teacher
    with work in the wave captions it, upstream teachers first, and commits (errors first,
    `candidate_captions` last, so a crash leaves the clip pending for that teacher). `teachers`:
    only these (by name); the ones whose captions they take are not run, their current captions used."""
    report = StageReport(STAGE, run_id)
    lake = Lakehouse(spark, cfg, run_id)
    needed = {t.name for t in cfg.caption.teachers if teachers is None or t.name in teachers}
    for teacher in reversed(teacher_order(cfg.caption.teachers)):  # dependents first: their upstream joins in
        if teacher.name in needed:
            needed.update(teacher.upstream)
    pinned = teacher_order([_pin_registered(cfg, i, t) for i, t in enumerate(cfg.caption.teachers)
                            if t.name in needed])
    versions = teacher_versions(pinned)
    selected = [t for t in pinned if teachers is None or t.name in teachers]
    clip_ids = lake.visible_clips(imported=False).select("clip_id")
    pending = None
    for teacher in selected:
        done = lake.read("candidate_captions").filter(F.col("teacher_version") == versions[teacher.name])
        todo = clip_ids.join(done.select("clip_id"), "clip_id", "left_anti").withColumn("teacher", F.lit(teacher.name))
        pending = todo if pending is None else pending.unionByName(todo)
    if pending is None:
        return report.finish(rows_in=0, rows_out=0)
    pending = pending.localCheckpoint(eager=True)  # clip_id, teacher: two narrow columns
    report.counts.update({f"{t.name}.{key}": 0 for t in selected for key in ("captioned", "errored")})
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.spark.arrow_batch_rows))
    partitions = cfg.caption.partitions or spark.sparkContext.defaultParallelism
    totals = {"in": 0, "out": 0, "errored": 0}
    for wave in waves(pending, "clip_id", cfg.caption.wave_clips, STAGE, "clips"):
        spark.sparkContext.setJobDescription(f"caption: wave {wave.index + 1}: frames and texts")
        rows = clip_rows(lake, wave.keys).localCheckpoint(eager=True)
        busy = {r.teacher for r in pending.join(wave.keys, "clip_id", "left_semi").select("teacher").distinct().collect()}
        for teacher in (t for t in selected if t.name in busy):  # a teacher without work loads no model
            todo = rows.join(pending.filter(F.col("teacher") == teacher.name).select("clip_id"), "clip_id", "left_semi")
            if teacher.upstream:  # read after the upstream teachers committed this wave
                todo = todo.join(_upstream_captions(lake, wave.keys, teacher, versions), "clip_id", "left")
            spark.sparkContext.setJobDescription(f"caption: wave {wave.index + 1}: teacher {teacher.name}")
            results = todo.repartition(partitions).mapInPandas(
                partial(caption_batch, teacher=teacher, cache_dir=cfg.model_cache_dir,
                        trust_remote_code=cfg.models.trust_remote_code,
                        max_subtitle_tokens=cfg.caption.max_subtitle_tokens,
                        max_metadata_tokens=cfg.caption.max_metadata_tokens, version=versions[teacher.name]),
                RESULT_SCHEMA,
                **gpu_profile(cfg, cfg.caption.task_gpus, cfg.caption.executor_gpus),
            ).localCheckpoint(eager=True)
            n_in, captioned, errored = _commit(lake, results)
            for key, n in (("in", n_in), ("out", captioned), ("errored", errored)):
                totals[key] += n
            report.counts[f"{teacher.name}.captioned"] += captioned
            report.counts[f"{teacher.name}.errored"] += errored
        wave.done(rows.count())
    for teacher in selected:
        log.info("caption: teacher %s: %d captioned, %d errored", teacher.name,
                 report.counts[f"{teacher.name}.captioned"], report.counts[f"{teacher.name}.errored"])
    return report.finish(rows_in=totals["in"], rows_out=totals["out"], errored=totals["errored"])


def _commit(lake: Lakehouse, results: DataFrame) -> tuple[int, int, int]:
    """Errors first, `candidate_captions` (what marks a clip done for the teacher) last; the
    numbers of rows in, captioned and errored."""
    ok = results.filter("status = 'captioned'")
    errors = results.filter("status = 'error'").select(
        F.concat_ws("/", "clip_id", "teacher").alias("key"), "error_class", "message",
        F.to_json(F.struct("clip_id", "teacher", "teacher_version")).alias("input_snapshot"))
    errored = lake.record_errors(STAGE, errors).total
    lake.clear_errors(STAGE, ok.select(F.concat_ws("/", "clip_id", "teacher").alias("key")))
    merged = lake.merge("candidate_captions", ok)
    return results.count(), merged.inserted + merged.updated, errored

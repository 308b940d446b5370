"""train-student on the local Spark + Delta session: TorchDistributor with 2 processes on gloo,
petastorm, MLflow (sqlite). The tables hold the colour task of tests/select with gold captions
("a red scene in the video", ...): a tiny overfit set whose loss must fall."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("petastorm")
mlflow = pytest.importorskip("mlflow")

from pyspark.sql import functions as F  # noqa: E402

from panda_spark.student import stage  # noqa: E402
from tests.select.test_stage import N_CLIPS, _color_of, seed_tables  # noqa: E402


@pytest.fixture(scope="module")
def trained(spark, state_root, tmp_path_factory):
    from panda_spark.config import load_config
    from panda_spark.spark import get_spark
    from panda_spark.tables import Lakehouse
    from tests.conftest import overrides_for

    root = tmp_path_factory.mktemp("student_root")
    overrides = [*overrides_for(state_root, "student_e2e"), f"models.cache_dir={root / 'models'}",
                 f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}", f"student.cache_url={(root / 'pt').as_uri()}",
                 f"student.checkpoint_dir={root / 'ckpt'}", "student.num_frames=2", "student.epochs=4", "student.batch_size=2",
                 "student.eval_clips=4", "student.val_fraction=0.3", "student.learning_rate=0.003", "student.max_new_tokens=8"]
    cfg = load_config(None, overrides)
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=(root / "artifacts").as_uri())
    lake = Lakehouse(get_spark(cfg), cfg, "stu")
    ids = seed_tables(lake, 24)
    captions = lake.spark.createDataFrame(
        [(c, f"a {_color_of(i)} scene in the video", f"t-{_color_of(i)}", f"t-{_color_of(i)}@1", True)
         for i, c in enumerate(ids[:24])] + [("clip-no-frames", "a red scene in the video", "t-red", "t-red@1", True)],
        "clip_id string, caption string, teacher string, teacher_version string, good_match boolean")
    lake.merge("captions", captions.select("*", *[F.lit(None).alias(c) for c in (
        "matching_score", "candidate_scores", "scorer_version", "candidates_hash", "selected_at")]))
    report = stage.run(lake.spark, cfg, "stu-1")
    return cfg, lake, report, overrides


def test_two_process_training_logs_a_falling_loss_and_registers_the_student(trained):
    cfg, lake, report, _ = trained
    assert report.counts["trained"] == 1 and report.counts["errored"] == 1
    assert report.counts["train"] + report.counts["val"] == 24
    client = mlflow.MlflowClient(cfg.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("panda-student", "candidate")
    run = client.get_run(version.run_id)
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)]
    assert len(losses) >= 16 and sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    assert {"val_loss", "val_BLEU4", "val_METEOR", "val_ROUGEL", "val_CIDEr"} <= set(run.data.metrics)
    assert run.data.params["student.num_processes"] == "2" and run.data.params["student.epochs"] == "4"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 4
    samples = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/sample_generations.json")["samples"]
    assert len(samples) == min(4, report.counts["val"]) and all(isinstance(s["generated"], str) for s in samples)
    assert {s["reference"] for s in samples} <= {"a red scene in the video", "a green scene in the video",
                                                 "a blue scene in the video", "a yellow scene in the video"}
    errors = {r.key: r.error_class for r in lake.read("errors").filter("stage = 'train-student'").collect()}
    assert errors == {"clip-no-frames": "MissingFrames"}


def test_rerun_on_the_same_rows_trains_nothing(trained):
    cfg, lake, _, _ = trained
    assert stage.run(lake.spark, cfg, "stu-2").counts["trained"] == 0

"""Student cores without Spark: caption metrics on a hand-made set, the model's save/load round
trip and its text dropout, the in-memory loader's shards."""
import os

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from panda_spark.student.data import NUMERIC_COLUMNS, MemoryLoader, RowBuilder, text_inputs  # noqa: E402
from panda_spark.student.model import StudentCaptioner, StudentConfig  # noqa: E402
from panda_spark.tiny_models import resolve_model  # noqa: E402
from tests.select.colors import color_frames  # noqa: E402


def test_caption_metrics_equal_known_values():
    pytest.importorskip("pycocoevalcap")
    from panda_spark.student.metrics import caption_metrics

    refs = {"a": ["a man is riding a bicycle down the street", "a person rides a bike on the road"],
            "b": ["a woman is cooking pasta in a kitchen"], "c": ["two dogs play in the snow"]}
    perfect = caption_metrics(refs, {"a": refs["a"][0], "b": refs["b"][0], "c": refs["c"][0]})
    assert perfect["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["METEOR"] == pytest.approx(1.0) and perfect["ROUGE-L"] == pytest.approx(1.0)
    assert perfect["CIDEr"] == pytest.approx(8.382015538, rel=1e-6)
    partial = caption_metrics(refs, {"a": "a man rides a bike", "b": "someone cooks food", "c": "a cat sleeps"})
    # the COCO code's values for this set: BLEU-4 has no 4-gram match, ROUGE-L and CIDEr from its own formulas
    assert partial["BLEU-4"] == pytest.approx(2.3637833e-05, rel=1e-4)
    assert partial["ROUGE-L"] == pytest.approx(0.1969330105, rel=1e-6)
    assert partial["CIDEr"] == pytest.approx(0.6066536297, rel=1e-6)
    assert partial["METEOR"] == pytest.approx(0.1450643843, rel=1e-3)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("models"))
    vision, lm = resolve_model("tiny:clip", cache), resolve_model("tiny:gpt2", cache)
    builder = RowBuilder(vision, lm, num_frames=2, max_text_tokens=16, max_caption_tokens=12, device="cpu")
    rng = np.random.default_rng(0)
    rows = builder.rows([color_frames(c, 2, rng) for c in ("red", "blue", "green")],
                        ["a red scene", "a blue scene", "a green scene"], ["Title. A description", "", ""],
                        ["hello everyone", "", "welcome back"])
    config = StudentConfig(vision_model=vision, language_model=lm, num_frames=2, vision_dim=builder.encoder.dim,
                           video_queries=4, text_queries=4, hidden=32, layers=1, heads=2, max_text_tokens=16,
                           max_caption_tokens=12)
    return builder, rows, config


def _batch(rows):
    from panda_spark.student.data import to_model_batch

    raw = {c: torch.from_numpy(np.stack(rows[c].to_numpy())) for c in NUMERIC_COLUMNS}
    return to_model_batch(raw, 2, "cpu", False, 0.0, 0.0)


def test_rows_are_fixed_shape_token_ids_and_features(parts):
    builder, rows, config = parts
    assert list(rows.columns) == list(NUMERIC_COLUMNS)
    assert {len(x) for x in rows["frame_features"]} == {2 * config.vision_dim}
    assert {len(x) for x in rows["caption_ids"]} == {12} and {len(x) for x in rows["metadata_ids"]} == {8}
    assert rows["metadata_mask"][1] == [0] * 8  # a clip without metadata: all padding
    caption = [i for i, m in zip(rows["caption_ids"][0], rows["caption_mask"][0]) if m]
    assert builder.tokenizer.decode(caption) == "a red scene<|endoftext|>"


def test_save_and_load_give_the_same_loss_and_reject_another_format(parts, tmp_path):
    _, rows, config = parts
    torch.manual_seed(0)
    model = StudentCaptioner(config).eval()
    batch = _batch(rows)
    with torch.no_grad():
        before = model(batch).item()
    from transformers import AutoTokenizer

    model.save(tmp_path / "student", AutoTokenizer.from_pretrained(config.language_model))
    loaded = StudentCaptioner.load(tmp_path / "student")
    with torch.no_grad():
        assert loaded(batch).item() == pytest.approx(before, rel=1e-6)
    assert loaded.config.vision_dim == config.vision_dim and loaded.config.format_version == 1
    text = (tmp_path / "student" / "student_config.json").read_text().replace('"format_version": 1', '"format_version": 99')
    (tmp_path / "student" / "student_config.json").write_text(text)
    with pytest.raises(ValueError, match="format 99"):
        StudentCaptioner.load(tmp_path / "student")


def test_training_drops_metadata_and_subtitles_per_clip():
    n = 2000
    batch = {k: torch.ones(n, 4, dtype=torch.long) for k in ("metadata_ids", "metadata_mask", "subtitles_ids",
                                                             "subtitles_mask")}
    ids, mask = text_inputs(batch, True, 0.5, 0.5, torch.Generator().manual_seed(0))
    assert ids.shape == (n, 8)
    kept_meta, kept_subs = mask[:, :4].all(1).float().mean(), mask[:, 4:].all(1).float().mean()
    assert 0.45 < kept_meta < 0.55 and 0.45 < kept_subs < 0.55
    assert text_inputs(batch, False, 0.5, 0.5)[1].all()  # never at evaluation


def test_memory_loader_shards_rows_between_processes(parts):
    _, rows, _ = parts
    loader = MemoryLoader(pd.concat([rows] * 3, ignore_index=True))
    seen = []
    for rank in range(2):
        with loader.batches(rank, 2, 2, epoch=1) as batches:
            seen.append(sum(len(b["caption_ids"]) for b in batches))
    assert seen == [5, 4] and len(loader) == 9


def run_train_fn_alone(job):
    """train_fn as one process of a world of one, the way TorchDistributor starts it."""
    import socket

    from panda_spark.student.train import train_fn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return train_fn(job)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_a_job_started_again_resumes_after_its_last_checkpoint(parts, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from panda_spark.student.train import TrainJob

    _, rows, config = parts
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("resume", artifact_location=(tmp_path / "artifacts").as_uri())
    client = mlflow.MlflowClient(tracking)
    loader = MemoryLoader(pd.concat([rows] * 4, ignore_index=True))

    def job(epochs: int):
        run = client.create_run(experiment)
        return run.info.run_id, TrainJob(
            config=config, train=loader, val=MemoryLoader(rows), eval_rows=rows.iloc[:0], epochs=epochs, batch_size=4,
            learning_rate=1e-3, weight_decay=0.0, seed=0, use_gpu=False, tracking_uri=tracking,
            mlflow_run_id=run.info.run_id, checkpoint_dir=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "out"))

    first_id, first = job(2)
    assert run_train_fn_alone(first)["epoch"] == 2
    second_id, second = job(3)  # as if the job had been asked for 3 epochs and died after 2
    assert run_train_fn_alone(second)["epoch"] == 3
    assert [m.step for m in client.get_metric_history(first_id, "val_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(second_id, "val_loss")] == [3]
    steps = [m.step for m in client.get_metric_history(second_id, "loss")]
    assert (min(steps), max(steps)) == (7, 9)  # 3 steps an epoch, counting on from the checkpoint
    assert StudentCaptioner.load(tmp_path / "out").config.hidden == config.hidden


def test_rows_adapter_turns_a_clip_without_frames_into_an_error_row(parts):
    import pyarrow as pa

    from panda_spark.student.data import row_schema, student_rows

    _, _, config = parts
    clip = {"clip_id": "c", "caption": "a dog", "frames": [], "cues": None, "start_s": 0.0, "end_s": 1.0,
            "title": None, "description": None, "held_out": True}
    (out,) = student_rows(iter([pd.DataFrame([clip])]), config.vision_model, config.language_model, 2, 16, 12, "cpu")
    assert out.to_dict("records")[0] == {**{c: None for c in NUMERIC_COLUMNS}, "clip_id": "c", "caption": "a dog",
                                         "held_out": True, "status": "error", "error_class": "MissingFrames",
                                         "message": "clip has no uniform frames in clip_frames"}
    assert list(out.columns) == [c.split()[0] for c in row_schema().split(", ")]
    assert pa.Table.from_pandas(out, preserve_index=False).column("held_out").type == pa.bool_()

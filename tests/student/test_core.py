"""Student cores without Spark: caption metrics on a hand-made set, the released prompt and layout,
the text branch, decoding, memorising a tiny task, the model's save/load round trip and its text
dropout, the in-memory loader's shards."""
import dataclasses
import os
import warnings

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from panda_spark.student.data import (NUMERIC_COLUMNS, METADATA_LABEL, SUBTITLES_LABEL, MemoryLoader,  # noqa: E402
                                      Prompt, RowBuilder, clip_texts, text_inputs)
from panda_spark.student.model import FORMAT_VERSION, GREEDY, Decoding, StudentCaptioner, StudentConfig  # noqa: E402
from panda_spark.tiny_models import resolve_model  # noqa: E402
from tests.select.colors import color_frames  # noqa: E402

STEPS = 200  # enough for the tiny student to memorise three captions (125 do)


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


def test_caption_metrics_score_garbled_captions_without_the_tokenizers_warnings(capfd):
    # a barely trained student emits control characters and U+FFFD; the PTB tokenizer drops them
    # but prints "Untokenizable" on its own stderr; a line separator would shift "b" onto "a"s tokens
    pytest.importorskip("pycocoevalcap")
    from panda_spark.student.metrics import caption_metrics

    refs = {"a": ["a man rides a bike"], "b": ["two dogs play"]}
    clean = caption_metrics(refs, {"a": "a man rides", "b": "dogs play"}, ("BLEU-4", "CIDEr"))
    garbled = caption_metrics(refs, {"a": "a man\x07 rides\ufffd\u2028", "b": "dogs\ufffd play"}, ("BLEU-4", "CIDEr"))
    assert garbled == pytest.approx(clean) and clean["CIDEr"] > 0
    assert capfd.readouterr().err == ""  # nor its "PTBTokenizer tokenized N tokens" line


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("models"))
    vision, lm = resolve_model("tiny:clip", cache), resolve_model("tiny:gpt2", cache)
    builder = RowBuilder(vision, lm, num_frames=2, max_text_tokens=16, max_caption_tokens=12, device="cpu")
    rng = np.random.default_rng(0)
    rows = builder.rows([color_frames(c, 2, rng) for c in ("red", "blue", "green")],
                        ["a red scene", "a blue scene", "a green scene"], ["['Title', 'A description']", "", ""],
                        ["Hello everyone", "", "Welcome back"])
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
    assert {len(x) for x in rows["caption_ids"]} == {12} and {len(x) for x in rows["metadata_ids"]} == {16}
    assert rows["metadata_mask"][1] == [0] * 16  # a clip without metadata: all padding
    caption = [i for i, m in zip(rows["caption_ids"][0], rows["caption_mask"][0]) if m]
    assert builder.tokenizer.decode(caption) == "a red scene<|endoftext|>"
    subtitles = [i for i, m in zip(rows["subtitles_ids"][2], rows["subtitles_mask"][2]) if m]
    # the field is its prompt line, its last max_text_tokens (16) tokens: the prompt is cut from the left
    whole = builder.prompt.ids("\nTranscription: Welcome back")
    assert len(whole) > 16 and subtitles == whole[-16:]
    # a caption cut to fit keeps its end token, as the released code forces it
    long = builder.caption_ids("a man is riding a bicycle down the street near a green tree")
    assert len(long) == 12 and long[-1] == builder.tokenizer.eos_token_id


def released_prompt(subtitles: str, metadata: str) -> str:
    """The released HdvilaDataset's prompt, spelled out as its code builds it."""
    prompt = ""
    if subtitles:
        prompt += "\nTranscription: %s" % subtitles
    if metadata:
        prompt += "\nMetadata: %s" % metadata
    if prompt:
        return ("Some information about a video you will get:" + prompt
                + "\nPlease look at the video and faithfully summarize it in one sentence.")
    return "Please faithfully summarize the following video in one sentence."


def _fields(prompt: Prompt, pairs: list[tuple[str, str]], length: int) -> dict:
    from panda_spark.student.data import pad

    out = {}
    for name, label, texts in (("subtitles", SUBTITLES_LABEL, [s for s, _ in pairs]),
                               ("metadata", METADATA_LABEL, [m for _, m in pairs])):
        padded = [pad(prompt.field(label, t), length, prompt.pad) for t in texts]
        out[f"{name}_ids"] = torch.tensor([i for i, _ in padded])
        out[f"{name}_mask"] = torch.tensor([m for _, m in padded])
    return out


def _assemble(prompt: Prompt, fields: dict):
    return prompt.assemble(fields["subtitles_ids"], fields["subtitles_mask"], fields["metadata_ids"],
                           fields["metadata_mask"])


def test_clip_texts_are_the_released_fields():
    clip = {"cues": [{"start_s": 0.0, "end_s": 2.0, "text": "today we make a cake"}], "start_s": 0.0, "end_s": 3.0,
            "title": "My trip", "description": "a short\nvlog"}
    assert clip_texts(clip, 100) == ("Today we make a cake", "['My trip', 'a short vlog']")
    assert clip_texts({**clip, "cues": None, "title": None, "description": " "}, 100) == ("", "")


def test_prompt_is_the_released_wording_after_a_start_token_cut_from_the_left(parts):
    builder, _, _ = parts
    tok = builder.tokenizer
    metadata = "['My trip to the mountains', 'A short vlog']"
    pairs = [("Hello everyone, welcome back.", metadata), ("Hello everyone, welcome back.", ""), ("", metadata),
             ("", "")]
    prompt = Prompt(tok, 200)
    ids, mask = _assemble(prompt, _fields(prompt, pairs, 200))
    for (subtitles, meta), row, keep in zip(pairs, ids, mask):
        kept = row[keep.bool()].tolist()
        expected = released_prompt(subtitles, meta)
        assert kept == [prompt.start] + tok(expected, add_special_tokens=False)["input_ids"]
        assert tok.decode(kept[1:]) == expected
        assert keep[:-len(kept)].sum() == 0  # padded on the left
    # over-long: the left is cut, the end of the prompt (and of the subtitles) stays
    subtitles = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    end = "\nMetadata: " + metadata + "\nPlease look at the video and faithfully summarize it in one sentence."
    length = len(prompt.ids(end)) + 10  # room for the end of the subtitles only
    short = Prompt(tok, length)
    ids, mask = _assemble(short, _fields(short, [(subtitles, metadata)], length))
    whole = [short.start] + tok(released_prompt(subtitles, metadata), add_special_tokens=False)["input_ids"]
    assert mask.tolist() == [[1] * length] and ids[0].tolist() == whole[-length:]
    assert tok.decode(ids[0]).endswith("lazy dog" + end) and "Some information" not in tok.decode(ids[0])


def test_training_drops_a_whole_field_from_the_prompt(parts):
    builder, _, _ = parts
    tok, n = builder.tokenizer, 2000
    prompt = Prompt(tok, 200)
    fields = _fields(prompt, [("Hello everyone", "['My trip']")] * n, 200)
    dropped = text_inputs(fields, True, 0.5, 0.5, torch.Generator().manual_seed(0))
    ids, mask = _assemble(prompt, dropped)
    seen = pd.Series([tok.decode(r[k.bool()][1:]) for r, k in zip(ids, mask)]).value_counts(normalize=True)
    variants = {released_prompt(s, m) for s in ("Hello everyone", "") for m in ("['My trip']", "")}
    assert set(seen.index) == variants  # a field goes with its line, never in part
    assert all(0.2 < share < 0.3 for share in seen)
    kept = text_inputs(fields, False, 0.5, 0.5)  # never at evaluation
    assert torch.equal(kept["subtitles_mask"], fields["subtitles_mask"])
    assert torch.equal(kept["metadata_mask"], fields["metadata_mask"])


def test_prefix_is_the_released_layout_start_text_video(parts):
    _, rows, config = parts
    torch.manual_seed(0)
    model = StudentCaptioner(config).eval()
    batch = _batch(rows)
    with torch.no_grad():
        prefix, video = model.prefix(batch), model.video_prefix(batch["frame_features"])
        start = model.lm.get_input_embeddings()(torch.tensor(model.prompt.start))
    assert prefix.shape[1] == 1 + config.text_queries + config.video_queries
    assert torch.equal(prefix[:, 0], start.expand(len(rows), -1))
    assert torch.equal(prefix[:, -config.video_queries:], video)


def test_text_branch_is_queried_by_detached_video_tokens_over_positioned_prompt_tokens(parts):
    _, rows, config = parts
    torch.manual_seed(0)
    model = StudentCaptioner(config).eval()
    batch = _batch(rows)
    video = model.video_prefix(batch["frame_features"])
    ids, mask = model.prompt.assemble(batch["subtitles_ids"], batch["subtitles_mask"], batch["metadata_ids"],
                                      batch["metadata_mask"])
    text = model.text_prefix(video, ids, mask)
    text.square().sum().backward()
    vision = [model.frame_in, model.video_branch, model.video_out]
    assert all(p.grad is None for m in vision for p in m.parameters()) and model.video_queries.grad is None
    assert model.text_position.weight.grad.abs().sum() > 0 and model.text_in.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(model.text_prefix(video * 2, ids, mask), text)  # the queries are the video tokens
        # the same tokens in another order: cross-attention alone cannot tell, the position embeddings do
        assert not torch.allclose(model.text_prefix(video, ids.flip(1), mask.flip(1)), text, atol=1e-5)


def test_decoding_defaults_are_the_released_ones_and_conf_checks_them():
    from panda_spark.config import load_config
    from panda_spark.errors import ConfigError
    from panda_spark.student.train import finish_caption

    assert Decoding() == Decoding(num_beams=3, do_sample=True, top_p=0.9, temperature=1.5)
    assert Decoding.of(load_config(None).student) == Decoding()
    assert Decoding.of(load_config(None, ["student.do_sample=false", "student.num_beams=1"]).student) == GREEDY
    with pytest.raises(ConfigError, match="student.top_p"):
        load_config(None, ["student.top_p=0"])
    with pytest.raises(ConfigError, match="student.text_queries"):
        load_config(None, ["student.text_queries=5"])
    assert [finish_caption(t) for t in (" a red scene ", "Two dogs play!", "")] == ["A red scene.", "Two dogs play!", ""]


def test_a_trained_student_reproduces_its_captions_greedily_and_decodes_as_released(parts):
    """Training and generation share one layout: a student that memorised a tiny task gives back
    its captions word for word."""
    from panda_spark.student.data import to_model_batch
    from panda_spark.student.train import finish_caption, generate_captions

    _, rows, config = parts
    captions = ["a red scene", "a blue scene", "a green scene"]
    config = dataclasses.replace(config, train_language_model=True)
    torch.manual_seed(0)
    model = StudentCaptioner(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    raw = {c: torch.from_numpy(np.stack(rows[c].to_numpy())) for c in NUMERIC_COLUMNS}
    generator, threads = torch.Generator().manual_seed(0), torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (300 s instead of 7 s on a busy box)
    try:
        for _ in range(STEPS):
            loss = model(to_model_batch(raw, 2, "cpu", True, 0.5, 0.5, generator))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.05
    assert generate_captions(model, rows, 2, "cpu", 12, GREEDY) == [finish_caption(c) for c in captions]
    torch.manual_seed(0)
    sampled = generate_captions(model, rows, 2, "cpu", 12)  # the released decoding: 3 beams, sampling
    assert len(sampled) == 3 and all(c[0].isupper() and c.endswith(".") for c in sampled)


def test_save_and_load_give_the_same_loss_and_reject_another_format(parts, tmp_path):
    _, rows, config = parts
    torch.manual_seed(0)
    model = StudentCaptioner(config).eval()
    assert model.lm.loss_type == "ForCausalLM"  # named, so transformers need not warn it guessed
    batch = _batch(rows)
    with torch.no_grad():
        before = model(batch).item()
    from transformers import AutoTokenizer

    model.save(tmp_path / "student")
    loaded = StudentCaptioner.load(tmp_path / "student")
    with torch.no_grad():
        assert loaded(batch).item() == pytest.approx(before, rel=1e-6)
    assert loaded.config.vision_dim == config.vision_dim and loaded.config.format_version == FORMAT_VERSION
    assert AutoTokenizer.from_pretrained(tmp_path / "student" / "language_model").encode("a red scene") == \
        model.tokenizer.encode("a red scene")
    text = (tmp_path / "student" / "student_config.json").read_text().replace(
        f'"format_version": {FORMAT_VERSION}', '"format_version": 99')
    (tmp_path / "student" / "student_config.json").write_text(text)
    with pytest.raises(ValueError, match="format 99"):
        StudentCaptioner.load(tmp_path / "student")


def test_memory_loader_shards_rows_between_processes(parts):
    _, rows, _ = parts
    loader = MemoryLoader(pd.concat([rows] * 3, ignore_index=True))
    seen = []
    for rank in range(2):
        with loader.batches(rank, 2, 2, epoch=1) as batches:
            seen.append(sum(len(b["caption_ids"]) for b in batches))
    assert seen == [5, 4] and len(loader) == 9


def _memory_job(config, rows, tmp_path, epochs, train=None, tracking_uri=None, mlflow_run_id=None):
    """A one-process CPU training job on in-memory rows, checkpoints and model under `tmp_path`."""
    from panda_spark.student.train import TrainJob

    return TrainJob(config=config, train=train or MemoryLoader(rows), val=MemoryLoader(rows), eval_rows=rows.iloc[:0],
                    epochs=epochs, batch_size=4, learning_rate=1e-3, weight_decay=0.0, seed=0, use_gpu=False,
                    tracking_uri=tracking_uri, mlflow_run_id=mlflow_run_id, checkpoint_dir=str(tmp_path / "ckpt"),
                    output_dir=str(tmp_path / "out"))


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

    _, rows, config = parts
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("resume", artifact_location=(tmp_path / "artifacts").as_uri())
    client = mlflow.MlflowClient(tracking)
    loader = MemoryLoader(pd.concat([rows] * 4, ignore_index=True))

    def job(epochs: int):
        run = client.create_run(experiment)
        return run.info.run_id, _memory_job(config, rows, tmp_path, epochs, loader, tracking, run.info.run_id)

    first_id, first = job(2)
    assert run_train_fn_alone(first)["epoch"] == 2
    second_id, second = job(3)  # as if the job had been asked for 3 epochs and died after 2
    assert run_train_fn_alone(second)["epoch"] == 3
    assert [m.step for m in client.get_metric_history(first_id, "val_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(second_id, "val_loss")] == [3]
    steps = [m.step for m in client.get_metric_history(second_id, "loss")]
    assert (min(steps), max(steps)) == (7, 9)  # 3 steps an epoch, counting on from the checkpoint
    assert StudentCaptioner.load(tmp_path / "out").config.hidden == config.hidden


def test_training_leaves_the_warning_filters_as_it_found_them(parts, tmp_path):
    # torch's Join sets simplefilter("once") on exit; left in place it unmutes petastorm's reader threads
    _, rows, config = parts
    job = _memory_job(config, rows, tmp_path, epochs=1)
    before = list(warnings.filters)
    assert run_train_fn_alone(job)["epoch"] == 1
    assert warnings.filters == before


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

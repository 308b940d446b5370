"""Tiny random models reload through the ordinary from_pretrained path and generate deterministically."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Blip2ForConditionalGeneration,
)

from panda_spark.tiny_models import RECIPES, build_tiny  # noqa: E402

MAX_NEW = 8


def _frames(seed: int, n: int, size: int = 224) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _generate(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False)


def _check(model, inputs, decode, prompt_len: int, batch: int) -> list[str]:
    ids = _generate(model, inputs)
    assert ids.shape[0] == batch
    assert prompt_len < ids.shape[1] <= prompt_len + MAX_NEW
    assert torch.equal(ids, _generate(model, inputs))  # deterministic
    texts = decode(ids)
    assert len(texts) == batch and all(isinstance(t, str) for t in texts)
    return texts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = build_tiny(family, tmp_path_factory.mktemp(family))
        return cache[family]
    return get


def test_recipes_listed():
    assert list(RECIPES) == ["clip", "gpt2", "blip2", "instructblip", "git-video", "text-llm", "qwen2-vl",
                            "llava-next-video", "video-llava"]
    with pytest.raises(KeyError):
        build_tiny("nope", "/nonexistent")


@pytest.mark.parametrize("family", ["blip2", "text-llm"])
def test_second_build_is_a_no_op(built, family):
    directory = built(family)
    config = directory / "config.json"
    before = config.stat().st_mtime_ns
    assert build_tiny(family, directory) == directory
    assert config.stat().st_mtime_ns == before


def test_blip2_captions_one_frame_with_and_without_prompt(built):
    directory = built("blip2")
    processor = AutoProcessor.from_pretrained(directory)
    model = Blip2ForConditionalGeneration.from_pretrained(directory).eval()
    frames = _frames(0, 2)

    single = processor(images=[frames[0]], return_tensors="pt")
    assert single["pixel_values"].shape == (1, 3, 224, 224)
    # without text, generate still returns the implicit prompt: num_query_tokens <image> tokens + BOS
    prompt_len = model.config.num_query_tokens + 1
    _check(model, single, lambda ids: processor.batch_decode(ids, skip_special_tokens=True), prompt_len, 1)
    empty = processor(images=[frames[0]], text=[""], return_tensors="pt")
    assert empty["input_ids"].shape[1] == prompt_len

    batch = processor(images=list(frames), text=["a photo of", "Question: what is happening? Answer:"],
                      return_tensors="pt", padding=True)
    assert processor.tokenizer.padding_side == "left"
    _check(model, batch, lambda ids: processor.batch_decode(ids, skip_special_tokens=True),
           batch["input_ids"].shape[1], 2)


def test_git_video_captions_eight_frames(built):
    directory = built("git-video")
    processor = AutoProcessor.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    assert model.config.num_image_with_embedding == 8
    clips = [_frames(seed, 8, size=160) for seed in (1, 2)]
    pixel_values = torch.stack([processor(images=list(clip), return_tensors="pt").pixel_values for clip in clips])
    assert pixel_values.shape == (2, 8, 3, 224, 224)

    def decode(ids):
        return processor.batch_decode(ids, skip_special_tokens=True)
    single = _check(model, {"pixel_values": pixel_values[:1]}, decode, 1, 1)
    both = _check(model, {"pixel_values": pixel_values}, decode, 1, 2)
    assert both[0] == single[0]


def test_text_llm_chat_template_and_left_padded_batch(built):
    directory = built("text-llm")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    assert tokenizer.chat_template and tokenizer.padding_side == "left"
    conversations = [
        [{"role": "user", "content": "Title: a dog. Subtitles: hello everyone."}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Describe the video in one sentence. Subtitles: today we make a cake."}],
    ]
    text = tokenizer.apply_chat_template(conversations[1], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>system\nYou are" in text

    def decode(ids, n):
        return tokenizer.batch_decode(ids[:, n:], skip_special_tokens=True)
    single = tokenizer.apply_chat_template(conversations[:1], add_generation_prompt=True, return_tensors="pt",
                                           padding=True, return_dict=True)
    n1 = single["input_ids"].shape[1]
    one = _check(model, single, lambda ids: decode(ids, n1), n1, 1)
    batch = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, return_tensors="pt",
                                          padding=True, return_dict=True)
    assert batch["attention_mask"][0, 0] == 0  # left padding
    n2 = batch["input_ids"].shape[1]
    two = _check(model, batch, lambda ids: decode(ids, n2), n2, 2)
    assert two[0] == one[0]


def test_qwen2_vl_captions_an_eight_frame_video(built):
    directory = built("qwen2-vl")
    processor = AutoProcessor.from_pretrained(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    questions = ["Describe the video.", "Write a short caption for this video in one sentence."]
    prompts = [processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": q}]}],
        add_generation_prompt=True) for q in questions]
    clips = [_frames(seed, 8) for seed in (3, 4)]

    def run(n):
        inputs = processor(text=prompts[:n], videos=clips[:n], return_tensors="pt", padding=True)
        video_token = model.config.video_token_id
        assert int((inputs["input_ids"] == video_token).sum()) == 16 * n
        length = inputs["input_ids"].shape[1]
        return _check(model, inputs, lambda ids: processor.batch_decode(ids[:, length:], skip_special_tokens=True),
                      length, n)
    one, two = run(1), run(2)
    assert two[0] == one[0]

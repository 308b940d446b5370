"""Tiny random-initialised instances of real transformers architectures, plus their processors.

Each recipe builds a model (hidden 32-64, 1-2 layers, vocab of a few hundred) with
`torch.manual_seed(0)`, and saves model + processor with `save_pretrained(directory)`, so callers load
them through the ordinary `Auto*.from_pretrained(directory)` path exactly like real checkpoints.
Their outputs are noise; their shapes, processors and generation paths are real. No network needed.

Contract (family -> what is built -> what its processor expects):

* ``"blip2"``: `Blip2ForConditionalGeneration` (ViT + Q-Former with 8 query tokens + OPT decoder)
  and `Blip2Processor` (`BlipImageProcessor` at 224x224 + byte-level BPE tokenizer).
  ONE frame per sample, optional text prompt::

      inputs = processor(images=[frame_hwc_uint8, ...], text=[prompt, ...] or None,
                         return_tensors="pt", padding=True)
      ids = model.generate(**inputs, max_new_tokens=8, do_sample=False)
      processor.batch_decode(ids, skip_special_tokens=True)

* ``"git-video"``: `GitForCausalLM` with `num_image_with_embedding=8` and `GitProcessor`
  (`CLIPImageProcessor` at 224x224 + BERT-style WordPiece tokenizer). The processor does not stack
  frames, so build pixel_values (batch, 8, 3, H, W) yourself::

      pv = torch.stack([processor(images=list(frames_of_clip), return_tensors="pt").pixel_values
                        for frames_of_clip in clips])                       # (B, 8, 3, 224, 224)
      ids = model.generate(pixel_values=pv, max_new_tokens=8, do_sample=False)
      processor.batch_decode(ids, skip_special_tokens=True)

* ``"text-llm"``: `Qwen2ForCausalLM` (text only) + `PreTrainedTokenizerFast` with a ChatML
  `chat_template` and left padding::

      enc = tokenizer.apply_chat_template([[{"role": "user", "content": text}], ...],
                                          add_generation_prompt=True, return_tensors="pt",
                                          padding=True, return_dict=True)
      ids = model.generate(**enc, max_new_tokens=8, do_sample=False)
      tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

* ``"qwen2-vl"``: see `_build_qwen2_vl` docstring (video of 8 frames + text prompt).

`build_tiny(family, directory)` builds only when `directory/config.json` is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

# A few dozen sentences to train the tiny tokenizers on (captions, subtitles, chat words).
_CORPUS = [
    "A man is walking down the street with a dog.",
    "A woman is cooking pasta in a small kitchen.",
    "Two children are playing football in the park.",
    "A cat sleeps on a sofa next to a window.",
    "The camera pans across a mountain landscape at sunset.",
    "A person is typing on a laptop at a wooden desk.",
    "Cars drive along a busy highway at night.",
    "A chef slices vegetables on a cutting board.",
    "A group of people are dancing at a party.",
    "The video shows a close up of a flower blooming.",
    "A boy rides a bicycle along the beach.",
    "Someone is playing the guitar on a stage.",
    "A dog runs through the snow in the forest.",
    "The presenter explains how to fix a bicycle tire.",
    "A girl is painting a picture of the sea.",
    "Waves crash against the rocks on the shore.",
    "A bird flies over the lake in the morning.",
    "The man opens the door and walks into the room.",
    "A timelapse of clouds moving over the city.",
    "Subtitles: hello everyone, welcome back to my channel.",
    "Subtitles: today we are going to make a cake.",
    "Title: my trip to the mountains. Description: a short vlog.",
    "Describe the video in one sentence.",
    "Write a short caption for this video.",
    "Question: what is happening in the video? Answer:",
    "You are a helpful assistant that writes video captions.",
    "The user asks a question and the assistant answers.",
    "system user assistant video image caption frame clip",
    "a photo of a red car parked near a green tree",
    "the quick brown fox jumps over the lazy dog",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ! ? : ; ' \" ( ) - _ / < > | [ ] { }",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz",
]

_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _bpe_tokenizer(special_tokens: list[str], vocab_size: int = 400, **kwargs):
    """A byte-level BPE tokenizer trained on `_CORPUS`; special tokens get the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.add_special_tokens({"additional_special_tokens": [t for t in special_tokens
                                                           if t not in kwargs.values()]})
    return fast


def _wordpiece_tokenizer(vocab_size: int = 400):
    """A BERT-style uncased WordPiece tokenizer ([CLS] ... [SEP]) trained on `_CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   bos_token="[CLS]", eos_token="[SEP]")


def _build_blip2(directory: Path) -> Path:
    import torch
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                              BlipImageProcessor)

    tokenizer = _bpe_tokenizer(["<pad>", "</s>", "<s>", "<unk>", "<image>"],
                               bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.padding_side = "left"
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    num_query_tokens = 8
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=32, initializer_range=0.02),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=len(tokenizer), cross_attention_frequency=1),
        text_config=dict(model_type="opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
                         vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        num_query_tokens=num_query_tokens,
        image_token_index=image_token_id,
    )
    model = Blip2ForConditionalGeneration(config).eval()
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224})
    Blip2Processor(image_processor=image_processor, tokenizer=tokenizer,
                   num_query_tokens=num_query_tokens).save_pretrained(directory)
    return directory


RECIPES: dict[str, Callable[[Path], Path]] = {
    "blip2": _build_blip2,
}


def build_tiny(family: str, directory: Path) -> Path:
    """Build the tiny `family` model + processor into `directory` unless it already holds one."""
    if family not in RECIPES:
        raise KeyError(f"unknown tiny model family {family!r}; known: {sorted(RECIPES)}")
    directory = Path(directory)
    if not (directory / "config.json").exists():
        directory.mkdir(parents=True, exist_ok=True)
        RECIPES[family](directory)
    return directory

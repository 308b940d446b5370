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

  `ids` starts with the prompt: 8 `<image>` tokens + BOS (`</s>`) + the prompt text (left-padded);
  `skip_special_tokens=True` drops the specials, or slice off `inputs["input_ids"].shape[1]` when text
  was given (`num_query_tokens + 1` = 9 when it was not).

* ``"instructblip"``: `InstructBlipForConditionalGeneration` (the same ViT + Q-Former + OPT layout, OPT
  with room for 1024 positions) and `InstructBlipProcessor` (the same + a WordPiece tokenizer for the
  instruction the Q-Former reads); called exactly as ``"blip2"``.

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

* ``"qwen2-vl"``: `Qwen2VLForConditionalGeneration` (load with `AutoModelForImageTextToText`) and
  `Qwen2VLProcessor` (same ChatML tokenizer; video frames resized to 56x56 with 14-px patches, so a
  clip of 8 frames becomes 16 `<|video_pad|>` tokens). One clip = uint8 array (8, H, W, 3)::

      prompts = [processor.apply_chat_template(
          [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
          add_generation_prompt=True) for question in questions]
      inputs = processor(text=prompts, videos=[clip, ...], return_tensors="pt", padding=True)
      ids = model.generate(**inputs, max_new_tokens=8, do_sample=False)
      processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

* ``"llava-next-video"`` / ``"video-llava"``: `LlavaNextVideoForConditionalGeneration` /
  `VideoLlavaForConditionalGeneration` (CLIP vision tower, 28-px patches at 112x112, + Llama decoder;
  load with `AutoModelForImageTextToText`) and their processors, whose chat template gives LLaVA's
  ``USER: <video>\\n{question} ASSISTANT:``. Called as ``"qwen2-vl"`` (``videos=`` a clip's frames
  (8, H, W, 3), or ``images=`` one frame per sample with an ``{"type": "image"}`` part); a video
  frame becomes 4 `<video>` tokens (LLaVA-NeXT-Video pools 2x2) or 17 (Video-LLaVA, with CLS).

`build_tiny(family, directory)` builds only when `directory/config.json` is missing.
"""
from __future__ import annotations

import os
import shutil
import tempfile
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


def _bpe_tokenizer(special_tokens: list[str], vocab_size: int = 400, prepend_bos: bool = False, **kwargs):
    """A left-padding byte-level BPE tokenizer trained on `_CORPUS`; special tokens get the first ids.
    `prepend_bos` makes it start every sequence with `bos_token` (as OPT's tokenizer does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    if prepend_bos:
        bos = kwargs["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", **kwargs)
    fast.add_special_tokens({"additional_special_tokens": [t for t in special_tokens
                                                           if t not in kwargs.values()]})
    return fast


def _wordpiece_tokenizer():
    """A BERT-style uncased WordPiece tokenizer ([CLS] ... [SEP]) whose vocabulary is built
    deterministically from `_CORPUS`: specials, single characters, `##`+characters, whole words.
    (The `tokenizers` WordPiece trainer breaks ties differently in each process.)"""
    import re

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    text = " ".join(_CORPUS).lower()
    chars = sorted({c for c in text if not c.isspace()})
    words = sorted(set(re.findall(r"\w+", text)) - set(chars))
    tokens = specials + chars + ["##" + c for c in chars] + words
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   bos_token="[CLS]", eos_token="[SEP]")


_BLIP_QUERY_TOKENS = 8


def _opt_tokenizer():
    """OPT-style: `</s>` as bos and eos, prepended to every sequence; `<image>` for BLIP's query tokens."""
    return _bpe_tokenizer(["<pad>", "</s>", "<s>", "<unk>", "<image>"], prepend_bos=True,
                          bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def _blip_config(config_class, tokenizer, qformer_vocab_size: int, max_positions: int = 128):
    """A BLIP-2-family config: ViT (224 px, 32-px patches) + Q-Former + OPT decoder of
    `max_positions` (query tokens + prompt + caption)."""
    return config_class(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=32, initializer_range=0.02),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=qformer_vocab_size, cross_attention_frequency=1),
        text_config=dict(model_type="opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=max_positions,
                         vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        num_query_tokens=_BLIP_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )


def _set_special_ids(model, tokenizer) -> None:
    for name in ("bos", "eos", "pad"):
        setattr(model.generation_config, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))


def _build_blip2(directory: Path) -> Path:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tokenizer = _opt_tokenizer()
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(_blip_config(Blip2Config, tokenizer, len(tokenizer))).eval()
    _set_special_ids(model, tokenizer)
    model.save_pretrained(directory)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224})
    Blip2Processor(image_processor=image_processor, tokenizer=tokenizer,
                   num_query_tokens=_BLIP_QUERY_TOKENS).save_pretrained(directory)
    return directory


def _build_instructblip(directory: Path) -> Path:
    """InstructBLIP: BLIP-2's layout, plus a WordPiece tokenizer for the instruction its Q-Former reads."""
    import torch
    from transformers import (BlipImageProcessor, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor)

    tokenizer, qformer_tokenizer = _opt_tokenizer(), _wordpiece_tokenizer()
    torch.manual_seed(0)
    # room for a prompt with subtitles and metadata
    config = _blip_config(InstructBlipConfig, tokenizer, len(qformer_tokenizer), max_positions=1024)
    config.qformer_config.pad_token_id = qformer_tokenizer.pad_token_id
    model = InstructBlipForConditionalGeneration(config).eval()
    _set_special_ids(model, tokenizer)
    model.save_pretrained(directory)
    InstructBlipProcessor(image_processor=BlipImageProcessor(size={"height": 224, "width": 224}),
                          tokenizer=tokenizer, qformer_tokenizer=qformer_tokenizer,
                          num_query_tokens=_BLIP_QUERY_TOKENS).save_pretrained(directory)
    return directory


def _build_git_video(directory: Path) -> Path:
    import torch
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = _wordpiece_tokenizer()
    torch.manual_seed(0)
    config = GitConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=56),
        vocab_size=len(tokenizer), hidden_size=32, initializer_range=0.2, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=128, num_image_with_embedding=8,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GitForCausalLM(config).eval()
    model.generation_config.bos_token_id = tokenizer.cls_token_id
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def _chatml_tokenizer():
    """Qwen-style tokenizer: ChatML template, `<|im_end|>` eos, `<|endoftext|>` pad, left padding."""
    return _bpe_tokenizer(_QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          chat_template=_CHATML_TEMPLATE)


def _set_generation_ids(model, tokenizer) -> None:
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                            tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")


def _build_text_llm(directory: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _chatml_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).eval()
    _set_generation_ids(model, tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _build_qwen2_vl(directory: Path) -> Path:
    """Qwen2-VL: 14-px patches, frames resized to 56x56 (16 patches, 4 merged tokens per 2 frames),
    so 8 frames give 16 `<|video_pad|>` tokens."""
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tokenizer = _chatml_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    torch.manual_seed(0)
    hidden, heads = 64, 4
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=2,
                         max_position_embeddings=512, initializer_range=0.2,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]},  # sums to head_dim / 2 = 8
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=hidden, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    _set_generation_ids(model, tokenizer)
    model.save_pretrained(directory)
    size = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2,
                                              do_sample_frames=False, cap_pixels_per_frame=True),
        tokenizer=tokenizer, chat_template=_CHATML_TEMPLATE)
    processor.save_pretrained(directory)
    return directory


_LLAVA_TEMPLATE = (  # LLaVA's "USER: <video>\n... ASSISTANT:"
    "{% for message in messages %}"
    "{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>\n' }}"
    "{% endif %}{% endfor %}{% endif %}{{ ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
_LLAVA_SIZE = 112  # frames resized and cropped to 112x112: 4x4 patches of 28 px (+ CLS)


def _llava_parts():
    """The LLaVA family's tokenizer (Llama-style specials, `<image>` and `<video>`, LLaVA chat
    template) and config keywords: a CLIP vision tower (last layer's features) + a Llama decoder."""
    tokenizer = _bpe_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"], prepend_bos=True,
                               bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                               chat_template=_LLAVA_TEMPLATE)
    config = dict(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=_LLAVA_SIZE, patch_size=28, projection_dim=32),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
    )
    processor = dict(tokenizer=tokenizer, chat_template=_LLAVA_TEMPLATE, patch_size=28,
                     vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return tokenizer, config, processor


def _build_llava_next_video(directory: Path) -> Path:
    """LLaVA-NeXT-Video: each frame's 4x4 patch features average-pooled to 2x2 → 4 `<video>` tokens."""
    import torch
    from transformers import (LlavaNextImageProcessor, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration,
                              LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor)

    tokenizer, config, processor = _llava_parts()
    pinpoints = [[_LLAVA_SIZE, _LLAVA_SIZE]]
    torch.manual_seed(0)
    config = LlavaNextVideoConfig(**config, image_grid_pinpoints=pinpoints)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    _set_special_ids(model, tokenizer)
    model.save_pretrained(directory)
    size, crop = {"shortest_edge": _LLAVA_SIZE}, {"height": _LLAVA_SIZE, "width": _LLAVA_SIZE}
    LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessor(size=size, crop_size=crop, image_grid_pinpoints=pinpoints),
        **processor).save_pretrained(directory)
    return directory


def _build_video_llava(directory: Path) -> Path:
    """Video-LLaVA: every frame's 16 patch features + CLS → 17 `<video>` tokens per frame."""
    import torch
    from transformers import (VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor,
                              VideoLlavaProcessor, VideoLlavaVideoProcessor)

    tokenizer, config, processor = _llava_parts()
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(VideoLlavaConfig(**config)).eval()
    _set_special_ids(model, tokenizer)
    model.save_pretrained(directory)
    size, crop = {"shortest_edge": _LLAVA_SIZE}, {"height": _LLAVA_SIZE, "width": _LLAVA_SIZE}
    VideoLlavaProcessor(image_processor=VideoLlavaImageProcessor(size=size, crop_size=crop),
                        video_processor=VideoLlavaVideoProcessor(size=size, crop_size=crop),
                        **processor).save_pretrained(directory)
    return directory


def _build_clip(directory: Path) -> Path:
    """A CLIP dual encoder (the selector's architecture): 32-px patches, 16-d projections, the
    WordPiece tokenizer saved beside it; load with AutoModel + AutoTokenizer + AutoImageProcessor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _wordpiece_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=32),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(directory)
    return directory


def _build_gpt2(directory: Path) -> Path:
    """A GPT-2 causal LM (the student's language model): byte-level BPE, `<|endoftext|>` as bos,
    eos and pad, right padding for training."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _bpe_tokenizer(["<|endoftext|>"], bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>")
    tokenizer.padding_side = "right"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


RECIPES: dict[str, Callable[[Path], Path]] = {
    "clip": _build_clip,
    "gpt2": _build_gpt2,
    "blip2": _build_blip2,
    "instructblip": _build_instructblip,
    "git-video": _build_git_video,
    "text-llm": _build_text_llm,
    "qwen2-vl": _build_qwen2_vl,
    "llava-next-video": _build_llava_next_video,
    "video-llava": _build_video_llava,
}


def build_tiny(family: str, directory: Path) -> Path:
    """Build the tiny `family` model + processor into `directory` unless it already holds one."""
    if family not in RECIPES:
        raise KeyError(f"unknown tiny model family {family!r}; known: {sorted(RECIPES)}")
    directory = Path(directory)
    if not (directory / "config.json").exists():
        from panda_spark.devices import quiet_transformers

        quiet_transformers()
        # Several Spark workers may build the same model at once: each builds in a folder of its
        # own and renames it into place; the first rename wins, the others are discarded.
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        RECIPES[family](staging)
        try:
            os.rename(staging, directory)
        except OSError:  # another worker's copy is already in place
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def resolve_model(model: str, cache_dir: str) -> str:
    """`tiny:<family>` → the tiny model's directory in the cache (built on first use);
    `models:/<name>/<version>` → its download in the cache (made on the driver); else as given."""
    if model.startswith("models:/"):
        return str(Path(cache_dir) / "registered" / model[len("models:/"):])
    if not model.startswith("tiny:"):
        return model
    family = model[len("tiny:"):]
    return str(build_tiny(family, Path(cache_dir) / "tiny" / family))

"""What one teacher gets for one clip: its frames and its prompt. No Spark, no models.

Contract of :func:`teacher_inputs`: a clip's frames as stored by the split stage (`clip_frames`:
8 `uniform` frames and one `keyframe` from 30–70% of the clip, JPEG) and its text (the clip's
subtitle cues, the video's title and description) → a :class:`TeacherInput` for one teacher:
`frame` teachers get the keyframe, `video` teachers `num_frames` uniform frames (resampled
evenly when the teacher wants another count), text-only teachers none.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

from panda_spark.config import TeacherSettings
from panda_spark.video.frames import keyframe, uniform_frames
from panda_spark.text.clip_text import (
    PROMPT_WITH_TEXT, PROMPT_WITHOUT_TEXT, TokenCounter, build_prompt, clip_subtitles, truncate, whitespace_tokens,
)


@dataclass
class TeacherInput:
    clip_id: str
    frames: list[np.ndarray]  # RGB uint8, possibly empty
    prompt: str
    inputs_used: list[str]  # what actually went in: e.g. ["video", "subtitles"] when a clip has no metadata
    subtitles: str = ""  # the clip's subtitles and the video's metadata as the prompt holds them,
    metadata: str = ""  # for teachers that take text apart from a prompt (the student)


def teacher_version(teacher: TeacherSettings) -> str:
    """Model id + revision + a hash of everything that shapes the caption (prompt, inputs, decoding)."""
    shaping = [teacher.prompt or PROMPT_WITH_TEXT, teacher.prompt_without_text or PROMPT_WITHOUT_TEXT,
               sorted(teacher.inputs), teacher.max_new_tokens, teacher.num_beams, teacher.do_sample,
               teacher.num_frames, teacher.adapter]
    digest = hashlib.sha256(json.dumps(shaping).encode()).hexdigest()[:12]
    return f"{teacher.model}@{teacher.revision or 'default'}#{digest}"


def select_frames(frames: list[dict], teacher: TeacherSettings) -> list[np.ndarray]:
    """`frames`: the clip's clip_frames rows (frame_idx, role, jpeg)."""
    if "frame" in teacher.inputs:
        return [keyframe(frames)]
    if "video" in teacher.inputs:
        return uniform_frames(frames, teacher.num_frames)
    return []


def teacher_inputs(clip_id: str, frames: list[dict], cues: list[dict], start_s: float, end_s: float,
                   title: str | None, description: str | None, teacher: TeacherSettings,
                   max_subtitle_tokens: int, max_metadata_tokens: int,
                   count_tokens: TokenCounter = whitespace_tokens) -> TeacherInput:
    used = [x for x in teacher.inputs if x in ("frame", "video")]
    subtitles = clip_subtitles(cues, start_s, end_s, max_subtitle_tokens, count_tokens) \
        if "subtitles" in teacher.inputs else ""
    if "metadata" in teacher.inputs:
        title, description = _clean(title), _clean(description)
        if description:
            description = truncate(description, max_metadata_tokens, count_tokens)
    else:
        title = description = None
    used += [name for name, value in (("subtitles", subtitles), ("metadata", title or description)) if value]
    prompt = build_prompt(teacher.prompt or PROMPT_WITH_TEXT, teacher.prompt_without_text or PROMPT_WITHOUT_TEXT,
                          subtitles, title, description)
    metadata = ". ".join(t for t in (title, description) if t)
    return TeacherInput(clip_id, select_frames(frames, teacher), prompt, used, subtitles or "", metadata)


def _clean(text: str | None) -> str | None:
    return re.sub(r"\s+", " ", text).strip() if text else None


def is_degenerate(caption: str) -> bool:
    """Empty, or one token repeated, or no letters at all: kept, but flagged."""
    words = caption.split()
    return not words or len(set(words)) == 1 and len(words) > 2 or not re.search(r"[^\W\d_]", caption)

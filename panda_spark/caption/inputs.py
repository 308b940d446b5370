"""What one teacher gets for one clip: its frames and its prompt. No Spark, no models.

Contract of :func:`teacher_inputs`: a clip's frames as stored by the split stage (`clip_frames`:
8 `uniform` frames and one `keyframe` from 30–70% of the clip, JPEG) and its text (the clip's
subtitle cues, the video's title and description, and the captions other teachers gave it) → a
:class:`TeacherInput` for one teacher: `frame` teachers get the keyframe, `video` teachers
`num_frames` uniform frames (resampled evenly when the teacher wants another count), text-only
teachers none; a teacher with `captions:<name>` inputs gets those captions in its prompt, and a
clip that lacks one of them (the upstream teacher failed on it or has not run) is a
:class:`MissingUpstreamCaption` input error: its row goes to `errors` and the clip stays pending for
the teacher, so the next run captions it once the upstream caption exists.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from panda_spark.config import CAPTIONS_INPUT, TeacherSettings, teacher_order
from panda_spark.errors import InputError
from panda_spark.video.frames import keyframe, uniform_frames
from panda_spark.text.clip_text import (
    PROMPT_WITH_CAPTIONS, PROMPT_WITH_TEXT, PROMPT_WITHOUT_TEXT, TokenCounter, build_prompt, clip_subtitles, truncate,
    whitespace_tokens,
)


class MissingUpstreamCaption(InputError):
    error_class = "MissingUpstreamCaption"


@dataclass
class TeacherInput:
    clip_id: str
    frames: list[np.ndarray]  # RGB uint8, possibly empty
    prompt: str
    inputs_used: list[str]  # what actually went in: e.g. ["video", "subtitles"] when a clip has no metadata
    # the clip's subtitles and the video's title and description as the prompt holds them, for
    # teachers that take text apart from a prompt (the student, which lays them out as it was trained)
    subtitles: str = ""
    title: str | None = None
    description: str | None = None


def teacher_version(teacher: TeacherSettings, upstream: Mapping[str, str] | None = None) -> str:
    """Model id + revision + a hash of everything that shapes the caption (prompt, inputs, decoding,
    and the versions of the teachers whose captions it takes: `upstream`, name → version, as
    :func:`teacher_versions` gives them), so re-captioning an upstream teacher makes this one
    pending again."""
    shaping = [*_prompts(teacher), sorted(teacher.inputs), teacher.max_new_tokens, teacher.num_beams,
               teacher.do_sample, teacher.num_frames, teacher.adapter]
    if teacher.upstream:
        shaping.append([(upstream or {})[name] for name in teacher.upstream])
    digest = hashlib.sha256(json.dumps(shaping).encode()).hexdigest()[:12]
    return f"{teacher.model}@{teacher.revision or 'default'}#{digest}"


def teacher_versions(teachers: list[TeacherSettings]) -> dict[str, str]:
    """Name → :func:`teacher_version` of every teacher of `teachers` (which must hold the teachers
    whose captions any of them takes)."""
    versions: dict[str, str] = {}
    for teacher in teacher_order(teachers):
        versions[teacher.name] = teacher_version(teacher, versions)
    return versions


def _prompts(teacher: TeacherSettings) -> tuple[str, str]:
    """The teacher's prompt templates with and without text to show."""
    default = PROMPT_WITH_CAPTIONS if teacher.upstream else PROMPT_WITH_TEXT
    return teacher.prompt or default, teacher.prompt_without_text or PROMPT_WITHOUT_TEXT


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
                   count_tokens: TokenCounter = whitespace_tokens,
                   captions: Mapping[str, str | None] | None = None) -> TeacherInput:
    """`captions`: teacher name → its caption of the clip (None or absent: it has none)."""
    upstream = {name: (captions or {}).get(name) for name in teacher.upstream}
    missing = [name for name, caption in upstream.items() if caption is None]
    if missing:
        raise MissingUpstreamCaption(f"no caption of teacher {missing[0]!r} (its current version) for this clip yet: "
                                     f"teacher {teacher.name!r} captions it once there is one")
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
    used += [CAPTIONS_INPUT + name for name in upstream]
    prompt = build_prompt(*_prompts(teacher), subtitles, title, description, upstream)
    return TeacherInput(clip_id, select_frames(frames, teacher), prompt, used, subtitles or "", title, description)


def _clean(text: str | None) -> str | None:
    return re.sub(r"\s+", " ", text).strip() if text else None


def is_degenerate(caption: str) -> bool:
    """Empty, or one token repeated, or no letters at all: kept, but flagged."""
    words = caption.split()
    return not words or len(set(words)) == 1 and len(words) > 2 or not re.search(r"[^\W\d_]", caption)

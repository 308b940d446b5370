"""The text a teacher sees beside a clip's pixels: its subtitles and the video's metadata. No Spark.

Panda-70M gives teachers the platform's own subtitles for the clip's time range (no ASR) and the
video's title and description, inside one of two prompts. Subtitles arrive as cues
(`start_s`, `end_s`, `text`); auto-generated ones roll: each cue repeats the previous line before
adding a new one, and carry inline markup. `clip_subtitles` keeps the cues that overlap the clip,
strips markup, drops the repeated lines and cuts the result to a token budget.
"""
from __future__ import annotations

import html
import re
from typing import Callable, Iterable, Mapping

# The paper's two prompts (its figure, paraphrased in ../shared/docs/panda70m-reference.md).
PROMPT_WITH_TEXT = (
    "You are given some information about a video and will be asked to summarize the video. "
    'The subtitles of the video: "{subtitles}". Some descriptions of the video: ["{title}", "{description}"]. '
    "Please faithfully summarize the video in one sentence."
)
PROMPT_WITHOUT_TEXT = "Please faithfully summarize the video in one sentence."
# VideoChat-Text: an LLM that sees a text description of the video (other teachers' captions of it).
PROMPT_WITH_CAPTIONS = (
    "You are given some information about a video and will be asked to summarize the video. "
    'A description of what the video shows: "{captions}". The subtitles of the video: "{subtitles}". '
    'Some descriptions of the video: ["{title}", "{description}"]. '
    "Please faithfully summarize the video in one sentence."
)
CAPTION_FIELD = re.compile(r"\{caption:([^{}]+)\}")  # {caption:<teacher name>} in a prompt template

_TAG = re.compile(r"<[^>]*>")  # <i>, </c>, <c.colorE5E5E5>, <00:00:01.520> (karaoke timestamps)
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} positioning codes some SRT files carry
_SPACE = re.compile(r"\s+")

TokenCounter = Callable[[str], int]


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def clean_cue_text(text: str) -> list[str]:
    """A cue's lines without markup or entities, whitespace collapsed, empty lines dropped."""
    lines = []
    for line in text.splitlines():
        line = _SPACE.sub(" ", html.unescape(_ASS_OVERRIDE.sub("", _TAG.sub("", line)))).strip()
        if line:
            lines.append(line)
    return lines


def clip_subtitles(cues: Iterable[Mapping], start_s: float, end_s: float, max_tokens: int,
                   count_tokens: TokenCounter = whitespace_tokens) -> str:
    """Text of the cues overlapping [start_s, end_s), rolling repeats removed, at most `max_tokens`."""
    lines: list[str] = []
    for cue in sorted(cues, key=lambda c: c["start_s"]):
        if cue["end_s"] <= start_s or cue["start_s"] >= end_s:
            continue
        for line in clean_cue_text(cue["text"]):
            if line not in lines[-2:]:  # a rolling cue repeats the one or two lines before it
                lines.append(line)
    return truncate(" ".join(lines), max_tokens, count_tokens)


def truncate(text: str, max_tokens: int, count_tokens: TokenCounter = whitespace_tokens) -> str:
    """The longest prefix of whole words that fits `max_tokens` (by the teacher's own counter)."""
    if count_tokens(text) <= max_tokens:
        return text
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # binary search: a tokenizer call per word would be quadratic
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def build_prompt(template_with_text: str, template_without_text: str, subtitles: str | None,
                 title: str | None, description: str | None, captions: Mapping[str, str] | None = None) -> str:
    """The with-text prompt when there is any text to show, else the plain one. `captions` (teacher
    name → that teacher's caption of the clip) fill `{captions}` (all of them, in order, `; `-joined)
    and `{caption:<name>}`; a template must name only teachers of `captions` there."""
    captions = captions or {}
    if not (subtitles or title or description or captions):
        return template_without_text
    names = list(captions)
    # `{caption:x}` would parse as field `caption` with format spec `x`: index the captions instead
    template = CAPTION_FIELD.sub(lambda m: f"{{_caption{names.index(m.group(1))}}}", template_with_text)
    return template.format_map({
        "subtitles": _quote_safe(subtitles), "title": _quote_safe(title), "description": _quote_safe(description),
        "captions": _quote_safe("; ".join(captions.values())),
        **{f"_caption{i}": _quote_safe(captions[name]) for i, name in enumerate(names)},
    })


def _quote_safe(text: str | None) -> str:
    # the prompt wraps each field in double quotes; straight ones inside would end it early
    return (text or "").replace('"', "\u201d")

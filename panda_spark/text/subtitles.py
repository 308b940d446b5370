"""WebVTT / SRT parsing into timed cues (pure Python).

Contract:
- ``decode_subtitle_bytes`` accepts UTF-8 (optional BOM) or BOM-marked UTF-16; anything else
  raises :class:`SubtitleEncoding` naming the byte offset.
- ``parse_subtitles`` returns ``(format, cues)``: ``"vtt"`` when the text starts with a
  ``WEBVTT`` header, otherwise ``"srt"``. Cues keep file order and their raw text (markup such
  as ``<i>`` is not stripped). Empty / whitespace-only input returns ``("srt", [])`` (no header,
  so SRT by the detection rule); a WebVTT with no cues returns ``("vtt", [])``.
- Unparseable timing lines, ``end < start``, cue blocks with no timing line, or SRT content
  that yields no cue raise :class:`MalformedSubtitles` naming the line number and the line.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from panda_spark.errors import MalformedSubtitles, SubtitleEncoding

__all__ = [
    "Cue",
    "decode_subtitle_bytes",
    "looks_like_inline_subtitles",
    "parse_subtitle_bytes",
    "parse_subtitles",
]


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


# Hours are optional (WebVTT "MM:SS.mmm") and may have any digit count (dataset uses "0:00:09.080");
# ',' is SRT's decimal separator, '.' is accepted for both formats.
_TS = r"(?:(\d+):)?(\d{2}):(\d{2})[.,](\d{3})"
_TIMING = re.compile(rf"^{_TS}[ \t]+-->[ \t]+{_TS}(?:[ \t]+.*)?$")
_INLINE_ARROW = re.compile(r"\d:\d\d[.,]\d{3}\s*-->")
_VTT_HEADER = re.compile(r"^WEBVTT(?:[ \t].*)?$")
_VTT_SKIP_BLOCK = re.compile(r"^(?:NOTE|STYLE|REGION)(?:[ \t].*)?$")


def looks_like_inline_subtitles(value: str) -> bool:
    """True when ``value`` is subtitle content rather than a path or URI."""
    if "\n" in value or "\r" in value:
        return True
    if value.lstrip("\ufeff \t").startswith("WEBVTT"):
        return True
    return bool(_INLINE_ARROW.search(value))


def decode_subtitle_bytes(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")  # consumes the BOM and picks the byte order from it
        except UnicodeDecodeError as e:
            raise SubtitleEncoding(
                f"subtitles are not valid UTF-16: {e.reason} at byte offset {e.start}"
            ) from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start  # offset into the original bytes, BOM included
        raise SubtitleEncoding(
            f"subtitles are not valid UTF-8: {e.reason} at byte offset {offset} "
            f"(byte 0x{data[offset]:02x})"
        ) from None


def _seconds(h: str | None, m: str, s: str, ms: str, lineno: int, line: str) -> float:
    if int(m) >= 60 or int(s) >= 60:
        raise MalformedSubtitles(f"line {lineno}: timestamp out of range in timing line {line!r}")
    # Integer milliseconds first so 9.080 becomes exactly float(9.08).
    return (int(h or 0) * 3_600_000 + int(m) * 60_000 + int(s) * 1000 + int(ms)) / 1000


def _blocks(lines: list[str], first: int) -> list[list[tuple[int, str]]]:
    """Group non-blank lines into blank-line-separated blocks of (1-based lineno, line)."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for i, line in enumerate(lines[first:], start=first + 1):
        if line.strip():
            current.append((i, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _cue(block: list[tuple[int, str]]) -> Cue:
    # The timing line is first, or second after a cue identifier / SRT index.
    if "-->" in block[0][1]:
        t = 0
    elif len(block) > 1 and "-->" in block[1][1]:
        t = 1
    else:
        lineno, line = block[0]
        raise MalformedSubtitles(f"line {lineno}: cue block has no timing line: {line!r}")
    lineno, line = block[t]
    m = _TIMING.match(line.strip())
    if not m:
        raise MalformedSubtitles(f"line {lineno}: cannot parse timing line {line!r}")
    g = m.groups()
    start = _seconds(*g[:4], lineno, line)
    end = _seconds(*g[4:], lineno, line)
    if end < start:
        raise MalformedSubtitles(f"line {lineno}: cue ends before it starts: {line!r}")
    text = "\n".join(ln.strip() for _, ln in block[t + 1:]).strip()
    return Cue(start, end, text)


def parse_subtitles(text: str) -> tuple[str, list[Cue]]:
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not _VTT_HEADER.match(lines[0].rstrip()):
        cues = [_cue(b) for b in _blocks(lines, 0)]
        if not cues and text.strip():
            raise MalformedSubtitles("line 1: no subtitle cues found")
        return "srt", cues

    blocks = _blocks(lines, 1)
    cues: list[Cue] = []
    # Header text runs to the first blank line; tolerate a cue that follows the header
    # without that blank line by starting a cue block at the first timing line.
    if blocks and blocks[0][0][0] == 2:
        header = blocks.pop(0)
        arrow = next((i for i, (_, ln) in enumerate(header) if "-->" in ln), None)
        if arrow is not None:
            blocks.insert(0, header[arrow:])
    for block in blocks:
        if _VTT_SKIP_BLOCK.match(block[0][1].rstrip()) and "-->" not in block[0][1]:
            continue
        cues.append(_cue(block))
    return "vtt", cues


def parse_subtitle_bytes(data: bytes) -> tuple[str, list[Cue]]:
    return parse_subtitles(decode_subtitle_bytes(data))

"""The published Panda-70M CSV format: write one row per source video, parse one row safely. No Spark.

A row (snap-research/Panda-70M, `dataset_dataloading`): `videoID,url,timestamp,caption,
matching_score,desirable_filtering,shot_boundary_detection`. The list columns hold Python
literals (`str(list)`, as pandas writes them), one entry per clip, clips in time order:

- timestamp: `[['0:01:20.880', '0:01:23.983'], ...]`, `H:MM:SS.mmm` truncated to the millisecond;
- caption: `['A cat ...', "An elephant's trunk."]` (repr: a caption holding `'` gets double quotes);
- matching_score: `[0.451416015625, ...]`;
- desirable_filtering: one label per clip, from the release's desirability filter (README of
  snap-research/Panda-70M, Oct 2024): `desirable`, `0_low_desirable_score`,
  `1_still_foreground_image`, `2_tiny_camera_movement`, `3_screen_in_screen`,
  `4_computer_screen_recording`;
- shot_boundary_detection: per clip a list of `[start, end]` shots, times relative to the clip.
  The release's shots are TransNetV2's: detected shots only, never cut by a time rule.

The released downloader reads the lists with `eval`; here a cell is parsed with `ast.parse` and
accepted only if its syntax tree is nothing but (nested) lists / tuples of string and number
literals of the expected shape, below a size cap: nothing in a cell is ever evaluated. Every
problem raises an :class:`InputError` subclass whose class name goes to the `errors` table.
Files written before the Oct 2024 release lack the last two columns; they are optional, and the
release has no label for "unknown": a row whose clips' labels are not all known has an empty
desirable_filtering cell (read back as the column's absence, like those files).
"""
from __future__ import annotations

import ast
import csv
import io
import math
import re
from dataclasses import dataclass, field

from panda_spark.errors import InputError, MissingField

# How rows loaded from the release are marked (import-panda-csv writes them; split's published
# cut and select read them): the version in their ids, the teacher and scorer of their captions.
IMPORT_VERSION = "panda70m-csv-1"
TEACHER = "panda70m"  # captions.teacher of imported captions: the release's selected caption
SCORER = "panda70m-release"  # their matching score came from the release's fine-tuned UMT selector

COLUMNS = ("videoID", "url", "timestamp", "caption", "matching_score", "desirable_filtering",
           "shot_boundary_detection")
REQUIRED_COLUMNS = COLUMNS[:5]
MAX_CELL_CHARS = 4_000_000  # a source video with thousands of clips stays well below this
_MAX_ID_CHARS = 256
_TIMESTAMP = re.compile(r"(\d{1,6}):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}))?")


class MalformedVideoId(InputError):
    error_class = "MalformedVideoId"


class MalformedList(InputError):
    error_class = "MalformedList"


class FieldTooLong(InputError):
    error_class = "FieldTooLong"


class MalformedTimestamp(InputError):
    error_class = "MalformedTimestamp"


class InvalidTimeRange(InputError):
    error_class = "InvalidTimeRange"


class MisalignedLists(InputError):
    error_class = "MisalignedLists"


class InvalidScore(InputError):
    error_class = "InvalidScore"


class DuplicateClip(InputError):
    error_class = "DuplicateClip"


# ---------------------------------------------------------------- timestamps


def to_micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def format_timestamp(seconds: float) -> str:
    """`H:MM:SS.mmm`, truncated to the millisecond like `str(timedelta)[:-3]` of the release (the
    extra microsecond keeps 9.342 from printing as 9.341 after float error; same as the split's
    timecodes)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidTimeRange(f"time {seconds!r} is not a non-negative number of seconds")
    ms = (to_micros(seconds) + 1) // 1000
    return f"{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def parse_timestamp(text: object) -> int:
    """`H:MM:SS[.ffffff]` → microseconds."""
    match = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise MalformedTimestamp(f"{_short(text)} is not a timestamp of the form H:MM:SS.mmm")
    h, m, s, frac = match.groups()
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1_000_000 + int((frac or "0").ljust(6, "0"))


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a source video as the CSV carries it; shots are absolute (start_s, end_s);
    desirable_filtering None when not known."""
    start_s: float
    end_s: float
    caption: str
    matching_score: float
    desirable_filtering: str | None
    shots: tuple[tuple[float, float], ...] = ()


def build_row(video_id: str, url: str | None, clips: list[ClipRecord]) -> dict[str, str]:
    """The CSV cells of one source video; clips in time order, shots clipped to their clip and
    given relative to its start (as TransNetV2 was run on each clip in the release);
    desirable_filtering empty unless every clip's label is known."""
    clips = sorted(clips, key=lambda c: (c.start_s, c.end_s))
    labels = [c.desirable_filtering for c in clips]
    return {
        "videoID": video_id,
        "url": url or "",
        "timestamp": repr([[format_timestamp(c.start_s), format_timestamp(c.end_s)] for c in clips]),
        "caption": repr([str(c.caption) for c in clips]),
        "matching_score": repr([float(c.matching_score) for c in clips]),
        "desirable_filtering": repr([str(label) for label in labels]) if None not in labels else "",
        "shot_boundary_detection": repr([clip_shots(c) for c in clips]),
    }


def clip_shots(clip: ClipRecord) -> list[list[str]]:
    """The clip's shots cut to the clip, as [start, end] timestamps relative to its start."""
    inside = [(max(a, clip.start_s) - clip.start_s, min(b, clip.end_s) - clip.start_s) for a, b in sorted(clip.shots)]
    return [[format_timestamp(a), format_timestamp(b)] for a, b in inside if b > a]


def detected_shots(shots: list[tuple[float, float, bool | None]]) -> tuple[tuple[float, float], ...]:
    """(start_s, end_s) of detected shots from shots (start_s, end_s, forced): a forced piece (it
    starts at a cut the time rule made, not the detector) is merged into the shot it continues,
    the one ending where it starts. A forced piece whose detected start is not among `shots`
    stays a shot of its own: cut to a clip, it is that shot's part inside the clip."""
    merged: list[list[float]] = []
    for start, end, forced in sorted(shots, key=lambda s: (s[0], s[1])):
        if forced and merged and merged[-1][1] == start:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((a, b) for a, b in merged)


def csv_line(row: dict[str, str]) -> str:
    """One CSV record as pandas' `to_csv` writes it (minimal quoting, `""` inside quotes, `\\n`)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([row[c] for c in COLUMNS])
    return out.getvalue()


def header_line() -> str:
    return ",".join(COLUMNS) + "\n"


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedClip:
    start_us: int
    end_us: int
    caption: str
    matching_score: float
    desirable_filtering: str | None
    shots: tuple[tuple[int, int], ...] | None  # absolute microseconds; None: the column is absent

    @property
    def start_s(self) -> float:
        return self.start_us / 1_000_000

    @property
    def end_s(self) -> float:
        return self.end_us / 1_000_000


@dataclass(frozen=True)
class ParsedVideo:
    video_id: str
    url: str
    clips: list[ParsedClip] = field(default_factory=list)


def parse_row(row: dict[str, object]) -> ParsedVideo:
    """Validate one CSV record (cells as strings, None when empty) into clips in time order."""
    video_id = _text(row, "videoID")
    if len(video_id) > _MAX_ID_CHARS or any(ch.isspace() or not ch.isprintable() for ch in video_id):
        raise MalformedVideoId(f"videoID {_short(video_id)} is not a plain identifier")
    url = _text(row, "url")
    spans = _list(row, "timestamp", depth=2)
    if not spans:
        raise MisalignedLists("timestamp lists no clip")
    times = [_span(span, "timestamp") for span in spans]
    n = len(times)
    captions = _aligned(row, "caption", n, depth=1)
    scores = _aligned(row, "matching_score", n, depth=1)
    labels = _aligned(row, "desirable_filtering", n, depth=1, optional=True)
    shots = _aligned(row, "shot_boundary_detection", n, depth=3, optional=True)
    clips, seen = [], set()
    for i, (start, end) in enumerate(times):
        if (start, end) in seen:
            raise DuplicateClip(f"clip {i} repeats the time range of an earlier clip")
        seen.add((start, end))
        caption = captions[i]
        if not isinstance(caption, str) or not caption.strip():
            raise MalformedList(f"caption {i} is {_short(caption)}, expected a non-empty string")
        score = scores[i]
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InvalidScore(f"matching_score {i} is {_short(score)}, expected a finite number")
        label = None if labels is None else labels[i]
        if labels is not None and (not isinstance(label, str) or not label):
            raise MalformedList(f"desirable_filtering {i} is {_short(label)}, expected a label string")
        spans = None
        if shots is not None:
            if not isinstance(shots[i], list):
                raise MalformedList(f"shot_boundary_detection {i} is not a list of [start, end] pairs")
            spans = tuple(sorted({(start + a, start + b) for a, b in
                                  (_span(s, "shot_boundary_detection") for s in shots[i])}))
        clips.append(ParsedClip(start, end, caption, float(score), label, spans))
    return ParsedVideo(video_id, url, sorted(clips, key=lambda c: (c.start_us, c.end_us)))


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def _text(row: dict, column: str) -> str:
    if _empty(row.get(column)):
        raise MissingField(f"column {column} is empty")
    return str(row[column]).strip()


def _aligned(row: dict, column: str, n: int, depth: int, optional: bool = False) -> list | None:
    if optional and _empty(row.get(column)):
        return None
    values = _list(row, column, depth)
    if len(values) != n:
        raise MisalignedLists(f"{column} has {len(values)} entries for {n} clips")
    return values


def _span(value: object, column: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise MalformedList(f"{column}: {_short(value)} is not a [start, end] pair")
    start, end = parse_timestamp(value[0]), parse_timestamp(value[1])
    if start >= end:
        raise InvalidTimeRange(f"{column}: [{value[0]}, {value[1]}] does not end after it starts")
    return start, end


def _list(row: dict, column: str, depth: int) -> list:
    text = _text(row, column)
    if len(text) > MAX_CELL_CHARS:
        raise FieldTooLong(f"{column} has {len(text)} characters (limit {MAX_CELL_CHARS})")
    return parse_literal_list(text, column, depth)


def parse_literal_list(text: str, column: str = "cell", depth: int = 3) -> list:
    """A Python list literal of strings and numbers nested at most `depth` deep, read from its
    syntax tree without evaluating anything; anything else raises MalformedList."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise MalformedList(f"{column} is not a Python list literal ({type(exc).__name__})") from None
    if not isinstance(tree.body, ast.List):
        raise MalformedList(f"{column} is not a list literal")
    return _literal(tree.body, column, depth)


def _literal(node: ast.AST, column: str, depth: int):
    if isinstance(node, (ast.List, ast.Tuple)):
        if depth == 0:
            raise MalformedList(f"{column} nests lists deeper than expected")
        return [_literal(e, column, depth - 1) for e in node.elts]
    if isinstance(node, ast.Constant) and type(node.value) in (str, int, float):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        return -node.operand.value
    raise MalformedList(f"{column} holds {type(node).__name__} syntax; only string and number literals are allowed")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"

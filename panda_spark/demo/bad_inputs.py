"""Broken inputs, made on the spot from a good video: what ingest must route to `errors`.

Used by the tests (one of each kind) and by the demo (a few, so its errors table has rows).
"""
from __future__ import annotations

from pathlib import Path

import av


def truncated_copy(good_mp4: Path, out: Path) -> Path:
    """The first half of a good MP4: the index (moov) at the end is lost, as in an aborted download."""
    data = good_mp4.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def corrupt_copy(good_mp4: Path, out: Path) -> Path:
    """A good MP4 with its media data overwritten by zeros: the container opens, frames do not read."""
    data = bytearray(good_mp4.read_bytes())
    start = data.find(b"mdat") + 4
    data[start : start + (len(data) - start) // 2] = bytes((len(data) - start) // 2)
    out.write_bytes(bytes(data))
    return out


def zero_frame_video(out: Path) -> Path:
    """A valid fragmented MP4 whose video track holds no frames."""
    with av.open(str(out), "w", options={"movflags": "frag_keyframe+empty_moov"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return out


def text_file(out: Path) -> Path:
    out.write_text("This is a shopping list, not a video.\n" * 20, encoding="utf-8")
    return out


def malformed_vtt(out: Path) -> Path:
    out.write_text("WEBVTT\n\n00:00:01.000 --> later\nA cue whose end time is missing.\n", encoding="utf-8")
    return out


def latin1_vtt(out: Path) -> Path:
    out.write_bytes("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nCaf\xe9 cr\xe8me\n".encode("latin-1"))
    return out

"""Cut clips out of a source video as their own mp4 files (video only, H.264, timestamps from 0).

Each frame keeps its presentation time (less the clip's first frame's), so a variable-frame-rate
clip plays at the source's pace; frames of a rotated source are written upright.

Clips are frame ranges of one source; they are written in one forward decode from the first
clip's start to the last clip's end, each frame encoded into every clip that contains it. This is
a second decode of those ranges, which is why the split stage only does it when
`split.materialize_clips` is on.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import BinaryIO

import av

from panda_spark import storage
from panda_spark.video.decode import FrameClock, open_stream, upright


def write_clips(source: str | BinaryIO, ranges: dict[str, tuple[int, int]], out_paths: dict[str, str],
                crf: int = 20) -> None:
    """Encode each `ranges[clip_id]` = [start, end) frame range into `out_paths[clip_id]`."""
    if not ranges:
        return
    container, frames, info = open_stream(source)
    rate = info.rate.limit_denominator(100000)
    time_base = info.time_base or 1 / rate  # of the clips' timestamps: the source's
    clock = FrameClock(info)
    first, last = min(s for s, _ in ranges.values()), max(e for _, e in ranges.values())
    with tempfile.TemporaryDirectory() as tmp, container:
        writers = {}
        for clip_id in ranges:
            out = av.open(os.path.join(tmp, f"{clip_id}.mp4"), "w")
            encoder = out.add_stream("libx264", rate=rate)
            encoder.width, encoder.height, encoder.pix_fmt = info.width, info.height, "yuv420p"
            encoder.codec_context.time_base = time_base
            encoder.options = {"crf": str(crf), "preset": "veryfast"}
            writers[clip_id] = (out, encoder)
        starts: dict[str, float] = {}  # clip → its first frame's time
        for index, frame in enumerate(frames):
            if index >= last:
                break
            time = clock.push(frame)
            if index < first:
                continue
            if info.rotation:
                frame = av.VideoFrame.from_ndarray(upright(frame.to_ndarray(format="rgb24"), info.rotation),
                                                   format="rgb24")
            for clip_id, (start, end) in ranges.items():
                if start <= index < end:
                    out, encoder = writers[clip_id]
                    offset = time - starts.setdefault(clip_id, time)  # frame periods
                    frame.pts, frame.time_base = round(offset / rate / time_base), time_base
                    out.mux(encoder.encode(frame))
        for clip_id, (out, encoder) in writers.items():
            out.mux(encoder.encode(None))
            out.close()
            _publish(os.path.join(tmp, f"{clip_id}.mp4"), out_paths[clip_id])


def _publish(local: str, target: str) -> None:
    """Move the finished file to the clip store (a local or mounted path, or an fsspec URI)."""
    if storage.is_uri(target):
        fs, path = storage.filesystem(target)
        fs.put_file(local, path)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(local, target)

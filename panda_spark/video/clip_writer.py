"""Cut clips out of a source video as their own mp4 files (video only, H.264, timestamps from 0).

Clips are frame ranges of one source; they are written in one forward decode from the first
clip's start to the last clip's end, each frame encoded into every clip that contains it. This is
a second decode of those ranges, which is why the split stage only does it when
`split.materialize_clips` is on.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from typing import BinaryIO

import av

from panda_spark import storage
from panda_spark.video.decode import iter_frames, open_stream


def write_clips(source: str | BinaryIO, ranges: dict[str, tuple[int, int]], out_paths: dict[str, str],
                crf: int = 20) -> None:
    """Encode each `ranges[clip_id]` = [start, end) frame range into `out_paths[clip_id]`."""
    if not ranges:
        return
    container, stream, info = open_stream(source)
    rate = Fraction(stream.base_rate or stream.average_rate).limit_denominator(100000)
    first, last = min(s for s, _ in ranges.values()), max(e for _, e in ranges.values())
    with tempfile.TemporaryDirectory() as tmp, container:
        writers = {}
        for clip_id in ranges:
            out = av.open(os.path.join(tmp, f"{clip_id}.mp4"), "w")
            encoder = out.add_stream("libx264", rate=rate)
            encoder.width, encoder.height, encoder.pix_fmt = info.width, info.height, "yuv420p"
            encoder.options = {"crf": str(crf), "preset": "veryfast"}
            writers[clip_id] = (out, encoder, [0])
        for index, frame in enumerate(iter_frames(container, stream)):
            if index >= last:
                break
            if index < first:
                continue
            for clip_id, (start, end) in ranges.items():
                if start <= index < end:
                    out, encoder, count = writers[clip_id]
                    frame.pts, frame.time_base = count[0], 1 / rate
                    out.mux(encoder.encode(frame))
                    count[0] += 1
        for clip_id, (out, encoder, _) in writers.items():
            out.mux(encoder.encode(None))
            out.close()
            _publish(os.path.join(tmp, f"{clip_id}.mp4"), out_paths[clip_id])


def _publish(local: str, target: str) -> None:
    """Move the finished file to the clip store (a local or mounted path, or an fsspec URI)."""
    if storage.is_uri(target):
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        fs.put_file(local, path)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(local, target)

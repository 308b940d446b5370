"""Ingest probe throughput: ours against counting frames by decoding, on the same files, in one run.

Ours (`panda_spark.video.probe.probe_video`) demuxes every video packet and decodes one frame: the
frame count is exact and a file that ends early is caught. The reference is what `ffprobe
-count_frames` does: decode every frame. Prints files/s of each and their ratio.

    .venv/bin/python bench/ingest_bench.py [FILE_OR_DIR ...]   # default: ../shared/data/panda70m_samples/clips
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import av

from panda_spark.video.probe import probe_video

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panda70m_samples" / "clips"


def decode_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def probe_count(path: Path) -> int:
    with open(path, "rb") as fh:
        return probe_video(fh, os.path.getsize(path)).frame_count


def timed(fn, files) -> tuple[float, list[int]]:
    start = time.perf_counter()
    counts = [fn(f) for f in files]
    return time.perf_counter() - start, counts


def main(argv: list[str]) -> int:
    targets = [Path(a) for a in argv] or [DEFAULT]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    if not files:
        print(f"no .mp4 files under {targets}", file=sys.stderr)
        return 1
    probe_count(files[0])  # warm the codec libraries
    ours_s, ours = timed(probe_count, files)
    ref_s, ref = timed(decode_count, files)
    frames = sum(ref)
    print(f"files: {len(files)}, frames: {frames}")
    print(f"ours (demux + first frame): {len(files) / ours_s:8.1f} files/s  ({ours_s:.2f} s)")
    print(f"full decode (reference)  : {len(files) / ref_s:8.1f} files/s  ({ref_s:.2f} s)")
    print(f"ratio ours/reference     : {ref_s / ours_s:8.1f}x   identical frame counts: {ours == ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

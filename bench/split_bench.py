"""Stage-1 shot detection: ours against PySceneDetect on the same files, in one run.

For each file: frames/s of scenedetect's ContentDetector(threshold, min_scene_len=15) with the flash
filter and downscale our defaults reproduce (`detector_agreement.reference`: SUPPRESS, PySceneDetect
0.6's `width // 256` bilinear downscale), of our detector (decode + analysis-size score + cut filter: the scan with
nothing kept), of our whole single pass (also keeping the shots' embedding frames and the clip
frame samples), and of decoding alone at our analysis size (the ceiling); the ratio ours/theirs and
whether the cut frames are identical.

    .venv/bin/python bench/split_bench.py [--threshold 25] [FILE ...]   # default: ../shared/data/videos/*.mp4
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from panda_spark.split.scan import ScanParams, analysis_resizer, scan_video
from panda_spark.video.decode import open_stream

DEFAULT = sorted((Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos").glob("*.mp4"))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def decode_only(path: Path, params: ScanParams) -> int:
    container, frames, info = open_stream(str(path))
    resize = analysis_resizer(params, info.width, info.height)
    with container:
        return sum(1 for frame in frames if resize(frame) is not None)


def main(argv: list[str]) -> int:
    from detector_agreement import reference  # this folder: run as a script

    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=25.0)
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT)
    args = parser.parse_args(argv)
    params = ScanParams(threshold=args.threshold)
    detector_only = ScanParams(threshold=args.threshold, keep_frames=False)
    print(f"{'file':24} {'frames':>7} {'scenedetect':>12} {'ours:detect':>12} {'ours:scan':>10} "
          f"{'decode@' + params.analysis_size:>11} {'ratio':>6}  same cuts")
    for path in args.files:
        ref_s, (theirs, _) = timed(lambda: reference(path, args.threshold, 15, params.flash_filter))
        det_s, det = timed(lambda: scan_video(str(path), detector_only))
        scan_s, _ = timed(lambda: scan_video(str(path), params))
        dec_s, frames = timed(lambda: decode_only(path, params))
        ours = [s.start_frame for s in det.shots if s.start_frame and not s.forced]
        fps = lambda seconds: f"{frames / seconds:.0f} f/s"  # noqa: E731
        print(f"{path.name:24} {frames:7d} {fps(ref_s):>12} {fps(det_s):>12} {fps(scan_s):>10} {fps(dec_s):>11} "
              f"{ref_s / det_s:6.2f}  {ours == theirs} {ours}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

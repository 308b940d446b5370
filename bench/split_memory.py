"""Split memory against video length: peak RSS of splitting synthetic videos of 1 and 10 minutes.

Each video is split in a fresh Python process through `split_batch`, the code the Spark task runs
(colour-layout embedder, default parameters), and the process reports its own peak RSS; the same
is measured for `split_scan` over `scan_video`, the plain split that holds every sampled frame
until the video ends. Streaming, the 10-minute peak should stay within 1.3× the 1-minute one
(the output rows — nine JPEGs per clip — still grow with the video).

The videos (640×360, 25 fps, a cut every 2.5–6 s) are made once with PyAV and cached in the temp dir.

    .venv/bin/python bench/split_memory.py [--minutes 1 10] [--width 640 --height 360]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

SHOT_SECONDS = (3.0, 4.5, 2.5, 6.0, 3.5, 5.0)  # cycled: the longest stays under the 7 s forced cut
MODES = ("streaming", "hold_all")


def write_synthetic_video(path: Path, seconds: float, width: int = 640, height: int = 360, fps: int = 25,
                          seed: int = 0, shot_seconds: tuple[float, ...] = SHOT_SECONDS) -> Path:
    """An h264 mp4 of `seconds` seconds made of shots `shot_seconds` long (cycled), each a smooth
    random colour field of its own hue (137.5° from the last) that slides sideways by one frame
    width and brightens: the detector cuts between shots and nowhere else, the colour-layout
    embedder keeps consecutive shots apart (so a shot under 7 s is one clip, a longer one is cut
    every 5 s and stitched back) and no shot is still. Same arguments, same file; written to a
    temporary name first, so a cached file is always whole."""
    rng = np.random.default_rng(seed)
    part = path.with_name(path.name + ".part")
    total = round(seconds * fps)
    with av.open(str(part), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        frame_index, shot, hue = 0, 0, 0.0
        while frame_index < total:
            length = min(round(shot_seconds[shot % len(shot_seconds)] * fps), total - frame_index)
            # HSV field twice the frame's width, so the frame can slide across it
            coarse = rng.uniform(0, 1, (6, 12, 3)).astype(np.float32)
            field = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)
            h = (hue + 20 * field[..., 0]) % 180
            s = 100 + 120 * field[..., 1]
            v = 60 + 150 * field[..., 2]
            for t in range(length):
                x = t * width // length
                gain = 0.8 + 0.35 * t / length
                hsv = np.stack([h[:, x:x + width], s[:, x:x + width], np.minimum(v[:, x:x + width] * gain, 255)], -1)
                rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            frame_index += length
            shot += 1
            hue = (hue + 137.5 / 2) % 180  # OpenCV hue is degrees / 2
        container.mux(stream.encode())
    os.replace(part, path)
    return path


def cached_video(minutes: float, width: int, height: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "panda_split_memory"
    folder.mkdir(exist_ok=True)
    path = folder / f"synthetic_{minutes:g}min_{width}x{height}.mp4"
    return path if path.exists() else write_synthetic_video(path, minutes * 60, width, height)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _child(mode: str, path: str) -> dict:
    """Split one video in this process; what it reports to `measure`."""
    import pandas as pd

    from panda_spark.split.core import SplitParams, split_scan
    from panda_spark.split.scan import scan_video
    from panda_spark.split.stage import EmbedderSpec, load_embedder, split_batch

    spec, params = EmbedderSpec("color-layout"), SplitParams()
    embedder = load_embedder(spec)
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    if mode == "streaming":
        batch = pd.DataFrame({"video_id": ["v"], "content_hash": ["h"], "path": [path]})
        out = pd.concat(split_batch(iter([batch]), spec, params))
        row = out.iloc[0]
        if row["status"] != "split":
            raise RuntimeError(f"{row['error_class']}: {row['message']}")
        clips, frames = len(row["clips"]), len(row["clip_frames"])
    else:
        result = split_scan("v", scan_video(path, params.scan), embedder, params)
        out = pd.DataFrame([{"shots": result.shots, "clips": result.clips, "clip_frames": result.clip_frames}])
        clips, frames = len(result.clips), len(result.clip_frames)
    return {"seconds": round(time.perf_counter() - start, 1), "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1), "clips": clips, "clip_frames": frames}


def measure(minutes_list=(1, 10), width: int = 640, height: int = 360, modes=MODES) -> dict:
    """{mode: {minutes: report}} for each mode of `MODES` and each video length, every split in a
    fresh subprocess; a report has `peak_rss_mb` (the process's peak), `baseline_rss_mb` (after the
    imports, before the split), `seconds`, `clips` and `clip_frames`."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    results: dict = {mode: {} for mode in modes}
    for minutes in minutes_list:
        path = cached_video(minutes, width, height)
        for mode in modes:
            done = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], env=env, check=True,
                                  capture_output=True, text=True)
            results[mode][minutes] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    results = measure(tuple(args.minutes), args.width, args.height)
    print(f"{'mode':10} {'minutes':>7} {'clips':>6} {'frames':>6} {'split s':>8} {'base MB':>8} {'peak MB':>8}")
    for mode, by_length in results.items():
        for minutes, r in by_length.items():
            print(f"{mode:10} {minutes:7g} {r['clips']:6d} {r['clip_frames']:6d} {r['seconds']:8.1f} "
                  f"{r['baseline_rss_mb']:8.1f} {r['peak_rss_mb']:8.1f}")
        shortest, longest = min(by_length), max(by_length)
        ratio = by_length[longest]["peak_rss_mb"] / by_length[shortest]["peak_rss_mb"]
        print(f"{mode:10} peak RSS {longest:g} min / {shortest:g} min: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Cut agreement of our shot detector with the `scenedetect` package, per flash filter × analysis size.

Reference: the installed scenedetect's `ContentDetector(threshold, min_scene_len,
filter_mode=SUPPRESS|MERGE)` on its OpenCV backend, with the downscale factor PySceneDetect 0.6
picks (`width // 256`, bilinear; `SceneManager.downscale`), i.e. the detector that built Panda-70M
for "suppress". Ours: `split.flash_filter` × `split.analysis_size` ("auto": scenedetect's frame size,
"fixed": 128×72 resized in the decoder). Each video is scanned once per analysis size and the cut
filter runs in both modes over the same scores (as the scan's `CutFilter` would).

Per cell: precision / recall / F1 of our cut frames against the reference's, pooled over all
videos, matching each cut at most once, exactly (tol 0) and within ±1 frame; also mean |Δscore|
per frame against scenedetect's `content_val`, and our scan's seconds.

    .venv/bin/python bench/detector_agreement.py [--threshold 25] [--limit N] [FILE ...]
    # default: ../shared/data/videos/*.mp4 and ../shared/data/panda70m_samples/clips/*.mp4
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from panda_spark.split.detector import FLASH_FILTERS, detect_cuts, scenedetect_size
from panda_spark.split.scan import ScanParams, scan_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = ("auto", "fixed")


def default_files() -> list[Path]:
    return sorted((SHARED / "videos").glob("*.mp4")) + sorted((SHARED / "panda70m_samples" / "clips").glob("*.mp4"))


def reference(path: Path, threshold: float, min_scene_len: int, mode: str) -> tuple[list[int], np.ndarray]:
    """scenedetect's cut frames and per-frame content scores at PySceneDetect 0.6's downscale."""
    from scenedetect import ContentDetector, SceneManager, StatsManager, open_video
    from scenedetect.detector import FlashFilter

    video = open_video(str(path))
    width, _ = video.frame_size
    manager = SceneManager(StatsManager())
    manager.auto_downscale = False
    manager.downscale = max(1, width // 256)
    assert (round(video.frame_size[0] / manager.downscale), round(video.frame_size[1] / manager.downscale)) \
        == scenedetect_size(*video.frame_size)
    manager.add_detector(ContentDetector(threshold, min_scene_len, filter_mode=FlashFilter.Mode[mode.upper()]))
    manager.detect_scenes(video)
    scenes = manager.get_scene_list(start_in_scene=True)
    stats, base = manager.stats_manager, video.base_timecode
    scores = np.array([(stats.get_metrics(base + i, ["content_val"])[0] or 0.0)
                       if stats.metrics_exist(base + i, ["content_val"]) else 0.0
                       for i in range(video.frame_number)])
    return [start.frame_num for start, _ in scenes[1:]], scores


def matched(ours: list[int], theirs: list[int], tolerance: int) -> int:
    """Cuts of `ours` paired one-to-one with a cut of `theirs` at most `tolerance` frames away."""
    free, hits = sorted(theirs), 0
    for cut in sorted(ours):
        near = [t for t in free if abs(t - cut) <= tolerance]
        if near:
            free.remove(min(near, key=lambda t: abs(t - cut)))
            hits += 1
    return hits


def prf(hits: int, n_ours: int, n_theirs: int) -> tuple[float, float, float]:
    precision = hits / n_ours if n_ours else 1.0
    recall = hits / n_theirs if n_theirs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=25.0)
    parser.add_argument("--min-scene-len", type=int, default=15)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or default_files()
    files = files[:args.limit] if args.limit else files
    if not files:
        print(f"no videos (looked under {SHARED})", file=sys.stderr)
        return 2

    # (mode, size) → [hits0, hits1, n_ours, n_theirs]; size → [|Δscore| sum, frames, seconds]
    counts = {(m, s): [0, 0, 0, 0] for m in FLASH_FILTERS for s in SIZES}
    score_stats = {s: [0.0, 0, 0.0] for s in SIZES}
    frames = 0
    for path in files:
        refs = {m: reference(path, args.threshold, args.min_scene_len, m) for m in FLASH_FILTERS}
        ref_scores = refs["suppress"][1]
        frames += len(ref_scores)
        line = [path.name]
        for size in SIZES:
            params = ScanParams(threshold=args.threshold, min_scene_len=args.min_scene_len, analysis_size=size,
                                keep_frames=False)
            start = time.perf_counter()
            scores = scan_video(str(path), params).scores
            score_stats[size][2] += time.perf_counter() - start
            n = min(len(scores), len(ref_scores))
            score_stats[size][0] += float(np.abs(scores[:n] - ref_scores[:n]).sum())
            score_stats[size][1] += n
            for mode in FLASH_FILTERS:
                ours, theirs = detect_cuts(scores, args.threshold, args.min_scene_len, mode), refs[mode][0]
                c = counts[(mode, size)]
                c[0] += matched(ours, theirs, 0)
                c[1] += matched(ours, theirs, 1)
                c[2] += len(ours)
                c[3] += len(theirs)
                if ours != theirs:
                    line.append(f"{mode}/{size}: ours-only {sorted(set(ours) - set(theirs))} "
                                f"theirs-only {sorted(set(theirs) - set(ours))}")
        print(" | ".join(line) if len(line) > 1 else f"{path.name}: all cells identical", file=sys.stderr)

    print(f"\n{len(files)} videos, {frames} frames, threshold {args.threshold:g}, min_scene_len {args.min_scene_len}; "
          "reference: scenedetect ContentDetector at PySceneDetect 0.6's downscale\n")
    print("| flash_filter | analysis_size | cuts ours/ref | P tol0 | R tol0 | F1 tol0 | P ±1 | R ±1 | F1 ±1 "
          "| mean abs Δscore | scan s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (mode, size), (h0, h1, n_ours, n_theirs) in counts.items():
        p0, r0, f0 = prf(h0, n_ours, n_theirs)
        p1, r1, f1 = prf(h1, n_ours, n_theirs)
        delta_sum, n, seconds = score_stats[size]
        print(f"| {mode} | {size} | {n_ours}/{n_theirs} | {p0:.3f} | {r0:.3f} | {f0:.3f} | {p1:.3f} | {r1:.3f} "
              f"| {f1:.3f} | {delta_sum / max(n, 1):.3f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

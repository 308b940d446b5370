"""Calibrate `ColorLayoutEmbedder` against Panda-70M's stitching thresholds on real clips.

Decodes every sample clip (decord, squashed to 224×224 with INTER_AREA as the splitter does) and
prints, for the embedder as configured in `panda_spark.split.embedders`:

- the mean / std of each raw feature block (where the centre and scale constants come from);
- *within-shot* distances: frames at 5 % and 95 % of 1.5 s windows inside a clip, skipping
  windows with a content score >= 27 (a hard cut, PySceneDetect's default threshold);
- *shot* distances: 5 % vs 95 % of each shot (detected cuts, then Panda's 7 s / 5 s forced cuts),
  the pair the transition rule (> 1.0) looks at;
- *clip* distances: 5 % vs 95 % of each whole clip; these clips passed Panda's still filter, so
  few should be < 0.15;
- *junction* distances: last frame of clip A vs first frame of clip B for every ordered pair of
  different clips (all from different source videos), and for consecutive clips of different
  categories in manifest order (the pairs the test checks);
- frame pairs with gaussian noise (sigma = 2 levels) added to one side;
- frames/s of `embed` on one core.

    .venv/bin/python bench/embedder_calibration.py [--search N] [DATA_DIR]
    # DATA_DIR default: ../shared/data/panda70m_samples (manifest.csv + clips/)

`--search N` also tries N random block weightings and prints the best trade-offs (how WEIGHTS
was chosen; the module's weights are a rounded, smooth pick from that frontier).

With `--embedder ID` (a transformers image model: hub id or local directory; or color-layout) it
instead maps Panda-70M's ImageBind thresholds onto that embedder (`panda_spark.split.calibration`:
the same shot / boundary / clip / junction frame pairs embedded by the reference and the target,
thresholds matched by rank) and prints the per-rule decision rates of both and the
`split.embedder_thresholds` entry to put in the conf:

    .venv/bin/python bench/embedder_calibration.py --embedder openai/clip-vit-large-patch14 \
        [--reference laion/CLIP-ViT-H-14-laion2B-s32B-b79K] [--clips N] [--device cuda] [DATA_DIR]

Both models load through `from_pretrained` (the hub, with HF_HUB_OFFLINE unset, or local copies).
"""
from __future__ import annotations

import argparse
import csv
import time
from fractions import Fraction
from pathlib import Path

import cv2
import decord
import numpy as np

from panda_spark.split import calibration
from panda_spark.split.detector import content_scores, detect_cuts, force_cuts, shots_from_cuts, to_hsv
from panda_spark.split.embedders import WEIGHTS, ColorLayoutEmbedder, combine, raw_features
from panda_spark.split.stage import EmbedderSpec, load_embedder

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panda70m_samples"
WINDOW_S, WINDOW_STEP_S, CUT_SCORE = 1.5, 0.5, 27.0


def load(data_dir: Path):
    """→ frames (M, 224, 224, 3) of every frame any pair needs, and the pairs as index arrays."""
    rows = list(csv.DictReader(open(data_dir / "manifest.csv")))
    frames: list[np.ndarray] = []
    pairs: dict[str, list[tuple[int, int]]] = {"within": [], "shot": [], "clip": [], "junction": [], "consecutive": []}
    ends = []  # (index of first frame, index of last frame) per clip

    def keep(frame: np.ndarray) -> int:
        frames.append(frame)
        return len(frames) - 1

    for row in rows:
        vr = decord.VideoReader(str(data_dir / "clips" / row["file"]))
        n, fps = len(vr), float(Fraction(row["fps"]))
        video = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA) for f in vr.get_batch(range(n)).asnumpy()])
        scores = content_scores(to_hsv(video))
        cache: dict[int, int] = {}

        def idx(i: int) -> int:
            if i not in cache:
                cache[i] = keep(video[i])
            return cache[i]

        w, step = int(round(WINDOW_S * fps)), max(1, int(WINDOW_STEP_S * fps))
        for s in range(0, n - w + 1, step):
            if scores[s + 1:s + w].max() < CUT_SCORE:
                pairs["within"].append((idx(s + int(0.05 * w)), idx(s + int(0.95 * w))))
        for shot in force_cuts(shots_from_cuts(detect_cuts(scores), n, scores), fps):
            length = shot.end_frame - shot.start_frame
            pairs["shot"].append((idx(shot.start_frame + int(0.05 * length)), idx(shot.start_frame + int(0.95 * length))))
        pairs["clip"].append((idx(int(0.05 * n)), idx(int(0.95 * n))))
        ends.append((idx(0), idx(n - 1)))
    for a in range(len(rows)):
        for b in range(len(rows)):
            if a != b and rows[a]["file"].split(".")[0] != rows[b]["file"].split(".")[0]:
                pairs["junction"].append((ends[a][1], ends[b][0]))
    for a in range(len(rows) - 1):
        if rows[a]["category"] != rows[a + 1]["category"]:
            pairs["consecutive"].append((ends[a][1], ends[a + 1][0]))
    return np.stack(frames), {k: np.array(v) for k, v in pairs.items()}, ends


def distances(emb: np.ndarray, pairs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.linalg.norm(emb[p[:, 0]] - emb[p[:, 1]], axis=1) for k, p in pairs.items()}


def summary(d: dict[str, np.ndarray], noise: np.ndarray) -> dict[str, float]:
    return {
        "within<=0.6": (d["within"] <= 0.6).mean(), "within>1.0": (d["within"] > 1.0).mean(),
        "within<0.15": (d["within"] < 0.15).mean(), "shot>1.0": (d["shot"] > 1.0).mean(),
        "clip<0.15": (d["clip"] < 0.15).mean(), "junction>0.6": (d["junction"] > 0.6).mean(),
        "consecutive_min": d["consecutive"].min(), "noise_max": noise.max(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--search", type=int, default=0, metavar="N", help="try N random block weightings")
    parser.add_argument("--embedder", metavar="ID", help="map ImageBind's thresholds onto this embedder")
    parser.add_argument("--reference", metavar="ID", default=calibration.REFERENCE_EMBEDDER,
                        help="the embedder the thresholds are in (default: ImageBind's ViT-H-14 image tower)")
    parser.add_argument("--clips", type=int, metavar="N", help="use the first N clips of the manifest")
    parser.add_argument("--device", default="auto", help="device of the transformers embedders (default: auto)")
    args = parser.parse_args()
    if args.embedder:
        calibrate(args)
        return
    cv2.setNumThreads(1)  # one core, as the splitter runs one task per core

    t0 = time.perf_counter()
    frames, pairs, ends = load(args.data_dir)
    print(f"decoded {len(ends)} clips, kept {len(frames)} frames in {time.perf_counter() - t0:.1f} s")
    edge_frames = frames[np.ravel(ends)]
    noisy = np.clip(edge_frames + np.random.default_rng(0).normal(0, 2, edge_frames.shape), 0, 255).astype(np.uint8)

    print("\nraw feature blocks (mean / std over the kept frames; the module's centre / scale):")
    raw = raw_features(frames)
    for key, block in raw.items():
        if key.startswith("lab"):
            b3 = block.reshape(len(block), -1, 3)
            print(f"  {key:7s} per L,a,b  mean {np.round(b3.mean(axis=(0, 1)), 2)}  std {np.round(b3.std(axis=(0, 1)), 2)}")
        else:
            print(f"  {key:7s} all bins   mean {block.mean():.3f}  std {block.std():.3f}")

    embedder = ColorLayoutEmbedder()
    emb = embedder.embed(frames)
    d = distances(emb, pairs)
    noise = np.linalg.norm(embedder.embed(edge_frames) - embedder.embed(noisy), axis=1)
    pct = (1, 5, 25, 50, 75, 95, 99)
    print(f"\n{embedder.name}: D={emb.shape[1]}  percentiles {pct}")
    for key, v in [*d.items(), ("noise", noise)]:
        print(f"  {key:12s} n={len(v):5d}  {np.round(np.percentile(v, pct), 3)}")
    print("  consecutive cross-category junctions:", np.round(d["consecutive"], 3))
    for key, value in summary(d, noise).items():
        print(f"  {key:16s} {value:.3f}")

    batch = np.concatenate([frames] * (2000 // len(frames) + 1))[:2000]
    embedder.embed(batch[:64])
    best = min(_timed(embedder.embed, batch) for _ in range(3))
    print(f"\nembed: {len(batch) / best:.0f} frames/s on one core ({len(batch)} frames of 224x224)")

    if args.search:
        search(raw, pairs, edge_frames, noisy, args.search)


def calibrate(args) -> None:
    t0 = time.perf_counter()
    pairs = calibration.sample_pairs(calibration.manifest_clips(args.data_dir, args.clips))
    print(f"scanned {pairs.clips} clips in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {len(v)}" for k, v in pairs.pairs.items()) + " pairs")
    distances = {}
    for role, name in (("reference", args.reference), ("target", args.embedder)):
        t0 = time.perf_counter()
        distances[role] = calibration.pair_distances(load_embedder(EmbedderSpec(name, device=args.device)), pairs)
        print(f"{role} {name}: embedded {len(pairs.frames)} frames in {time.perf_counter() - t0:.1f} s")
    pct = (5, 25, 50, 75, 95)
    print(f"\nL2 distance percentiles {pct}:")
    for kind in calibration.KINDS:
        for role in distances:
            print(f"  {kind:9s} {role:9s} {np.round(np.percentile(distances[role][kind], pct), 3)}")
    result = calibration.map_thresholds(distances["reference"], distances["target"])
    print("\nthreshold             reference  share  target")
    for key, value in calibration.IMAGEBIND_THRESHOLDS.items():
        flag = "  (outside the measured range: clamped)" if key in result.clamped else ""
        print(f"  {key:20s} {value:8.3f}  {result.shares[key]:5.3f}  {result.thresholds[key]:6.3f}{flag}")
    ref_rates = calibration.rule_rates(distances["reference"], calibration.IMAGEBIND_THRESHOLDS)
    tgt_rates = calibration.rule_rates(distances["target"], result.thresholds)
    print("\ndecision rates (reference at its thresholds, target at the mapped ones):")
    for rule in calibration.RULES:
        print(f"  {rule:30s} {ref_rates[rule]:.3f}  {tgt_rates[rule]:.3f}")
    print("\nconf entry:\n" + calibration.conf_snippet(args.embedder, result))


def _timed(fn, x) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def search(raw, pairs, edge_frames, noisy, n: int) -> None:
    """Random block weightings; keep those with junction>0.6 >= 97 %, rank by the within/shot/clip fit."""
    rng = np.random.default_rng(1)
    r_clean, r_noisy = raw_features(edge_frames), raw_features(noisy)
    found = []
    for _ in range(n):
        weights = {k: float(rng.choice([0.0, 0.5, 1.0, 1.5, 2.0])) for k in WEIGHTS}
        if not any(weights.values()):
            continue
        s = summary(distances(combine(raw, weights), pairs),
                    np.linalg.norm(combine(r_clean, weights) - combine(r_noisy, weights), axis=1))
        if s["junction>0.6"] >= 0.97:
            fit = s["within<=0.6"] - 2 * s["within>1.0"] - s["within<0.15"] - 2 * s["shot>1.0"] - s["clip<0.15"]
            found.append((fit, s, weights))
    found.sort(key=lambda t: -t[0])
    print(f"\nsearch: {len(found)} of {n} weightings keep junction>0.6 >= 97 %; best:")
    for fit, s, weights in found[:10]:
        print(f"  fit {fit:.3f}", {k: round(float(v), 3) for k, v in s.items()}, {k: v for k, v in weights.items() if v})


if __name__ == "__main__":
    main()

"""Stitching thresholds per embedder: Panda-70M's ImageBind thresholds mapped onto another one. No Spark.

Panda-70M's stitching thresholds (transition 1.0, stitch 0.6, still 0.15, redundancy 0.3: the
"panda70m" preset of :mod:`panda_spark.split.stitching`) are L2 distances between L2-normalised
ImageBind vision embeddings. Another embedder spreads the same frame pairs over another range
(a CLIP model, a colour descriptor), so the same numbers make other decisions.

Method — match the decision rates on one set of real frame pairs:

1. Pairs from real Panda-70M clips (clips that passed Panda's splitting and filters, so each is
   one event), taken as the split stage takes them (:func:`panda_spark.split.scan.scan_video`:
   the same shots, the same 5 % / 95 % frames squashed to 224²), of the kinds the rules look at:
   - ``shot``: a shot's 5 % vs 95 % frame — the transition rule (dropped when > transition);
   - ``boundary``: a shot's 95 % frame vs the next shot's 5 % frame in the same clip — stitch
     joins these (≤ stitch), since the clip is one event;
   - ``clip``: the first shot's 5 % vs the last shot's 95 % frame — the still rule (dropped when
     < still; these clips passed it);
   - ``junction``: a clip's last embedded frame (its last shot's 95 % frame) vs the first one of
     a clip from another source video — a true event boundary, which stitch must not join.
2. The reference embedder (the one the thresholds are in: ImageBind's vision tower is OpenCLIP
   ViT-H-14, so `REFERENCE_EMBEDDER` stands in for it) and the target embed the same frames.
3. Each reference threshold t becomes the target distance at the same rank: the share q of pairs
   the reference puts at or below t (each kind weighted equally, so the many junction pairs do not
   outweigh the rest) is read back through the target's distribution. Both distributions are taken
   as piecewise-linear mid-distribution functions, so a target whose distances are a monotone
   rescaling of the reference's gets exactly the rescaled thresholds, and the thresholds keep
   their order. A reference threshold outside the measured range is clamped to it and flagged:
   the pairs do not tell where it falls (add clips).
4. Diagnostics (:func:`rule_rates`): each rule's decision rate on its own kind under both
   embedders, e.g. the share of shots dropped as transitions; matching is only as good as the two
   embedders' agreement on which pairs are close.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from panda_spark.config import STITCH_THRESHOLD_KEYS
from panda_spark.split.embedders import ImageEmbedder
from panda_spark.split.scan import ScanParams, scan_video
from panda_spark.split.stitching import PRESETS, shot_embedding_frames

IMAGEBIND_THRESHOLDS: dict[str, float] = {key: getattr(PRESETS["panda70m"], key) for key in STITCH_THRESHOLD_KEYS}
REFERENCE_EMBEDDER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # ImageBind's (frozen) image tower
KINDS = ("shot", "boundary", "clip", "junction")

# rule → (pair kind, threshold, the decision the rate counts: distance > / <= / < threshold)
RULES: dict[str, tuple[str, str, str]] = {
    "shots dropped as transitions": ("shot", "transition_threshold", ">"),
    "in-clip boundaries joined": ("boundary", "stitch_threshold", "<="),
    "junctions joined": ("junction", "stitch_threshold", "<="),
    "clips dropped as still": ("clip", "still_threshold", "<"),
}


@dataclass
class PairSet:
    frames: np.ndarray  # (M, S, S, 3) uint8 RGB: every frame some pair uses
    pairs: dict[str, np.ndarray]  # kind → (n, 2) indices into `frames`
    clips: int = 0


@dataclass
class Calibration:
    thresholds: dict[str, float]  # the target's, one per reference threshold
    shares: dict[str, float]  # share of the (kind-weighted) pairs the reference puts at or below it
    clamped: list[str] = field(default_factory=list)  # reference thresholds outside the measured range


def manifest_clips(data_dir: str | Path, limit: int | None = None) -> list[tuple[str, Path]]:
    """(source video id, path) of the clips in `data_dir/manifest.csv` (Panda-70M sample layout:
    file `<youtube id>.<clip no>.mp4` under clips/), the first `limit` of them."""
    data_dir = Path(data_dir)
    with open(data_dir / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    return [(row["file"].rsplit(".", 2)[0], data_dir / "clips" / row["file"]) for row in rows]


def sample_pairs(clips: Sequence[tuple[str, str | Path]], params: ScanParams = ScanParams()) -> PairSet:
    """The frame pairs of every kind (module doc) from each clip's split scan; junctions pair
    clips of different source videos, every ordered pair of them."""
    frames: list[np.ndarray] = []
    pairs: dict[str, list[tuple[int, int]]] = {kind: [] for kind in KINDS}
    ends: list[tuple[str, int, int]] = []  # source, first frame of the clip, last frame
    for source, path in clips:
        scan = scan_video(str(path), params)
        ends_of_shots = []
        for shot in scan.shots:
            first, last = shot_embedding_frames(shot.start_frame, shot.end_frame)
            if first in scan.embed_frames and last in scan.embed_frames:
                frames += [scan.embed_frames[first], scan.embed_frames[last]]
                ends_of_shots.append((len(frames) - 2, len(frames) - 1))
        if not ends_of_shots:
            continue
        pairs["shot"] += ends_of_shots
        pairs["boundary"] += [(a[1], b[0]) for a, b in zip(ends_of_shots, ends_of_shots[1:])]
        pairs["clip"].append((ends_of_shots[0][0], ends_of_shots[-1][1]))
        ends.append((source, ends_of_shots[0][0], ends_of_shots[-1][1]))
    pairs["junction"] = [(a[2], b[1]) for a in ends for b in ends if a[0] != b[0]]
    size = params.embed_size
    return PairSet(np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8),
                   {k: np.array(v, np.int64).reshape(-1, 2) for k, v in pairs.items()}, len(ends))


def pair_distances(embedder: ImageEmbedder, pair_set: PairSet, batch: int = 256) -> dict[str, np.ndarray]:
    """kind → L2 distance of each pair's two embeddings (each frame embedded once)."""
    emb = np.concatenate([embedder.embed(pair_set.frames[i:i + batch]) for i in range(0, len(pair_set.frames), batch)])
    return {k: np.linalg.norm(emb[p[:, 0]] - emb[p[:, 1]], axis=1) for k, p in pair_set.pairs.items()}


def _mid_cdf(distances: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, mid-distribution at each): the weight below a value plus half its own,
    each non-empty kind weighing the same in total."""
    kinds = [k for k in KINDS if len(distances.get(k, ()))]
    if not kinds:
        raise ValueError("no pairs to calibrate on")
    values = np.concatenate([distances[k] for k in kinds]).astype(np.float64)
    weights = np.concatenate([np.full(len(distances[k]), 1.0 / len(distances[k])) for k in kinds])
    order = np.argsort(values, kind="stable")
    unique, starts = np.unique(values[order], return_index=True)
    mass = np.add.reduceat(weights[order], starts) / weights.sum()
    return unique, np.cumsum(mass) - mass / 2


def map_thresholds(reference: dict[str, np.ndarray], target: dict[str, np.ndarray],
                   thresholds: dict[str, float] | None = None) -> Calibration:
    """Each reference threshold → the target distance of the same (kind-weighted) rank, from the
    two embedders' distances of the same pairs (module doc, step 3)."""
    thresholds = IMAGEBIND_THRESHOLDS if thresholds is None else thresholds
    ref_values, ref_mid = _mid_cdf(reference)
    tgt_values, tgt_mid = _mid_cdf(target)
    out = Calibration({}, {})
    for key, value in thresholds.items():
        share = float(np.interp(value, ref_values, ref_mid))
        out.shares[key] = share
        out.thresholds[key] = float(np.interp(share, tgt_mid, tgt_values))
        if not ref_values[0] <= value <= ref_values[-1]:
            out.clamped.append(key)
    return out


def rule_rates(distances: dict[str, np.ndarray], thresholds: dict[str, float]) -> dict[str, float]:
    """rule → share of its kind's pairs it decides so (`RULES`); NaN for a kind without pairs."""
    decide = {">": np.greater, "<=": np.less_equal, "<": np.less}
    return {rule: float(decide[op](distances[kind], thresholds[key]).mean()) if len(distances[kind]) else float("nan")
            for rule, (kind, key, op) in RULES.items()}


def conf_snippet(embedder_id: str, calibration: Calibration) -> str:
    """The `split.embedder_thresholds` entry for the conf (YAML), values rounded to 3 decimals."""
    values = ", ".join(f"{k}: {round(v, 3)}" for k, v in calibration.thresholds.items())
    return f"split:\n  embedder_thresholds:\n    {json.dumps(embedder_id)}: {{{values}}}\n"

"""Split core: one source video → shots, clips and per-clip frames. No Spark.

Decodes the video once (:func:`panda_spark.split.scan.scan_video`), embeds each shot's 5% and 95%
frames with the given embedder, stitches shots into events with the Panda-70M rules of the chosen
preset, and picks each clip's frames from the frames sampled during the same pass.
Output rows match the `shots`, `clips` and `clip_frames` tables (without audit columns).
"""
from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import BinaryIO

import numpy as np

from panda_spark.runs import stable_id
from panda_spark.split.embedders import ImageEmbedder
from panda_spark.split.scan import ScanParams, VideoScan, scan_video
from panda_spark.split.stitching import StitchParams, shot_embedding_frames, stitch_params, stitch_shots

SPLITTER_VERSION = "split-1"


@dataclass(frozen=True)
class SplitParams:
    preset: str = "released_code"
    scan: ScanParams = field(default_factory=ScanParams)
    stitch: StitchParams = field(default_factory=lambda: stitch_params("released_code"))
    uniform_frames: int = 8  # frames per clip for video teachers
    keyframe_range: tuple[float, float] = (0.3, 0.7)  # one more frame for image teachers
    materialize_clips: bool = False  # written by the stage; in the hash so turning it on re-splits

    def hash(self, embedder_name: str) -> str:
        """Identifies everything that decides the output: a video split with the same hash is done."""
        payload = json.dumps([SPLITTER_VERSION, embedder_name, asdict(self)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class SplitResult:
    shots: list[dict]
    clips: list[dict]
    clip_frames: list[dict]


def timecode(frame: int, fps: float) -> str:
    """`H:MM:SS.mmm`, truncated to the millisecond, as the published Panda-70M timestamps."""
    return str(timedelta(seconds=frame / fps, microseconds=1))[:-3]


def split_video(video_id: str, source: str | BinaryIO, embedder: ImageEmbedder, params: SplitParams) -> SplitResult:
    scan = scan_video(source, params.scan)
    return split_scan(video_id, scan, embedder, params)


def split_scan(video_id: str, scan: VideoScan, embedder: ImageEmbedder, params: SplitParams) -> SplitResult:
    fps, p_hash = scan.fps, params.hash(embedder.name)
    shots = scan.shots
    shot_ids = [stable_id(video_id, "shot", s.start_frame, s.end_frame, SPLITTER_VERSION) for s in shots]
    shot_rows = [
        {
            "shot_id": shot_ids[i], "video_id": video_id, "shot_idx": i,
            "start_frame": s.start_frame, "end_frame": s.end_frame,
            "start_s": s.start_frame / fps, "end_s": s.end_frame / fps,
            "forced": s.forced, "cut_score": s.cut_score,
            "params_hash": p_hash, "splitter_version": SPLITTER_VERSION,
        }
        for i, s in enumerate(shots)
    ]
    if not shots:
        return SplitResult(shot_rows, [], [])

    wanted = [shot_embedding_frames(s.start_frame, s.end_frame) for s in shots]
    readable = np.array([[i in scan.embed_frames for i in pair] for pair in wanted])
    blank = np.zeros((params.scan.embed_size, params.scan.embed_size, 3), np.uint8)
    frames = np.stack([scan.embed_frames.get(i, blank) for pair in wanted for i in pair])
    feats = embedder.embed(frames)
    events = stitch_shots(
        [(s.start_frame, s.end_frame) for s in shots], feats[0::2], feats[1::2], readable, fps, params.stitch
    )

    sample_index = sorted(scan.samples)
    clip_rows, frame_rows = [], []
    for clip_idx, event in enumerate(events):
        clip_id = stable_id(video_id, event.start_frame, event.end_frame, SPLITTER_VERSION)
        clip_rows.append({
            "clip_id": clip_id, "video_id": video_id, "clip_idx": clip_idx,
            "start_frame": event.start_frame, "end_frame": event.end_frame,
            "start_s": event.start_frame / fps, "end_s": event.end_frame / fps,
            "start_timecode": timecode(event.start_frame, fps), "end_timecode": timecode(event.end_frame, fps),
            "shot_ids": [shot_ids[i] for i in event.shot_indices],
            "embedding": event.embedding.astype(np.float32).tolist(),
            "preset": params.preset, "params_hash": p_hash, "splitter_version": SPLITTER_VERSION,
            "clip_path": None,
        })
        for frame_idx, (role, frame_number) in enumerate(_clip_frame_numbers(clip_id, event, sample_index, params)):
            frame_rows.append({
                "clip_id": clip_id, "frame_idx": frame_idx, "video_id": video_id, "frame_number": frame_number,
                "role": role,
                "width": scan.sample_size[0], "height": scan.sample_size[1], "jpeg": scan.samples[frame_number],
            })
    return SplitResult(shot_rows, clip_rows, frame_rows)


def _clip_frame_numbers(clip_id: str, event, sample_index: list[int], params: SplitParams) -> list[tuple[str, int]]:
    """`uniform_frames` evenly spaced over the clip, then one keyframe at a position in
    `keyframe_range` drawn from the clip id (reproducible), each the nearest sampled frame."""
    start, length = event.start_frame, event.end_frame - event.start_frame
    positions = [("uniform", start + length * (k + 0.5) / params.uniform_frames) for k in range(params.uniform_frames)]
    lo, hi = params.keyframe_range
    draw = int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    positions.append(("keyframe", start + length * (lo + (hi - lo) * draw)))
    return [(role, _nearest(sample_index, pos, event.start_frame, event.end_frame)) for role, pos in positions]


def _nearest(sorted_frames: list[int], position: float, start: int, end: int) -> int:
    """The sampled frame nearest `position`, preferring ones inside [start, end)."""
    i = bisect.bisect_left(sorted_frames, position)
    candidates = [f for f in sorted_frames[max(0, i - 1): i + 1]]
    inside = [f for f in candidates if start <= f < end] or candidates
    return min(inside, key=lambda f: abs(f - position))

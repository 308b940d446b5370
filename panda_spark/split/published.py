"""Published-timestamp cutting (split.mode published): a downloaded Panda-70M source video and its
imported clips → each clip's frame range and frames. No Spark.

The clips are the release's (`import-panda-csv` stored their times); instead of detecting shots,
one decode pass finds each clip's frames on the video's presentation timestamps and samples its
teacher frames exactly as a detected clip's are sampled (every 1/`sample_fps` s, short side
`sample_short_side`, then `uniform_frames` evenly spaced over the clip plus one keyframe drawn from
its id, each the sample nearest in time). A clip starts at the first frame shown at or after its
published start and ends before the first frame at or after its published end; the published
times were truncated to the millisecond, so a frame up to 1 ms before a time counts as at it.
A clip whose range holds no frame of this file (the download is shorter than the published video)
keeps no range and no frames, and is named in `out_of_range`.

Samples are held only near clips not yet picked: a clip's frames are picked once the decode is a
sample period past its end, and the samples before the next clip are dropped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import BinaryIO, Sequence

import cv2

from panda_spark.split.core import SplitParams, clip_frame_numbers
from panda_spark.video.decode import FrameClock, FrameResizer, fit_size, open_stream

PUBLISHED_VERSION = "published-1"  # in the parameter hash: bump when the frames picked change
_TRUNCATION_S = 1e-3  # published times are truncated to the millisecond


@dataclass(frozen=True)
class PublishedClip:
    clip_id: str
    start_s: float
    end_s: float


@dataclass
class PublishedCut:
    ranges: dict[str, tuple[int, int]]  # clip_id → (start_frame, end_frame), end exclusive
    clip_frames: list[dict]  # `clip_frames` rows (no audit columns)
    out_of_range: list[str] = field(default_factory=list)  # clip_ids with no frame in this file
    duration_s: float = 0.0  # the end of the file's last frame
    peak_samples: int = 0  # most sample JPEGs held at once


def published_hash(params: SplitParams) -> str:
    """Identifies what decides a published cut's rows: the sampling, the frames per clip and whether
    clip files are written (not the detection or stitching settings, which it does not use)."""
    scan = params.scan
    payload = json.dumps([PUBLISHED_VERSION, scan.sample_fps, scan.sample_short_side, scan.jpeg_quality,
                          params.uniform_frames, params.keyframe_range, params.materialize_clips], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class _Pending:
    clip: PublishedClip
    start: int | None = None
    end: int | None = None


def cut_published(video_id: str, source: str | BinaryIO, clips: Sequence[PublishedClip],
                  params: SplitParams) -> PublishedCut:
    """The clips' frame ranges and frames from one decode pass (see the module doc)."""
    scan = params.scan
    container, frames, info = open_stream(source)
    fps, clock = info.fps, FrameClock(info)
    sample_size = fit_size(info.width, info.height, scan.sample_short_side)
    resize = FrameResizer(*sample_size)
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, scan.jpeg_quality]
    sample_every = max(1, round(fps / scan.sample_fps))  # nominal periods, as the detecting scan samples
    margin_s = sample_every / fps  # a sample this close outside a clip may be its nearest
    waiting = [_Pending(c) for c in sorted(clips, key=lambda c: (c.start_s, c.end_s, c.clip_id))]
    samples: dict[int, tuple[float, bytes]] = {}  # frame index → (time in periods, JPEG)
    cut = PublishedCut({}, [])
    sampled = -1

    def pick(done: list[_Pending]) -> None:
        index = sorted(samples)
        times = [samples[n][0] for n in index]
        for item in done:
            if item.start is None or item.end is None or item.end <= item.start or not index:
                cut.out_of_range.append(item.clip.clip_id)
                continue
            cut.ranges[item.clip.clip_id] = (item.start, item.end)
            numbers = clip_frame_numbers(item.clip.clip_id, item.start, item.end, index, times, params, clock)
            cut.clip_frames += [
                {"clip_id": item.clip.clip_id, "frame_idx": k, "video_id": video_id, "frame_number": n,
                 "role": role, "width": sample_size[0], "height": sample_size[1], "jpeg": samples[n][1]}
                for k, (role, n) in enumerate(numbers)]

    def release() -> None:
        if not waiting:
            samples.clear()
            return
        first = min(item.clip.start_s for item in waiting) - margin_s
        for n in [n for n in samples if samples[n][0] / fps < first]:
            del samples[n]

    with container:
        for index, frame in enumerate(frames):
            time = clock.push(frame)
            seconds = time / fps
            for item in waiting:
                if item.start is None and seconds > item.clip.start_s - _TRUNCATION_S:
                    item.start = index
                if item.end is None and seconds > item.clip.end_s - _TRUNCATION_S:
                    item.end = index
            if time // sample_every > sampled:
                sampled = int(time // sample_every)
                if any(item.clip.start_s - margin_s <= seconds <= item.clip.end_s + margin_s for item in waiting):
                    samples[index] = (time, cv2.imencode(".jpg", resize(frame)[:, :, ::-1], jpeg_params)[1].tobytes())
                    cut.peak_samples = max(cut.peak_samples, len(samples))
            done = [item for item in waiting if item.end is not None and seconds > item.clip.end_s + margin_s]
            if done:
                waiting = [item for item in waiting if item not in done]
                pick(done)
                release()
        clock.close()
    frame_count = len(clock) - 1 if len(clock) else 0
    for item in waiting:  # clips reaching the end of the file end with it
        if item.start is not None and item.end is None:
            item.end = frame_count
    pick(waiting)
    cut.duration_s = clock[frame_count] / fps if frame_count else 0.0
    return cut


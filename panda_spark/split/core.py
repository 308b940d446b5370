"""Split core: one source video → shots, clips and per-clip frames. No Spark.

Decodes the video once (:class:`panda_spark.split.scan.ScanStream`), embeds each shot's 5% and 95%
frames with the given embedder, stitches shots into events with the Panda-70M rules of the chosen
preset, and picks each clip's frames from the frames sampled during the same pass.
Output rows match the `shots`, `clips` and `clip_frames` tables (without audit columns). Bounds are
frame indices; every time (start_s, end_s, timecodes, lengths, where a clip's frames are picked) is
the frames' presentation time (the scan's clock), so variable-frame-rate video gets its real times.
A video that yields no clip says why (`SplitResult.no_clips`).

Memory does not grow with the video's length: `split_video` embeds and stitches shots as the scan
makes them final and picks a clip's frames as soon as its event can grow no more, so it holds only
the samples a clip can still use — those from the first shot not stitched yet on, and those of the
open event up to `max_len_s` into it (its clip is cut there). `split_scan` is the same split over a
finished `scan_video`, every sample at hand; both return the same rows.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import BinaryIO, Callable, Sequence

import numpy as np

from panda_spark.runs import stable_id
from panda_spark.split.detector import Shot
from panda_spark.split.embedders import ColorLayoutEmbedder, ImageEmbedder
from panda_spark.split.scan import Sample, ScanParams, ScanStream, ShotFrames, VideoScan
from panda_spark.split.stitching import (Event, StitchedEvent, StitchParams, remove_transitions, shot_embedding_frames,
                                         stitch, stitch_params, stitch_shots, verify_events)
from panda_spark.video.decode import FrameClock

SPLITTER_VERSION = "split-1"  # part of every shot and clip id: bump only when the frame ranges change
# What changed in the rows without changing any frame range (times from presentation timestamps,
# NoClips rows): part of the params hash, so videos split before are split once more, same ids.
OUTPUT_REVISION = "pts-times"


@dataclass(frozen=True)
class SplitParams:
    preset: str = "panda70m"
    scan: ScanParams = field(default_factory=ScanParams)
    stitch: StitchParams = field(default_factory=lambda: stitch_params("panda70m"))
    uniform_frames: int = 8  # frames per clip for video teachers
    keyframe_range: tuple[float, float] = (0.3, 0.7)  # one more frame for image teachers
    materialize_clips: bool = False  # written by the stage; in the hash so turning it on re-splits

    def hash(self, embedder_name: str) -> str:
        """Identifies everything that decides the output: a video split with the same hash is done."""
        payload = json.dumps([SPLITTER_VERSION, OUTPUT_REVISION, embedder_name, asdict(self)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class SplitResult:
    shots: list[dict]
    clips: list[dict]
    clip_frames: list[dict]
    peak_samples: int = 0  # most sample JPEGs held at once while splitting
    no_clips: str | None = None  # why the video yielded no clip (None when it yielded some)


def timecode(frame: float, fps: float) -> str:
    """`H:MM:SS.mmm`, truncated to the millisecond, as the published Panda-70M timestamps, of a time
    in frame periods (a frame's `FrameClock` time; its index at a constant rate)."""
    return str(timedelta(seconds=frame / fps, microseconds=1))[:-3]


def split_video(video_id: str, source: str | BinaryIO, embedder: ImageEmbedder, params: SplitParams) -> SplitResult:
    """The video's rows from one streaming decode pass (see the module doc): the rows of `split_scan`."""
    stream = ScanStream(source, params.scan)
    split = _StreamingSplit(video_id, embedder, params, stream.fps, stream.clock)
    for item in stream:
        if isinstance(item, Sample):
            split.add_sample(item)
        else:
            split.add_shot(item)
    split.finish()
    events, drops = [], Counter()
    if split.shots:
        events = stitch_shots([(s.start_frame, s.end_frame) for s in split.shots], np.stack(split.feats[0::2]),
                              np.stack(split.feats[1::2]), np.array(split.readable), stream.fps, params.stitch,
                              stream.clock, drops)
    return _result(video_id, stream.fps, stream.clock, split.shots, events, drops, embedder, params,
                   stream.sample_size, lambda clip_id, event: split.picked.pop((event.start_frame, event.end_frame)),
                   split.peak_samples)


def split_scan(video_id: str, scan: VideoScan, embedder: ImageEmbedder, params: SplitParams) -> SplitResult:
    """The rows from a finished `scan_video`: every shot's frames embedded in one call, every sample
    at hand. The plain form of `split_video`, which must return the same rows (tests, benchmarks)."""
    shots, events, drops = scan.shots, [], Counter()
    if shots:
        wanted = [shot_embedding_frames(s.start_frame, s.end_frame) for s in shots]
        readable = np.array([[i in scan.embed_frames for i in pair] for pair in wanted])
        blank = np.zeros((params.scan.embed_size, params.scan.embed_size, 3), np.uint8)
        frames = np.stack([scan.embed_frames.get(i, blank) for pair in wanted for i in pair])
        feats = embedder.embed(frames)
        events = stitch_shots([(s.start_frame, s.end_frame) for s in shots], feats[0::2], feats[1::2], readable,
                              scan.fps, params.stitch, scan.clock, drops)
    sample_index = sorted(scan.samples)
    sample_times = [scan.clock[n] for n in sample_index]

    def clip_frames(clip_id: str, event: Event) -> list[tuple[str, int, bytes]]:
        return [(role, n, scan.samples[n])
                for role, n in clip_frame_numbers(clip_id, event.start_frame, event.end_frame, sample_index,
                                                  sample_times, params, scan.clock)]

    return _result(video_id, scan.fps, scan.clock, shots, events, drops, embedder, params, scan.sample_size,
                   clip_frames, len(scan.samples))


def _result(video_id: str, fps: float, clock: Sequence[float], shots: list[Shot], events: list[Event],
            drops: Counter, embedder: ImageEmbedder, params: SplitParams, sample_size: tuple[int, int],
            clip_frames: Callable[[str, Event], list[tuple[str, int, bytes]]], peak_samples: int) -> SplitResult:
    """The table rows; `clip_frames(clip_id, event)` gives a clip's (role, frame number, JPEG)s;
    `drops` the shots `stitch_shots` dropped, by reason."""
    p_hash = params.hash(embedder.name)
    shot_ids = [stable_id(video_id, "shot", s.start_frame, s.end_frame, SPLITTER_VERSION) for s in shots]
    shot_rows = [
        {
            "shot_id": shot_ids[i], "video_id": video_id, "shot_idx": i,
            "start_frame": s.start_frame, "end_frame": s.end_frame,
            "start_s": clock[s.start_frame] / fps, "end_s": clock[s.end_frame] / fps,
            "forced": s.forced, "cut_score": s.cut_score,
            "params_hash": p_hash, "splitter_version": SPLITTER_VERSION,
        }
        for i, s in enumerate(shots)
    ]
    clip_rows, frame_rows = [], []
    for clip_idx, event in enumerate(events):
        clip_id = _clip_id(video_id, event)
        clip_rows.append({
            "clip_id": clip_id, "video_id": video_id, "clip_idx": clip_idx,
            "start_frame": event.start_frame, "end_frame": event.end_frame,
            "start_s": clock[event.start_frame] / fps, "end_s": clock[event.end_frame] / fps,
            "start_timecode": timecode(clock[event.start_frame], fps),
            "end_timecode": timecode(clock[event.end_frame], fps),
            "shot_ids": [shot_ids[i] for i in event.shot_indices],
            "embedding": event.embedding.astype(np.float32).tolist(),
            "preset": params.preset, "params_hash": p_hash, "splitter_version": SPLITTER_VERSION,
            "clip_path": None,
        })
        for frame_idx, (role, frame_number, jpeg) in enumerate(clip_frames(clip_id, event)):
            frame_rows.append({
                "clip_id": clip_id, "frame_idx": frame_idx, "video_id": video_id, "frame_number": frame_number,
                "role": role, "width": sample_size[0], "height": sample_size[1], "jpeg": jpeg,
            })
    no_clips = None if clip_rows else _no_clips_reason(len(shots), drops, params.stitch)
    return SplitResult(shot_rows, clip_rows, frame_rows, peak_samples, no_clips)


def _no_clips_reason(shots: int, drops: Counter, stitch: StitchParams) -> str:
    """The `NoClips` message: the shots, and how many each stitching rule dropped (alone or with the
    event they were stitched into)."""
    reason = (f"no clips from {shots} shot{'' if shots == 1 else 's'}: {drops['transition']} transitions, "
              f"{drops['short']} shorter than min_len {stitch.min_len_s} s, {drops['still']} still, "
              f"{drops['redundant']} redundant")
    if drops["empty"]:
        reason += f", {drops['empty']} trimmed away"
    return reason


def _clip_id(video_id: str, event: Event) -> str:
    return stable_id(video_id, event.start_frame, event.end_frame, SPLITTER_VERSION)


def _embed_chunk(embedder: ImageEmbedder) -> int:
    """Frames per `embed` call while streaming. The colour-layout embedder computes each row from its
    frame alone, so it embeds shot by shot; a model's rows may depend on the batch they ran in (kernels
    are chosen by batch shape), so it gets the batches one call over the whole video gives it."""
    if isinstance(embedder, ColorLayoutEmbedder):
        return 2
    return getattr(embedder, "batch_size", 64)


class _StreamingSplit:
    """`split_video` between scan items. Shots are embedded `_embed_chunk` frames at a time and
    stitched as they come; an event that can grow no more gets its clip's frames picked, the clip cut
    and trimmed as `verify_events` does with the event alone (whether the clip is kept can hinge on
    the events before it: `stitch_shots` over all shots decides that at the end; frames picked for a
    clip it drops are never used). Samples no clip can use any more are dropped."""

    def __init__(self, video_id: str, embedder: ImageEmbedder, params: SplitParams, fps: float, clock: FrameClock):
        self.video_id, self.embedder, self.params, self.fps, self.clock = video_id, embedder, params, fps, clock
        self.chunk = _embed_chunk(embedder)
        self.blank = np.zeros((params.scan.embed_size, params.scan.embed_size, 3), np.uint8)  # a frame not kept
        self.max_len = int(params.stitch.max_len_s * fps)  # an event's clip lies in its first max_len periods
        self.shots: list[Shot] = []
        self.readable: list[tuple[bool, bool]] = []
        self.feats: list[np.ndarray] = []  # float32 embeddings: shot i's 5% frame at 2i, its 95% frame at 2i + 1
        self.unembedded: list[np.ndarray] = []  # frames of the shots after those
        self.stitched = 0  # shots through `remove_transitions` and `stitch`
        self.open: StitchedEvent | None = None  # the last event, while a later shot may still extend it
        self.waiting: deque[Event] = deque()  # clips whose frames may lie past the latest sample
        self.picked: dict[tuple[int, int], list[tuple[str, int, bytes]]] = {}  # clip (start, end) → its frames
        self.samples: dict[int, bytes] = {}  # the samples held, in frame order
        self.peak_samples = 0

    def add_sample(self, sample: Sample) -> None:
        self.samples[sample.index] = sample.jpeg
        self.peak_samples = max(self.peak_samples, len(self.samples))
        if self._pick(scan_done=False):
            self._release()

    def add_shot(self, item: ShotFrames) -> None:
        self.shots.append(item.shot)
        self.readable.append((item.first is not None, item.last is not None))
        self.unembedded += [self.blank if frame is None else frame for frame in (item.first, item.last)]
        if len(self.unembedded) >= self.chunk:
            while len(self.unembedded) >= self.chunk:
                self._embed(self.chunk)
            self._stitch(scan_done=False)

    def finish(self) -> None:
        """The scan ended: embed and stitch the remaining shots, close the last event, pick every clip."""
        if self.unembedded:
            self._embed(len(self.unembedded))
        self._stitch(scan_done=True)
        self._pick(scan_done=True)

    def _embed(self, count: int) -> None:
        self.feats.extend(np.asarray(self.embedder.embed(np.stack(self.unembedded[:count])), np.float32))
        del self.unembedded[:count]

    def _stitch(self, scan_done: bool) -> None:
        """Stitch the shots embedded since the last call onto the open event; queue the clips of the
        events that can grow no more."""
        embedded = len(self.feats) // 2
        kept = []
        if embedded > self.stitched:
            new = range(self.stitched, embedded)
            kept = [self.stitched + i for i in remove_transitions(
                [(self.shots[i].start_frame, self.shots[i].end_frame) for i in new],
                np.stack([self.feats[2 * i] for i in new]), np.stack([self.feats[2 * i + 1] for i in new]),
                np.array([self.readable[i] for i in new]), self.params.stitch.transition_threshold)]
        self.stitched = embedded
        window = ([self.open.shot_indices[-1]] if self.open else []) + kept
        events: list[StitchedEvent] = []
        if window:
            events = stitch([(self.shots[i].start_frame, self.shots[i].end_frame) for i in window],
                            np.stack([self.feats[2 * i] for i in window]),
                            np.stack([self.feats[2 * i + 1] for i in window]), self.params.stitch.stitch_threshold)
            for event in events:
                event.shot_indices = [window[j] for j in event.shot_indices]
            if self.open:
                # stitching started over at the open event's last shot, which ends where the open
                # event ends and with its last frame: the first event continues the open one
                head, events[0] = events[0], self.open
                self.open.end = head.end
                self.open.shot_indices += head.shot_indices[1:]
                self.open.frame_feats += head.frame_feats[2:]
        # an event grows only by the shot that starts where it ends: the last one is done once a
        # later shot was dropped as a transition, or the video ended
        still_open = events and not scan_done and events[-1].shot_indices[-1] == embedded - 1
        self.open = events.pop() if still_open else None
        p = self.params.stitch
        for event in events:
            self.waiting.extend(clip for clip in verify_events([event], self.fps, p.min_len_s, p.max_len_s,
                                                               p.redundancy_threshold, p.trim_fraction,
                                                               p.still_threshold, self.clock)
                                if clip.end_frame > clip.start_frame)  # stitch_shots drops empty ones too
        self._pick(scan_done)
        self._release()

    def _pick(self, scan_done: bool) -> bool:
        """Pick the frames of the waiting clips whose nearest samples are all decoded (a sample at or
        past the clip's end is held, or the scan ended); whether any were picked."""
        latest = next(reversed(self.samples), -1)
        picked = False
        while self.waiting and (scan_done or self.waiting[0].end_frame <= latest):
            clip = self.waiting.popleft()
            index = list(self.samples)
            numbers = clip_frame_numbers(_clip_id(self.video_id, clip), clip.start_frame, clip.end_frame, index,
                                         [self.clock[n] for n in index], self.params, self.clock)
            self.picked[(clip.start_frame, clip.end_frame)] = [(role, n, self.samples[n]) for role, n in numbers]
            picked = True
        return picked

    def _release(self) -> None:
        """Drop the samples no clip can use any more. A clip's frames are the samples nearest points
        inside it, so each span that may still hold a clip — a waiting clip, the open event's first
        `max_len` periods, everything from the first shot not stitched yet — needs the samples in it
        and the nearest one on either side."""
        shots = self.shots
        unstitched = shots[self.stitched].start_frame if self.stitched < len(shots) else (
            shots[-1].end_frame if shots else 0)
        spans = [(clip.start_frame, clip.end_frame) for clip in self.waiting] + [(unstitched, math.inf)]
        if self.open:  # its clip ends on the last frame within max_len: once decoded, a known frame
            decoded = len(self.clock)
            past = bisect.bisect_right(self.clock, self.clock[self.open.start] + self.max_len, self.open.start, decoded)
            spans.append((self.open.start, past - 1 if past < decoded else math.inf))
        index = list(self.samples)
        keep: set[int] = set()
        for start, end in spans:
            lo, hi = bisect.bisect_left(index, start), bisect.bisect_left(index, end)
            keep.update(index[max(0, lo - 1):hi + 1])
        for i in index:
            if i not in keep:
                del self.samples[i]


def clip_frame_numbers(clip_id: str, start_frame: int, end_frame: int, sample_index: list[int],
                       sample_times: list[float], params: SplitParams, clock: Sequence[float]) -> list[tuple[str, int]]:
    """The teacher frames (role, frame number) of the clip of frames [start_frame, end_frame):
    `uniform_frames` evenly spaced over the clip's time, then one keyframe at a position in
    `keyframe_range` drawn from the clip id (reproducible), each the sampled frame nearest in time."""
    start = clock[start_frame]
    length = clock[end_frame] - start
    positions = [("uniform", start + length * (k + 0.5) / params.uniform_frames) for k in range(params.uniform_frames)]
    lo, hi = params.keyframe_range
    draw = int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    positions.append(("keyframe", start + length * (lo + (hi - lo) * draw)))
    return [(role, _nearest(sample_index, sample_times, pos, start_frame, end_frame))
            for role, pos in positions]


def _nearest(sorted_frames: list[int], times: list[float], position: float, start: int, end: int) -> int:
    """The sampled frame (with these `times`) nearest the time `position`, preferring ones inside
    frames [start, end)."""
    i = bisect.bisect_left(times, position)
    candidates = list(zip(sorted_frames[max(0, i - 1): i + 1], times[max(0, i - 1): i + 1]))
    inside = [c for c in candidates if start <= c[0] < end] or candidates
    return min(inside, key=lambda c: abs(c[1] - position))[0]

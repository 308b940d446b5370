"""Deterministic synthetic "long video" sources for ``make demo`` and the tests.

Three small h264 MP4s (plus WebVTT/SRT subtitles) whose ground truth is known exactly:
hard cuts, a cross-fade, a frozen stretch and a long continuous take. Every scene has its
own hue/saturation/brightness, so a content detector (mean HSV frame delta, threshold 27)
fires at each hard cut, while frames inside a scene change smoothly (slowly moving shapes
over a smooth gradient with mild sinusoidal texture).

Rendering is vectorised numpy; all randomness comes from ``numpy.random.default_rng(seed)``
and x264 runs single-threaded with a bit-exact muxer, so the same seed gives byte-identical
files.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["SyntheticVideo", "describe_demo_sources", "render_demo_sources", "write_manifest"]

_AUDIO_RATE = 48000
_AUDIO_FRAME = 1024  # samples per AAC frame


@dataclass(frozen=True)
class SyntheticVideo:
    video_id: str
    path: Path  # the .mp4
    title: str
    description: str
    subtitles_path: Path | None  # .vtt (or .srt for one video)
    category: str
    fps: int
    frame_count: int
    width: int
    height: int
    has_audio: bool
    hard_cuts: tuple[int, ...]  # first frame of each new scene after a hard cut
    crossfades: tuple[tuple[int, int], ...]  # (first, last) blended frame of each cross-fade
    stills: tuple[tuple[int, int], ...]  # (first, last) frame of each frozen stretch


# --------------------------------------------------------------------------- scene specs


@dataclass(frozen=True)
class _Scene:
    start: int  # first frame where the scene is (at least partly) visible
    end: int  # last frame (inclusive)
    hue: float  # degrees, kept inside [25, 335] so OpenCV-style H never wraps
    sat: float  # 0..1
    val: float  # 0..1
    caption: tuple[str, ...]  # one or two subtitle lines
    still: bool = False
    pan: int = 0  # background pan in px/frame (continuous take)


@dataclass(frozen=True)
class _Spec:
    video_id: str
    title: str
    description: str
    category: str
    fps: int
    frame_count: int
    width: int
    height: int
    has_audio: bool
    subtitle_ext: str
    scenes: tuple[_Scene, ...]
    crossfades: tuple[tuple[int, int], ...] = ()  # (first, last) blend frames between scenes


def _specs() -> list[_Spec]:
    city = _Spec(
        video_id="demo_city",
        title="Evening walk through the old town",
        description="A handheld-style city walk: trams at dusk, a night street, the park, "
        "a quiet square and the harbour.",
        category="Travel",
        fps=25,
        frame_count=900,  # 36 s
        width=320,
        height=180,
        has_audio=True,
        subtitle_ext=".vtt",
        scenes=(
            _Scene(0, 199, 30, 0.85, 0.85, ("A red tram crosses a bridge at dusk.",
                                             "Warm light glows on the river.")),
            _Scene(200, 399, 225, 0.75, 0.35, ("A quiet street at night under blue lamps.",)),
            # cross-fade 375..399 from the night street into the park
            _Scene(375, 549, 110, 0.60, 0.75, ("Joggers pass through a green park.",)),
            _Scene(550, 699, 300, 0.35, 0.95, ("A pink poster on a wall, seen without motion.",),
                   still=True),
            _Scene(700, 899, 175, 0.90, 0.45, ("Boats rock gently in the teal harbour.",
                                               "The walk ends by the water.")),
        ),
        crossfades=((375, 399),),
    )
    kitchen = _Spec(
        video_id="demo_kitchen",
        title="Quick tomato pasta in one pan",
        description="A home cook prepares pasta: chopping, simmering the sauce in one long "
        "take, and plating.",
        category="Cooking",
        fps=30,
        frame_count=840,  # 28 s
        width=320,
        height=180,
        has_audio=False,
        subtitle_ext=".vtt",
        scenes=(
            _Scene(0, 149, 50, 0.70, 0.90, ("Onions are chopped on a yellow board.",)),
            _Scene(150, 269, 265, 0.65, 0.40, ("Spices are poured into a dark purple bowl.",)),
            _Scene(270, 689, 140, 0.45, 0.80, ("The sauce simmers while the camera slowly pans.",
                                               "A wooden spoon stirs the pan.")),
            _Scene(690, 839, 25, 0.80, 0.50, ("The pasta is plated on a brown table.",)),
        ),
    )
    dash = _Spec(
        video_id="-demo_dash",
        title="Rainbows explained, in three minutes (short cut)",
        description='A three-part explainer: "How rainbows form", with chalkboard '
        "diagrams, a paper sketch, and sky footage.",
        category="Education",
        fps=24,
        frame_count=480,  # 20 s
        width=256,
        height=144,
        has_audio=False,
        subtitle_ext=".srt",
        scenes=(
            _Scene(0, 167, 150, 0.60, 0.35, ("A teacher draws a prism on a green chalkboard.",)),
            _Scene(168, 335, 55, 0.30, 0.95, ("Light bends through a raindrop sketched on paper.",)),
            _Scene(336, 479, 205, 0.70, 0.80, ("A rainbow appears in a blue sky.",)),
        ),
    )
    return [city, kitchen, dash]


# --------------------------------------------------------------------------- rendering


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """h in degrees, s and v in 0..1 (broadcastable) -> float RGB in 0..255, last axis 3."""
    h, s, v = np.broadcast_arrays(np.asarray(h, np.float64) % 360.0, s, v)
    c = v * s
    hp = h / 60.0
    x = c * (1.0 - np.abs(hp % 2.0 - 1.0))
    z = np.zeros_like(c)
    sector = np.floor(hp).astype(np.int64) % 6
    choices_r = [c, x, z, z, x, c]
    choices_g = [x, c, c, x, z, z]
    choices_b = [z, z, x, c, c, x]
    r = np.choose(sector, choices_r)
    g = np.choose(sector, choices_g)
    b = np.choose(sector, choices_b)
    m = v - c
    return np.stack([r + m, g + m, b + m], axis=-1) * 255.0


class _SceneRenderer:
    """Renders frame t (scene-local) of one scene as uint8 RGB."""

    def __init__(self, scene: _Scene, width: int, height: int, duration: int,
                 rng: np.random.Generator):
        self.scene = scene
        self.width = width
        self.height = height
        pan_room = scene.pan * duration
        cw = width + pan_room
        # Background canvas (wider when panning): smooth hue/value gradient + mild texture.
        yy, xx = np.mgrid[0:height, 0:cw].astype(np.float64)
        u = xx / max(cw - 1, 1)
        v = yy / max(height - 1, 1)
        if scene.pan:
            # Periodic in x so a long pan keeps a similar look everywhere.
            u = 0.5 + 0.5 * np.sin(2 * np.pi * xx / (2.5 * width))
        hue = scene.hue + 16.0 * (u - 0.5) + 6.0 * (v - 0.5)
        val = np.clip(scene.val + 0.16 * (0.5 - v), 0.0, 1.0)
        sat = np.clip(scene.sat + 0.06 * (u - 0.5), 0.0, 1.0)
        bg = _hsv_to_rgb(hue, sat, val)
        texture = np.zeros((height, cw))
        for _ in range(3):
            kx, ky = rng.uniform(0.02, 0.09, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            texture += np.sin(kx * xx + ky * yy + phase)
        bg += (2.0 * texture)[..., None]
        self.background = bg.astype(np.float32)
        # Light that changes through the take (clouds, a sunset): real shots drift, and a splitter
        # that drops "still" events must see these as moving footage.
        self.duration = duration
        self.yy = yy[:, :width].astype(np.float32)
        self.xx = xx[:, :width].astype(np.float32)

        # A few bright, saturated shapes moving 1-2 px/frame and bouncing off the borders.
        self.shapes = []
        for k in range(3):
            size = float(rng.uniform(16, 28))
            pos = rng.uniform([size, size], [width - size, height - size])
            speed = rng.uniform(1.5, 2.5)
            angle = rng.uniform(0, 2 * np.pi)
            vel = speed * np.array([np.cos(angle), np.sin(angle)])
            shape_hue = (scene.hue + rng.choice([-1, 1]) * rng.uniform(90, 150))
            shape_hue = float(np.clip(shape_hue % 360.0, 25.0, 335.0))
            colour = _hsv_to_rgb(shape_hue, 0.75, min(1.0, scene.val + 0.35)).astype(np.float32)
            kind = "circle" if k % 2 == 0 else "rect"
            self.shapes.append((kind, size, pos, vel, colour))

    @staticmethod
    def _bounce(p0: float, vel: float, t: int, lo: float, hi: float) -> float:
        span = hi - lo
        q = (p0 - lo + vel * t) % (2 * span)
        return lo + (q if q <= span else 2 * span - q)

    def frame(self, t: int) -> np.ndarray:
        sc = self.scene
        if sc.still:
            t = 0
        off = sc.pan * t
        img = self.background[:, off:off + self.width].copy()
        for kind, size, pos, vel, colour in self.shapes:
            cx = self._bounce(pos[0], vel[0], t, size, self.width - size)
            cy = self._bounce(pos[1], vel[1], t, size, self.height - size)
            x0, x1 = int(max(cx - size - 2, 0)), int(min(cx + size + 3, self.width))
            y0, y1 = int(max(cy - size - 2, 0)), int(min(cy + size + 3, self.height))
            xs = self.xx[y0:y1, x0:x1]
            ys = self.yy[y0:y1, x0:x1]
            if kind == "circle":
                d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) - size
            else:
                d = np.maximum(np.abs(xs - cx), np.abs(ys - cy) * 1.4) - size
            alpha = np.clip(0.5 - d, 0.0, 1.0)[..., None]  # anti-aliased edge
            patch = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = patch + alpha * (colour - patch)
        light = 0.75 + 0.5 * t / max(self.duration - 1, 1)  # brightness ramps 0.75 → 1.25
        return np.clip(img * light + 0.5, 0, 255).astype(np.uint8)


def _frames(spec: _Spec, rng: np.random.Generator):
    """Yield the spec's frames in order (uint8 RGB, H x W x 3)."""
    renderers = [
        _SceneRenderer(sc, spec.width, spec.height, sc.end - sc.start + 1, rng)
        for sc in spec.scenes
    ]
    fades = {}
    for first, last in spec.crossfades:
        for i in range(first, last + 1):
            fades[i] = (i - first + 1) / (last - first + 2)
    for i in range(spec.frame_count):
        active = [k for k, sc in enumerate(spec.scenes) if sc.start <= i <= sc.end]
        if len(active) == 1:
            k = active[0]
            yield renderers[k].frame(i - spec.scenes[k].start)
        else:  # cross-fade: linear blend of the outgoing and incoming scene
            a, b = active
            w = fades[i]
            fa = renderers[a].frame(i - spec.scenes[a].start).astype(np.float32)
            fb = renderers[b].frame(i - spec.scenes[b].start).astype(np.float32)
            yield np.clip((1.0 - w) * fa + w * fb + 0.5, 0, 255).astype(np.uint8)


def _audio_samples(spec: _Spec) -> np.ndarray:
    """Quiet mono tone track (float32, 1 x n) with one pitch per scene and soft edges."""
    n = spec.frame_count * _AUDIO_RATE // spec.fps
    t = np.arange(n, dtype=np.float64) / _AUDIO_RATE
    freqs = np.empty(n)
    notes = [220.0, 261.63, 329.63, 392.0, 440.0]
    for k, sc in enumerate(spec.scenes):
        a = sc.start * _AUDIO_RATE // spec.fps
        freqs[a:] = notes[k % len(notes)]
    phase = 2 * np.pi * np.cumsum(freqs) / _AUDIO_RATE  # continuous phase across changes
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    return (0.08 * env * np.sin(phase)).astype(np.float32)[None, :]


def _encode(spec: _Spec, path: Path, rng: np.random.Generator) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        _encode_to(spec, tmp, rng)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _encode_to(spec: _Spec, tmp: Path, rng: np.random.Generator) -> None:
    with av.open(str(tmp), mode="w", format="mp4",
                 options={"fflags": "+bitexact"}) as container:
        vs = container.add_stream("libx264", rate=spec.fps)
        vs.width = spec.width
        vs.height = spec.height
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, spec.fps)
        vs.codec_context.flags |= getattr(av.codec.context.Flags, "bitexact", 0)
        vs.thread_count = 1
        vs.options = {"preset": "ultrafast", "crf": "20", "threads": "1"}
        aus = None
        samples = None
        if spec.has_audio:
            aus = container.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
            aus.codec_context.flags |= getattr(av.codec.context.Flags, "bitexact", 0)
            samples = _audio_samples(spec)
        a_pos = 0

        def push_audio(until: int) -> None:
            nonlocal a_pos
            while a_pos < min(until, samples.shape[1]):
                chunk = samples[:, a_pos:a_pos + _AUDIO_FRAME]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                                layout="mono")
                af.sample_rate = _AUDIO_RATE
                af.pts = a_pos
                af.time_base = Fraction(1, _AUDIO_RATE)
                container.mux(aus.encode(af))
                a_pos += chunk.shape[1]

        for i, arr in enumerate(_frames(spec, rng)):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            container.mux(vs.encode(frame))
            if aus is not None:
                push_audio((i + 1) * _AUDIO_RATE // spec.fps)
        container.mux(vs.encode(None))
        if aus is not None:
            push_audio(samples.shape[1])
            container.mux(aus.encode(None))


# --------------------------------------------------------------------------- subtitles


def _ts(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(spec: _Spec) -> list[tuple[float, float, str]]:
    cues = []
    n = len(spec.scenes)
    for k, sc in enumerate(spec.scenes):
        # Scene span as the viewer sees it: a cross-fade belongs half to each side.
        start = sc.start if k == 0 else (sc.start + spec.scenes[k - 1].end + 1) / 2
        end = sc.end + 1 if k == n - 1 else (sc.end + 1 + spec.scenes[k + 1].start) / 2
        a, b = start / spec.fps + 0.5, end / spec.fps - 0.5
        lines = sc.caption
        step = (b - a) / len(lines)
        for j, line in enumerate(lines):
            cues.append((a + j * step, a + (j + 1) * step - (0.2 if j < len(lines) - 1 else 0),
                         line))
    return cues


def _write_subtitles(spec: _Spec, path: Path) -> None:
    cues = _cues(spec)
    if spec.subtitle_ext == ".srt":
        blocks = [f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n"
                  for i, (a, b, text) in enumerate(cues, start=1)]
        body = "\n".join(blocks)
    else:
        blocks = [f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n" for a, b, text in cues]
        body = "WEBVTT\n\n" + "\n".join(blocks)
    path.write_text(body, encoding="utf-8", newline="\n")


# --------------------------------------------------------------------------- public API


def render_demo_sources(out_dir: Path, seed: int = 0) -> list[SyntheticVideo]:
    """Render the three demo videos and their subtitles into ``out_dir``.

    Layout: ``out_dir/videos/<id>.mp4`` and ``out_dir/subtitles/<id>.vtt|.srt``. Files are
    always re-rendered; the same ``seed`` gives byte-identical files.
    """
    videos = describe_demo_sources(out_dir)
    (Path(out_dir) / "videos").mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "subtitles").mkdir(parents=True, exist_ok=True)
    for idx, (spec, video) in enumerate(zip(_specs(), videos)):
        _encode(spec, video.path, np.random.default_rng([seed, idx]))
        _write_subtitles(spec, video.subtitles_path)
    return videos


def describe_demo_sources(out_dir: Path) -> list[SyntheticVideo]:
    """The demo videos `render_demo_sources` renders into ``out_dir``, without rendering them."""
    out_dir = Path(out_dir)
    result = []
    for spec in _specs():
        hard_cuts = tuple(
            sc.start for k, sc in enumerate(spec.scenes)
            if k > 0 and sc.start == spec.scenes[k - 1].end + 1
        )
        stills = tuple((sc.start, sc.end) for sc in spec.scenes if sc.still)
        result.append(SyntheticVideo(
            video_id=spec.video_id,
            path=out_dir / "videos" / f"{spec.video_id}.mp4",
            title=spec.title,
            description=spec.description,
            subtitles_path=out_dir / "subtitles" / f"{spec.video_id}{spec.subtitle_ext}",
            category=spec.category,
            fps=spec.fps,
            frame_count=spec.frame_count,
            width=spec.width,
            height=spec.height,
            has_audio=spec.has_audio,
            hard_cuts=hard_cuts,
            crossfades=spec.crossfades,
            stills=stills,
        ))
    return result


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def write_manifest(videos: list[SyntheticVideo], manifest_path: Path) -> Path:
    """Write the ingest manifest CSV; ``path``/``subtitles`` are relative to its directory."""
    manifest_path = Path(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    base = manifest_path.parent
    with open(manifest_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id", "path", "url", "title", "description", "subtitles",
                         "category"])
        for v in videos:
            writer.writerow([
                v.video_id,
                _relative(v.path, base),
                f"https://example.invalid/watch?v={v.video_id}",
                v.title,
                v.description,
                _relative(v.subtitles_path, base) if v.subtitles_path is not None else "",
                v.category,
            ])
    return manifest_path

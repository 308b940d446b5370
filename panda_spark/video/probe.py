"""Container probing: what a video file is, without decoding more than one frame.

`probe_video` demuxes every video packet (cheap: no decoding) so the frame count is exact and a
file that ends early is caught, then decodes the first frame to prove the stream is decodable (and
to read its display rotation, which PyAV exposes on frames).
Bad files raise the typed `InputError`s of `panda_spark.errors`, so a stage can route them to the
`errors` table by class.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av

from panda_spark.errors import CorruptVideo, NotAVideo, TruncatedVideo, ZeroFrames
from panda_spark.video.decode import rotation_of

PROBE_VERSION = "probe-2"  # probe-2: rotation

# First bytes of containers that hold video; a file that starts like this but cannot be opened
# is a broken video, anything else that cannot be opened is not a video at all.
_ISO_BMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}
_VIDEO_MAGICS = (
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM
    b"RIFF",  # AVI
    b"FLV",
    b"OggS",
    b"\x00\x00\x01\xba",  # MPEG-PS
    b"\x30\x26\xb2\x75",  # ASF / WMV
)
# libav opens single images as one-frame "videos"; they are not videos for this pipeline.
_IMAGE_FORMAT_SUFFIXES = ("_pipe", "image2")


@dataclass(frozen=True)
class VideoProbe:
    duration_s: float
    fps: float
    fps_rational: str
    avg_fps: float
    frame_count: int
    width: int  # as stored (see `rotation`)
    height: int
    codec: str
    pix_fmt: str | None
    has_audio: bool
    container: str
    rotation: int  # degrees the stored picture turns clockwise to be shown (decode.rotation_of)


def _is_iso_bmff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES


def _iso_bmff_truncated(fh: BinaryIO, file_size: int) -> bool:
    """True when a top-level MP4 box claims bytes past the end of the file, or `moov` is missing."""
    offset, seen_moov = 0, False
    while offset + 8 <= file_size:
        fh.seek(offset)
        header = fh.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1:  # 64-bit large size follows the type
            if len(header) < 16:
                return True
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:  # box runs to the end of the file
            size = file_size - offset
        if size < 8:
            return False  # not a box structure we understand: call it corrupt, not truncated
        seen_moov |= kind == b"moov"
        if offset + size > file_size:
            return True
        offset += size
    return not seen_moov


def _open_failure(fh: BinaryIO, file_size: int, exc: Exception) -> Exception:
    fh.seek(0)
    head = fh.read(16)
    if _is_iso_bmff(head):
        if _iso_bmff_truncated(fh, file_size):
            return TruncatedVideo(f"MP4 file ends inside a box or lacks its index (moov): {exc}")
        return CorruptVideo(f"MP4 container cannot be opened: {exc}")
    if head.startswith(_VIDEO_MAGICS) or head[:1] == b"\x47":  # 0x47: MPEG-TS sync byte
        return CorruptVideo(f"video container cannot be opened: {exc}")
    return NotAVideo(f"not a video file (unrecognised content, libav: {exc})")


def _rational(rate: Fraction | None) -> Fraction:
    return Fraction(rate) if rate else Fraction(0)


def probe_video(fh: BinaryIO, file_size: int) -> VideoProbe:
    """Probe an open, seekable binary file of `file_size` bytes.

    Raises NotAVideo, CorruptVideo, TruncatedVideo or ZeroFrames.
    """
    try:
        container = av.open(fh, mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _open_failure(fh, file_size, exc) from exc
    with container:
        fmt = container.format.name
        if not container.streams:
            raise ZeroFrames(f"the {fmt} container holds no tracks")
        if not container.streams.video or fmt.endswith(_IMAGE_FORMAT_SUFFIXES):
            raise NotAVideo(f"no video stream (container format {fmt})")
        stream = container.streams.video[0]
        declared = stream.frames
        packets = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
        except av.FFmpegError as exc:
            raise _open_failure(fh, file_size, exc) from exc
        if packets == 0:
            raise ZeroFrames("the video stream holds no frames")
        if declared and packets < declared:
            fh.seek(0)
            if _is_iso_bmff(fh.read(16)) and _iso_bmff_truncated(fh, file_size):
                raise TruncatedVideo(f"file ends after {packets} of {declared} frames")
            raise CorruptVideo(f"only {packets} of {declared} frames could be read")
        rotation = rotation_of(_decode_first_frame(container, stream))

        nominal = _rational(stream.base_rate or stream.guessed_rate)
        average = _rational(stream.average_rate) or nominal
        if container.duration:
            duration = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = packets / float(average) if average else 0.0
        ctx = stream.codec_context
        return VideoProbe(
            duration_s=float(duration),
            fps=float(nominal),
            fps_rational=f"{nominal.numerator}/{nominal.denominator}",
            avg_fps=float(average),
            frame_count=packets,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            pix_fmt=ctx.pix_fmt,
            has_audio=bool(container.streams.audio),
            container=fmt,
            rotation=rotation,
        )


def _decode_first_frame(container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame:
    try:
        container.seek(0, stream=stream)
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise CorruptVideo(f"the first frame cannot be decoded: {exc}") from exc
    raise CorruptVideo("no frame could be decoded")

"""Frame times (FrameClock) and display rotation on files written here with PyAV."""
import os
from fractions import Fraction

import numpy as np
import pytest

from panda_spark.video.decode import FrameClock, FrameResizer, open_stream
from panda_spark.video.probe import probe_video
from tests.video.media import moving_scene, write_video


def clock_of(path) -> FrameClock:
    container, frames, info = open_stream(str(path))
    clock = FrameClock(info)
    with container:
        for frame in frames:
            clock.push(frame)
    clock.close()
    return clock


def test_a_constant_rate_file_with_rounded_timestamps_reads_exact_frame_indices(tmp_path):
    """29.97 fps in Matroska's millisecond time base: timestamps 0, 33, 67, 100, … ms."""
    count = 60
    pts = [round(i * 1001 / 30) for i in range(count)]
    path = write_video(tmp_path / "ntsc.mkv", moving_scene(count, 32, 64, (90, 90, 90), 0), pts,
                       Fraction(1, 1000), rate=Fraction(30000, 1001))
    clock = clock_of(path)
    assert [clock[i] for i in range(len(clock))] == [float(i) for i in range(count + 1)]  # and the end at 60


def test_a_variable_rate_file_reads_its_timestamps_in_frame_periods(tmp_path):
    pts = [0, 1, 4, 5, 9, 16]
    path = write_video(tmp_path / "vfr.mp4", moving_scene(6, 32, 64, (90, 90, 90), 0), pts, Fraction(1, 30))
    clock = clock_of(path)
    assert [clock[i] for i in range(len(clock))] == [0, 1, 4, 5, 9, 16, 17]  # end: the last frame's 1/30 s


@pytest.mark.parametrize("rotation, upright_quadrant", [(0, (0, 0)), (90, (0, 1)), (180, (1, 1)), (270, (1, 0))])
def test_rotation_is_probed_and_frames_come_out_upright(tmp_path, rotation, upright_quadrant):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:16, :32] = 255  # the stored picture's top-left quadrant
    path = write_video(tmp_path / "r.mp4", [image] * 3, range(3), Fraction(1, 25), rate=25, rotation=rotation)
    with open(path, "rb") as fh:
        probe = probe_video(fh, os.path.getsize(path))
    assert (probe.rotation, probe.width, probe.height) == (rotation, 64, 32)
    container, frames, info = open_stream(str(path))
    with container:
        upright = FrameResizer(info.width, info.height)(next(frames))
    assert (info.rotation, upright.shape) == (rotation, (info.height, info.width, 3))
    assert upright.shape[:2] == ((64, 32) if rotation in (90, 270) else (32, 64))
    h, w = upright.shape[:2]
    row, col = upright_quadrant
    assert upright[row * h // 2:(row + 1) * h // 2, col * w // 2:(col + 1) * w // 2].mean() > 200
    assert upright.mean() == pytest.approx(255 / 4, abs=10)


def test_a_store_failing_mid_read_is_reported_by_its_class():
    """split and export report a remote read that fails after the open as ingest would."""
    from panda_spark.video.decode import decode_failure

    assert decode_failure(TimeoutError("read timed out"))[0] == "RemoteTimeout"
    assert decode_failure(PermissionError("403"))[0] == "AccessDenied"
    assert decode_failure(FileNotFoundError("x.mp4"))[0] == "FileNotFound"
    assert decode_failure(KeyError("bug")) == ("KeyError", "'bug'")

"""Fixtures of the download tests: small real videos (PyAV) and a local HTTP server serving them."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tests.download.server import MediaServer
from tests.video.media import moving_scene, write_video

TICK = Fraction(1, 25)


def make_videos(out: Path) -> dict[str, Path]:
    """a.mp4 (2 s), b.mp4 (1 s) and c.mp4 (1 s): three different H.264 files."""
    out.mkdir(parents=True, exist_ok=True)
    return {
        "a.mp4": write_video(out / "a.mp4", moving_scene(50, 48, 64, (200, 40, 40), 1), range(50), TICK, 25),
        "b.mp4": write_video(out / "b.mp4", moving_scene(25, 48, 64, (40, 60, 200), 2), range(25), TICK, 25),
        "c.mp4": write_video(out / "c.mp4", moving_scene(25, 32, 48, (40, 160, 60), 3), range(25), TICK, 25),
    }


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    return make_videos(tmp_path_factory.mktemp("served"))


@pytest.fixture
def media_server(videos):
    """A fresh server (hit counts from zero) on 127.0.0.1, stopped after the test."""
    server = MediaServer(videos).start()
    yield server
    server.stop()


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())

"""The demo's re-captioning round: a "published" Panda-70M CSV whose urls point at a local HTTP
server the demo starts, so import-panda-csv → download → split (published timestamps) → caption →
select → export runs without the internet.

The served source is a copy of one synthetic video under a YouTube-like id that begins with `-`;
its published clips are its scenes between hard cuts (timecodes truncated to the millisecond, as
the release's). A second row names a video the server does not have: download records it as
`NotFound`.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from panda_spark.dataset.panda70m import COLUMNS, format_timestamp
from panda_spark.demo.synthetic import SyntheticVideo

SERVED_ID = "-PandaDash0"  # YouTube ids may begin with '-': never passed as an option
MISSING_ID = "GoneVideo01"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # not a line per request on the demo's output
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def published_clips(video: SyntheticVideo, min_len_s: float = 2.5) -> list[tuple[str, str]]:
    """The video's scenes between hard cuts of at least `min_len_s`, as published timecodes."""
    bounds = [0, *video.hard_cuts, video.frame_count]
    return [(format_timestamp(a / video.fps), format_timestamp(b / video.fps))
            for a, b in zip(bounds, bounds[1:]) if (b - a) / video.fps >= min_len_s]


def write_published_csv(source: SyntheticVideo, served_dir: Path, csv_path: Path, base_url: str) -> Path:
    """Put a copy of `source` where the server serves it and write the CSV naming it (and a video
    the server lacks) in the published format."""
    served_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.path, served_dir / f"{SERVED_ID}.mp4")
    clips = published_clips(source)
    rows = [
        {"videoID": SERVED_ID, "url": f"{base_url}/{SERVED_ID}.mp4", "timestamp": repr([list(c) for c in clips]),
         "caption": repr([f"A published caption of scene {i + 1}." for i in range(len(clips))]),
         "matching_score": repr([0.40] * len(clips)), "desirable_filtering": repr(["desirable"] * len(clips)),
         "shot_boundary_detection": ""},
        {"videoID": MISSING_ID, "url": f"{base_url}/{MISSING_ID}.mp4", "timestamp": "[['0:00:00.000', '0:00:03.000']]",
         "caption": "['A video that was taken down.']", "matching_score": "[0.41]", "desirable_filtering": "",
         "shot_boundary_detection": ""},
    ]
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path

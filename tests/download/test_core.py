"""Download core without Spark, against the local media server: backends, every failure class,
retries, per-host lanes and pacing, and that a failed download leaves no file."""
from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, replace

import pytest

from panda_spark.config import DownloadSettings, load_config
from panda_spark.download import core
from panda_spark.download.core import (DownloadOptions, Pacer, choose_backend, destination_path, download_row,
                                       download_rows, host_of, lane_of, ytdlp_failure)
from panda_spark.errors import ConfigError
from panda_spark.ingest.core import IngestOptions, IngestResult, ingest_row
from tests.download.conftest import files_under

# what ingest writes into `videos` (its result less the status and error fields)
VIDEO_COLUMNS = [c for c in IngestResult.__dataclass_fields__
                 if c not in ("status", "key", "error_class", "message", "input_snapshot")]


def options(tmp_path, **changes) -> DownloadOptions:
    base = DownloadOptions(str(tmp_path / "store"), backend="http", retries=0, backoff_s=0.01, timeout_s=10,
                           requests_per_s_per_host=0, max_bytes=10_000_000, max_duration_s=3600)
    return replace(base, **changes)


def row(url: str, video_id: str = "vid-1") -> dict:
    return {"video_id": video_id, "url": url, "title": "a title", "description": None,
            "extra_json": json.dumps({"origin": "panda70m-csv"})}


def ingest_probe(path: str, source: dict) -> dict:
    """What ingest writes for the file at `path` with the row's fields."""
    manifest = {**source, "path": path, "subtitles": None, "manifest_dir": "", "manifest_row": 0,
                "prior_signature": None}
    return asdict(ingest_row(manifest, IngestOptions()))


@pytest.mark.parametrize("backend, route", [("http", "v/a.mp4"), ("yt-dlp", "v/a.mp4"),
                                            ("yt-dlp", "page/a.mp4.html")])
def test_a_download_is_published_and_probed_as_ingest_probes_it(tmp_path, media_server, videos, backend, route):
    source = row(media_server.url(route), video_id="-starts/with-dash")
    result = download_row(source, options(tmp_path, backend=backend))

    assert result.status == "downloaded", result.message
    assert result.backend == backend and result.attempts == 1
    assert result.path == destination_path(str(tmp_path / "store"), "-starts/with-dash", "mp4")
    assert "with-dash" not in result.path and result.path.startswith(str(tmp_path / "store") + "/")
    assert open(result.path, "rb").read() == videos["a.mp4"].read_bytes()
    assert result.fetched_bytes == videos["a.mp4"].stat().st_size
    assert [str(p) for p in files_under(tmp_path / "store")] == [result.path]  # nothing left beside it
    expected = ingest_probe(result.path, source)
    assert {c: getattr(result, c) for c in VIDEO_COLUMNS} == {c: expected[c] for c in VIDEO_COLUMNS}
    assert result.probe_version and result.frame_count == 50 and result.url == source["url"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("route, changes, error_class, transient", [
    ("status/404/x.mp4", {}, "NotFound", False),
    ("status/410/x.mp4", {}, "NotFound", False),
    ("status/403/x.mp4", {}, "Private", False),
    ("status/451/x.mp4", {}, "Unavailable", False),
    ("status/429/x.mp4", {}, "RateLimited", True),
    ("status/500/x.mp4", {}, "ServerError", True),
    ("slow/3/a.mp4", {"timeout_s": 0.5}, "Timeout", True),
    ("truncated/a.mp4", {}, "Truncated", True),
    ("bytes/4096", {}, "NotAVideo", False),
    ("page/a.mp4.html", {}, "NotAVideo", False),  # a web page, fetched as a file
    ("v/a.mp4", {"max_bytes": 1000}, "TooLarge", False),  # by Content-Length, before the body
    ("unsized/a.mp4", {"max_bytes": 1000}, "TooLarge", False),  # while the body streams
    ("v/a.mp4", {"max_duration_s": 1.0}, "TooLong", False),  # 2 s: by the probe
])
def test_each_http_failure_has_its_class_and_leaves_no_file(tmp_path, media_server, route, changes, error_class,
                                                            transient):
    source = row(media_server.url(route))
    result = download_row(source, options(tmp_path, **changes))

    assert (result.status, result.error_class, result.transient) == ("error", error_class, transient), result.message
    assert result.key == "vid-1" and media_server.url(route) in result.message
    assert json.loads(result.input_snapshot)["url"] == source["url"]
    assert files_under(tmp_path / "store") == []


@pytest.mark.parametrize("url, backend, error_class, transient", [
    ("no-scheme/a.mp4", "auto", "UnsupportedUrl", False),
    ("nosuchscheme://bucket/a.mp4", "auto", "UnsupportedUrl", False),
    ("file:///nonexistent/a.mp4", "auto", "NotFound", False),
    (f"http://127.0.0.1:{_closed_port()}/v/a.mp4", "http", "NetworkError", True),
])
def test_urls_that_cannot_be_fetched(tmp_path, url, backend, error_class, transient):
    result = download_row(row(url), options(tmp_path, backend=backend))
    assert (result.error_class, result.transient) == (error_class, transient), result.message
    assert files_under(tmp_path / "store") == []


def test_other_fsspec_uris_are_copied(tmp_path, videos):
    result = download_row(row(f"file://{videos['b.mp4']}"), options(tmp_path))
    assert result.status == "downloaded" and result.backend == "fsspec"
    assert open(result.path, "rb").read() == videos["b.mp4"].read_bytes()


@pytest.mark.parametrize("route, error_class", [
    ("status/404/x", "NotFound"), ("status/403/x", "Private"), ("status/429/x", "RateLimited"),
    ("status/503/x", "ServerError"), ("truncated/a.mp4", "Truncated"),
])
def test_ytdlp_failures_have_their_class(tmp_path, media_server, route, error_class):
    result = download_row(row(media_server.url(route)), options(tmp_path, backend="yt-dlp"))
    assert result.error_class == error_class, result.message
    assert result.transient == (error_class in core.TRANSIENT_CLASSES)
    assert files_under(tmp_path / "store") == []


@pytest.mark.parametrize("message, error_class", [
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "Private"),
    ("ERROR: [youtube] abc: Video unavailable", "NotFound"),
    ("ERROR: [youtube] abc: This video does not exist.", "NotFound"),
    ("ERROR: [youtube] abc: Video unavailable. The uploader has not made this video available in your country",
     "Unavailable"),
    ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
     "Unavailable"),
    ("ERROR: [youtube] abc: Join this channel to get access to members-only content like this video",
     "Unavailable"),
    ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", "Unavailable"),
    ("ERROR: [youtube] abc: Sign in to confirm you're not a bot", "RateLimited"),
    ("ERROR: [download] Got error: 1000 bytes read, 2000 more expected", "Truncated"),
    ("ERROR: Unsupported URL: https://example.com/", "UnsupportedUrl"),
    ("ERROR: [youtube] abc: Read timed out.", "Timeout"),
])
def test_ytdlp_messages_map_to_classes(message, error_class):
    from yt_dlp.utils import DownloadError

    assert ytdlp_failure(DownloadError(message), "https://youtu.be/abc").error_class == error_class


def test_transient_failures_are_retried_with_backoff_and_permanent_ones_are_not(tmp_path, media_server):
    flaky = media_server.url("flaky/2/503/a.mp4")
    result = download_row(row(flaky), options(tmp_path, retries=3, backoff_s=0.05))
    assert (result.status, result.attempts) == ("downloaded", 3)
    assert media_server.hits["/flaky/2/503/a.mp4"] == 3

    stubborn = media_server.url("flaky/9/429/b.mp4")
    started = time.monotonic()
    result = download_row(row(stubborn), options(tmp_path, retries=2, backoff_s=0.1))
    assert (result.error_class, result.attempts) == ("RateLimited", 3)
    assert media_server.hits["/flaky/9/429/b.mp4"] == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # backoff 0.1 s, then 0.2 s

    result = download_row(row(media_server.url("status/404/c.mp4")), options(tmp_path, retries=3))
    assert (result.error_class, result.attempts) == ("NotFound", 1)
    assert media_server.hits["/status/404/c.mp4"] == 1


def test_no_host_gets_more_downloads_at_once_than_its_limit(tmp_path, media_server):
    media_server.delay_s = 0.15  # downloads overlap
    rows = [row(media_server.url(f"v/{name}", host=host) + f"?n={i}", f"{host}-{i}")
            for i in range(8) for host in ("127.0.0.1", "localhost") for name in ("a.mp4",)]
    results = download_rows(rows, options(tmp_path, concurrency_per_host=2))

    assert [r.status for r in results] == ["downloaded"] * len(rows)
    assert [r.video_id for r in results] == [r["video_id"] for r in rows]
    assert set(media_server.max_in_flight) == {"127.0.0.1", "localhost"}
    assert max(media_server.max_in_flight.values()) <= 2
    assert {lane_of(r["video_id"], r["url"], 2) for r in rows} <= {f"{h}#{n}" for h in ("127.0.0.1", "localhost")
                                                                    for n in (0, 1)}


def test_a_host_gets_at_most_its_rate(tmp_path, media_server):
    rows = [row(media_server.url(f"v/b.mp4?n={i}"), f"r-{i}") for i in range(6)]
    started = time.monotonic()
    results = download_rows(rows, options(tmp_path, concurrency_per_host=2, requests_per_s_per_host=10))
    assert all(r.status == "downloaded" for r in results)
    starts = sorted(media_server.starts["127.0.0.1"])
    # 10/s over 2 lanes: each lane starts one download per 0.2 s, so starts 3-4 come ≥ 0.2 s and 5-6 ≥ 0.4 s in
    assert len(starts) == 6 and starts[2] - started >= 0.2 and starts[4] - started >= 0.4


def test_pacer_spaces_starts():
    pacer, started = Pacer(0.05), time.monotonic()
    for _ in range(5):
        pacer.wait()
    assert time.monotonic() - started >= 0.2


def test_hosts_lanes_and_backends():
    assert host_of("https://www.youtube.com/watch?v=x") == host_of("https://youtu.be/x") == "youtube.com"
    assert host_of("https://m.youtube.com/watch?v=x") == "youtube.com"
    assert host_of("http://127.0.0.1:8000/a.mp4") == "127.0.0.1"
    assert {lane_of(f"id{i}", "https://youtu.be/x", 3) for i in range(100)} == {"youtube.com#0", "youtube.com#1",
                                                                                 "youtube.com#2"}
    assert choose_backend("https://www.youtube.com/watch?v=abcdefghijk", "auto") == "yt-dlp"
    assert choose_backend("https://youtu.be/abcdefghijk", "auto") == "yt-dlp"
    assert choose_backend("https://vimeo.com/12345", "auto") == "yt-dlp"  # a site yt-dlp has an extractor for
    assert choose_backend("http://127.0.0.1:8000/a.mp4", "auto") == "http"
    assert choose_backend("https://youtu.be/abcdefghijk", "http") == "http"
    assert choose_backend("http://127.0.0.1:8000/a.mp4", "yt-dlp") == "yt-dlp"
    assert choose_backend("s3://bucket/a.mp4", "auto") == "fsspec"


def test_file_names_never_come_from_the_id(tmp_path):
    for video_id in ("-rf", "../../etc/passwd", "a/b", "--help"):
        path = destination_path(str(tmp_path), video_id, "mp4")
        name = path[len(str(tmp_path)) + 1:]
        assert len(name.split("/")) == 2 and all(c in "0123456789abcdef/." or c in "mp4" for c in name)
    assert destination_path("s3://bucket/dl", "x", "webm").startswith("s3://bucket/dl/")


def test_cookies_file_goes_to_ytdlp(tmp_path, media_server):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tpanda\tsecret\n")
    settings = replace(DownloadSettings(), cookies_file=str(cookies), backend="yt-dlp", retries=0,
                       requests_per_s_per_host=0)
    result = download_row(row(media_server.url("v/b.mp4")), DownloadOptions.from_settings(settings, str(tmp_path)))
    assert result.status == "downloaded", result.message
    assert media_server.cookies["/v/b.mp4"] == "panda=secret"
    assert cookies.read_text().count("panda") == 1  # yt-dlp wrote to its own copy


def test_download_conf_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="download.cookies_file"):
        DownloadOptions.from_settings(replace(DownloadSettings(), cookies_file=str(tmp_path / "none.txt")), "x")
    with pytest.raises(ConfigError, match="download.format"):
        DownloadOptions.from_settings(replace(DownloadSettings(), format="b[height<=720"), "x")
    with pytest.raises(ConfigError, match="download.concurrency_per_host"):
        load_config(None, ["download.concurrency_per_host=0"])
    with pytest.raises(ConfigError, match="download.backend"):
        load_config(None, ["download.backend=wget"])
    cfg = load_config(None, ["download.max_bytes=", "download.path=s3://bucket/dl"])
    assert cfg.download.max_bytes is None and cfg.download.path == "s3://bucket/dl"

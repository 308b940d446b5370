"""Download core: one video URL → a probed file in the video store, or one typed failure. No Spark.

Contract of :func:`download_batch` (the pandas adapter run inside `mapInPandas`):
  in:  INPUT_COLUMNS (one row per `videos` row to fetch: video_id, url, title, description, extra_json,
       lane: see below)
  out: RESULT_SCHEMA columns, one row per input row, `status` one of
       `downloaded` (the `videos` columns as ingest probes them, `path` the published file),
       `error` (`error_class`, `message`, `input_snapshot`, `transient` set).

A download goes to a private temporary directory, is probed there exactly as ingest probes a file
(:func:`panda_spark.ingest.core.ingest_row`: the same columns, content hash and source signature),
and only a file that probes as a video within the limits is published to
`<destination>/<h[:2]>/<h>.<ext>` (h = sha256 of the video id: ids may start with '-' or hold
'/'); a killed or failed download never leaves a file at a final path.

Backends: yt-dlp (its Python API; one file per video in the conf'd format, no merging, since there
may be no ffmpeg) and plain HTTP(S) (requests, streamed) or any other fsspec URI. Limits per host
(youtube.com = youtu.be = www.youtube.com): the rows of a host are dealt into
`concurrency_per_host` lanes (`<host>#<n>`; the stage deals them round-robin, :func:`lane_of`
by a hash of the id); a task runs one worker per lane it holds, which downloads one video at a
time and starts at most `requests_per_s_per_host / concurrency_per_host` downloads per second.
The Spark stage gives each lane to one task, so the limits hold across the job. Transient failures
(RateLimited, Timeout, Truncated, ServerError, NetworkError) are retried `retries` times after
`backoff_s`, 2 × `backoff_s`, ...
Resources: a task holds one thread and one open download per lane it was given (at most
MAX_LANES_PER_TASK at once), files stream to local disk in CHUNK-sized pieces.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterator
from urllib.parse import urlsplit

import pandas as pd

from panda_spark import errors, storage
from panda_spark.errors import (AccessDenied, ConfigError, DownloadFailure, FileNotFound, InputError, MissingBackend,
                                NetworkError, NotAVideo, NotFound, Private, RateLimited, RemoteTimeout, ServerError,
                                Timeout, TooLarge, TooLong, Truncated, Unavailable, UnknownScheme, UnsupportedUrl)
from panda_spark.ingest.core import RESULT_SCHEMA as INGEST_RESULT_SCHEMA
from panda_spark.ingest.core import IngestOptions, IngestResult, file_signature, ingest_row

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("video_id", "url", "title", "description", "extra_json", "lane")
RESULT_SCHEMA = INGEST_RESULT_SCHEMA + ", transient BOOLEAN, fetched_bytes BIGINT, backend STRING, attempts INT"
TRANSIENT_CLASSES = frozenset(c.error_class for c in (RateLimited, Timeout, Truncated, ServerError, NetworkError))
DEFAULT_FORMAT = "b[height<=720][ext=mp4]/b[height<=720]/b"
CHUNK = 1 << 20
MAX_LANES_PER_TASK = 32
_VIDEO_EXTENSIONS = {"mp4", "m4v", "mov", "webm", "mkv", "avi", "flv", "ts", "3gp", "ogv", "mpg", "mpeg", "wmv"}
_CONTENT_TYPES = {"video/mp4": "mp4", "video/webm": "webm", "video/x-matroska": "mkv", "video/quicktime": "mov",
                  "video/x-msvideo": "avi", "video/x-flv": "flv", "video/mp2t": "ts", "video/ogg": "ogv"}
# one host, however the URL spells it
_HOST_ALIASES = {"youtu.be": "youtube.com", "youtube-nocookie.com": "youtube.com"}
_USER_AGENT = "panda-spark-download/1"


@dataclass(frozen=True)
class DownloadOptions:
    destination: str  # directory of the published files: an absolute local path or a URI
    backend: str = "auto"  # auto | yt-dlp | http
    format: str = DEFAULT_FORMAT
    concurrency_per_host: int = 8
    requests_per_s_per_host: float = 2.0  # 0: no rate limit
    retries: int = 3
    backoff_s: float = 5.0
    timeout_s: float = 60.0
    max_bytes: int | None = None
    max_duration_s: float | None = None
    cookies: str | None = None  # the text of a cookies.txt, for yt-dlp

    @classmethod
    def from_settings(cls, settings, destination: str) -> "DownloadOptions":
        """Options of conf section `download` (a DownloadSettings) publishing into `destination`.
        ConfigError for a cookies file that cannot be read or a format yt-dlp cannot parse."""
        cookies = None
        if settings.cookies_file:
            try:
                with open(os.path.expanduser(settings.cookies_file), encoding="utf-8") as fh:
                    cookies = fh.read()
            except OSError as exc:
                raise ConfigError(f"conf key 'download.cookies_file': expected a readable cookies.txt file, got "
                                  f"{settings.cookies_file!r} ({exc.strerror or exc})") from exc
        check_format(settings.format)
        return cls(storage.resolve_path(destination, ""), settings.backend, settings.format,
                   settings.concurrency_per_host, settings.requests_per_s_per_host, settings.retries,
                   settings.backoff_s, settings.timeout_s, settings.max_bytes, settings.max_duration_s, cookies)


def check_format(selector: str) -> None:
    """ConfigError (naming `download.format`) for a format selector yt-dlp cannot parse."""
    import yt_dlp

    try:
        yt_dlp.YoutubeDL({"quiet": True}).build_format_selector(selector)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"conf key 'download.format': expected a yt-dlp format selector such as "
                          f"{DEFAULT_FORMAT!r}, got {selector!r} ({str(exc).splitlines()[0]})") from exc


@dataclass
class DownloadResult(IngestResult):
    transient: bool | None = None
    fetched_bytes: int | None = None
    backend: str | None = None
    attempts: int | None = None


_RESULT_FIELDS = tuple(DownloadResult.__dataclass_fields__)


# ---------------------------------------------------------------- where: hosts, lanes, file names


def host_of(url: str) -> str:
    """The host that limits apply to: lower case, without port, `www.` / `m.`, aliases folded."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
    host = re.sub(r"^(www|m)\.", "", host)
    return _HOST_ALIASES.get(host, host)


def lane_of(video_id: str, url: str, concurrency_per_host: int) -> str:
    """`<host>#<n>`: the lane of a video, n a hash of its id modulo `concurrency_per_host`."""
    bucket = int(hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:8], 16) % concurrency_per_host
    return f"{host_of(url)}#{bucket}"


def destination_path(destination: str, video_id: str, ext: str) -> str:
    """`<destination>/<h[:2]>/<h>.<ext>`, h the sha256 of the id: never the id itself in a path."""
    digest = hashlib.sha256(video_id.encode("utf-8")).hexdigest()
    join = posixpath.join if storage.is_uri(destination) else os.path.join
    return join(destination, digest[:2], f"{digest}.{ext}")


def choose_backend(url: str, backend: str) -> str:
    """yt-dlp, http or fsspec for `url` under conf `download.backend`; UnsupportedUrl for a URL
    without a scheme (and, for http, one that is not http(s) or fsspec)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if not scheme:
        raise UnsupportedUrl(f"{url!r} is not a URL (no scheme://)")
    direct = "http" if scheme in ("http", "https") else "fsspec"
    if backend == "http":
        return direct
    if backend == "yt-dlp":
        return "yt-dlp"
    if direct == "fsspec":
        return direct
    return "yt-dlp" if host_of(url) == "youtube.com" or _has_own_extractor(url) else direct


_EXTRACTORS: list | None = None
_EXTRACTORS_LOCK = threading.Lock()


def _has_own_extractor(url: str) -> bool:
    """True when a yt-dlp extractor other than the generic one claims `url`."""
    global _EXTRACTORS
    with _EXTRACTORS_LOCK:
        if _EXTRACTORS is None:
            from yt_dlp.extractor import gen_extractor_classes

            _EXTRACTORS = [c for c in gen_extractor_classes() if c.ie_key() != "Generic"]
    return any(c.suitable(url) for c in _EXTRACTORS)


# ---------------------------------------------------------------- fetching one URL


@dataclass(frozen=True)
class Fetched:
    file: str  # the downloaded file, in the work directory
    ext: str
    bytes: int


def fetch(url: str, workdir: str, options: DownloadOptions, backend: str) -> Fetched:
    """One attempt to download `url` into `workdir` with `backend`; DownloadFailure / NotAVideo."""
    if backend == "yt-dlp":
        return _fetch_ytdlp(url, workdir, options)
    if backend == "http":
        return _fetch_http(url, workdir, options)
    return _fetch_fsspec(url, workdir, options)


class Pacer:
    """At most one start per `interval_s` seconds (a lane's share of the host's rate limit)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.next_at = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval_s


def pacer_for(options: DownloadOptions) -> Pacer:
    rate = options.requests_per_s_per_host
    return Pacer(options.concurrency_per_host / rate if rate > 0 else 0.0)


def fetch_with_retries(url: str, workdir: str, options: DownloadOptions, backend: str,
                       pacer: Pacer) -> tuple[Fetched, int]:
    """(what `fetch` got, attempts): transient failures are tried again up to `options.retries`
    times, after backoff_s × 2**(attempt - 1); each attempt waits for `pacer` first. The last
    failure is raised with `attempts` set on it."""
    attempt = 0
    while True:
        attempt += 1
        pacer.wait()
        try:
            return fetch(url, workdir, options, backend), attempt
        except DownloadFailure as exc:
            exc.attempts = attempt
            if not exc.transient or attempt > options.retries:
                raise
            pause = options.backoff_s * 2 ** (attempt - 1)
            log.info("download %s: %s (%s); retry %d of %d in %.1f s", url, exc.error_class, exc.message[:200],
                     attempt, options.retries, pause)
            _clear(workdir)
            time.sleep(pause)


def _clear(workdir: str) -> None:
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def http_failure(status: int, what: str) -> DownloadFailure:
    """The failure an HTTP error status stands for."""
    text = f"{what}: HTTP {status}"
    if status in (404, 410):
        return NotFound(text)
    if status in (401, 403):
        return Private(f"{text} (access denied)")
    if status == 429:
        return RateLimited(text)
    if status in (408, 504):
        return Timeout(text)
    if status >= 500:
        return ServerError(text)
    return Unavailable(text)


_session = threading.local()


def _requests_session():
    import requests

    if not hasattr(_session, "value"):
        _session.value = requests.Session()
        _session.value.headers["User-Agent"] = _USER_AGENT
    return _session.value


def _fetch_http(url: str, workdir: str, options: DownloadOptions) -> Fetched:
    import requests
    from requests import exceptions as rx

    try:
        with _requests_session().get(url, stream=True, timeout=(options.timeout_s, options.timeout_s)) as response:
            if response.status_code >= 400:
                raise http_failure(response.status_code, url)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type.startswith("text/"):
                raise NotAVideo(f"{url}: the server sent {content_type}, not a video")
            declared = response.headers.get("Content-Length")
            declared = int(declared) if declared and declared.isdigit() and "Content-Encoding" not in response.headers \
                else None
            if declared is not None and options.max_bytes and declared > options.max_bytes:
                raise TooLarge(f"{url}: {declared} bytes, more than download.max_bytes={options.max_bytes}")
            ext = _extension(urlsplit(url).path) or _CONTENT_TYPES.get(content_type, "mp4")
            target = os.path.join(workdir, f"video.{ext}")
            got = _copy(response.iter_content(CHUNK), target, url, options)
    except DownloadFailure:
        raise
    except rx.Timeout as exc:
        raise Timeout(f"{url}: no response for {options.timeout_s:g} s ({type(exc).__name__})") from exc
    except rx.ChunkedEncodingError as exc:
        raise Truncated(f"{url}: the body ended early ({exc})") from exc
    except rx.ConnectionError as exc:
        if "timed out" in str(exc).lower():  # a read that stalls mid-body comes wrapped like this
            raise Timeout(f"{url}: no byte for {options.timeout_s:g} s") from exc
        raise NetworkError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except (rx.InvalidURL, rx.InvalidSchema, rx.MissingSchema) as exc:
        raise UnsupportedUrl(f"{url}: {exc}") from exc
    except requests.RequestException as exc:
        raise NetworkError(f"{url}: {type(exc).__name__}: {exc}") from exc
    if declared is not None and got < declared:
        raise Truncated(f"{url}: {got} bytes of the {declared} announced")
    return Fetched(target, ext, got)


def _copy(chunks, target: str, url: str, options: DownloadOptions) -> int:
    got = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            got += len(chunk)
            if options.max_bytes and got > options.max_bytes:
                raise TooLarge(f"{url}: more than download.max_bytes={options.max_bytes} bytes")
            out.write(chunk)
    return got


def _extension(path: str) -> str | None:
    ext = posixpath.splitext(path)[1].lstrip(".").lower()
    return ext if ext in _VIDEO_EXTENSIONS else None


def _fetch_fsspec(url: str, workdir: str, options: DownloadOptions) -> Fetched:
    ext = _extension(url) or "mp4"
    target = os.path.join(workdir, f"video.{ext}")
    location = storage.resolve_path(url, "")  # file:// → a local path
    try:
        with storage.failures(url):
            size = storage.stat_file(location).size
            if options.max_bytes and size > options.max_bytes:
                raise TooLarge(f"{url}: {size} bytes, more than download.max_bytes={options.max_bytes}")
            with storage.open_binary(location) as fh:
                got = _copy(iter(lambda: fh.read(CHUNK), b""), target, url, options)
    except DownloadFailure:
        raise
    except InputError as exc:
        raise _store_failure(exc) from exc
    return Fetched(target, ext, got)


def _store_failure(exc: InputError) -> DownloadFailure:
    """The download failure of a store's InputError (panda_spark.storage.failure)."""
    if isinstance(exc, FileNotFound):
        return NotFound(exc.message)
    if isinstance(exc, AccessDenied):
        return Private(exc.message)
    if isinstance(exc, RemoteTimeout):
        return Timeout(exc.message)
    if isinstance(exc, (MissingBackend, UnknownScheme)):
        return UnsupportedUrl(exc.message)
    return NetworkError(exc.message)


class _YtdlpLog:
    """yt-dlp's messages, kept (the last few explain a download that made no file) instead of printed."""

    def __init__(self):
        self.lines: list[str] = []

    def debug(self, message: str) -> None:
        self.lines = [*self.lines[-20:], message]

    info = warning = error = debug


def _fetch_ytdlp(url: str, workdir: str, options: DownloadOptions) -> Fetched:
    import yt_dlp

    messages = _YtdlpLog()
    params = {
        "format": options.format, "outtmpl": {"default": os.path.join(workdir, "video.%(ext)s")},
        "quiet": True, "no_warnings": True, "noprogress": True, "logger": messages, "noplaylist": True,
        # our retries, pacing and classes decide; yt-dlp's own retries would hide them
        "retries": 0, "fragment_retries": 0, "extractor_retries": 0, "file_access_retries": 0,
        "socket_timeout": options.timeout_s, "max_filesize": options.max_bytes,
        "overwrites": True, "continuedl": False, "cachedir": False, "check_formats": False,
    }
    if options.cookies:
        cookie_file = os.path.join(workdir, "cookies.txt")  # a private copy: yt-dlp writes cookies back
        with open(cookie_file, "w", encoding="utf-8") as fh:
            fh.write(options.cookies)
        params["cookiefile"] = cookie_file
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
            if info.get("_type") in ("playlist", "multi_video"):
                raise UnsupportedUrl(f"{url}: a playlist of {len(info.get('entries') or [])} entries, not one video")
            duration = info.get("duration")
            if options.max_duration_s and duration and duration > options.max_duration_s:
                raise TooLong(f"{url}: {duration:g} s, longer than download.max_duration_s={options.max_duration_s:g}")
            size = info.get("filesize") or info.get("filesize_approx")
            if options.max_bytes and size and size > options.max_bytes:
                raise TooLarge(f"{url}: about {size} bytes, more than download.max_bytes={options.max_bytes}")
            ydl.process_ie_result(info, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise ytdlp_failure(exc, url) from exc
    files = [n for n in os.listdir(workdir) if n.startswith("video.") and not n.endswith((".part", ".ytdl"))]
    if not files:
        said = " / ".join(line.strip() for line in messages.lines[-3:])
        if "max-filesize" in said:
            raise TooLarge(f"{url}: more than download.max_bytes={options.max_bytes} bytes ({said})")
        raise Unavailable(f"{url}: yt-dlp wrote no file ({said})")
    target = os.path.join(workdir, files[0])
    ext = files[0].split(".", 1)[1]
    return Fetched(target, ext if ext in _VIDEO_EXTENSIONS else "mp4", os.path.getsize(target))


# lower-cased message fragments → the class, first match wins (yt-dlp words its errors per site)
_YTDLP_MESSAGES: tuple[tuple[type[DownloadFailure], tuple[str, ...]], ...] = (
    (RateLimited, ("http error 429", "too many requests", "not a bot", "rate-limit", "rate limit")),
    (Private, ("private video", "video is private", "granted access", "http error 401", "http error 403",
               "login required", "log in", "sign in to view")),
    (Unavailable, ("your country", "geo restrict", "geo-restrict", "confirm your age", "age-restricted",
                   "age restricted", "inappropriate", "members", "join this channel", "removed", "terminated",
                   "copyright", "no longer available", "premieres in", "live event", "requested format")),
    (NotFound, ("http error 404", "http error 410", "unavailable", "does not exist", "not found", "404")),
    (UnsupportedUrl, ("unsupported url", "is not a valid url", "no video formats")),
    (Timeout, ("timed out", "timeout")),
    (Truncated, ("more expected", "content too short", "incomplete read", "incompleteread")),
    (ServerError, ("http error 5",)),
    (NetworkError, ("unable to download", "connection", "network", "name or service", "temporary failure",
                    "ssl", "errno")),
)


def ytdlp_failure(exc: Exception, url: str) -> DownloadFailure:
    """The failure a yt-dlp error stands for: its HTTP status or network error where it keeps
    the cause, else its message."""
    from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
    from yt_dlp.utils import ContentTooShortError, GeoRestrictedError

    message = re.sub(r"^ERROR: ", "", str(exc)).strip().replace("\r", "")
    cause = (getattr(exc, "exc_info", None) or (None, None))[1] or getattr(exc, "cause", None)
    if isinstance(cause, DownloadFailure):
        return cause
    if isinstance(cause, HTTPError):
        return http_failure(cause.status, f"{url}: {message}")
    if isinstance(cause, (IncompleteRead, ContentTooShortError)):
        return Truncated(f"{url}: {message}")
    if isinstance(cause, GeoRestrictedError) or isinstance(exc, GeoRestrictedError):
        return Unavailable(f"{url}: {message}")
    if isinstance(cause, TransportError):
        return (Timeout if "timed out" in str(cause).lower() else NetworkError)(f"{url}: {message}")
    lowered = message.lower()
    for cls, fragments in _YTDLP_MESSAGES:
        if any(f in lowered for f in fragments):
            return cls(f"{url}: {message}")
    return Unavailable(f"{url}: {message}")


# ---------------------------------------------------------------- one row: fetch, probe, publish


def download_row(row: dict, options: DownloadOptions, pacer: Pacer | None = None) -> DownloadResult:
    """Fetch, probe and publish one `videos` row (INPUT_COLUMNS); never raises for the row's own
    failures (status `error` with the class), only for bugs."""
    video_id, url = row["video_id"], (row.get("url") or "").strip()
    started = time.monotonic()
    workdir = _workdir(options.destination)
    backend, attempts = None, 0
    try:
        backend = choose_backend(url, options.backend)
        fetched, attempts = fetch_with_retries(url, workdir, options, backend, pacer or pacer_for(options))
        probed = _probe(row, url, fetched, options)
        final = destination_path(options.destination, video_id, fetched.ext)
        _publish(fetched.file, final)
        stat = storage.stat_file(final)
        fields = {k: row.get(k) for k in ("url", "title", "description")}
        extra_json = row.get("extra_json") or "{}"
        result = DownloadResult(**{**asdict(probed), "status": "downloaded", "path": final, "file_mtime": stat.mtime,
                                   "source_signature": file_signature(final, stat, None, None, fields, extra_json)})
        result.fetched_bytes, result.backend, result.attempts = fetched.bytes, backend, attempts
        log.debug("downloaded %s (%d bytes) in %.1f s", url, fetched.bytes, time.monotonic() - started)
        return result
    except InputError as exc:
        return DownloadResult("error", video_id, video_id=video_id, error_class=exc.error_class,
                              message=exc.message, input_snapshot=input_snapshot(row),
                              transient=exc.error_class in TRANSIENT_CLASSES, backend=backend,
                              attempts=getattr(exc, "attempts", attempts or 1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def input_snapshot(row: dict) -> str:
    return json.dumps({"video_id": row.get("video_id"), "url": row.get("url"), "title": row.get("title"),
                       "extra": json.loads(row.get("extra_json") or "{}")}, ensure_ascii=False, sort_keys=True)


def _workdir(destination: str) -> str:
    """A private directory for one download: beside the published files for a local destination
    (publishing is then a rename), in the local temporary directory for a URI."""
    if storage.is_uri(destination):
        return tempfile.mkdtemp(prefix="panda-download-")
    parent = os.path.join(destination, ".partial")
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent)


def _probe(row: dict, url: str, fetched: Fetched, options: DownloadOptions) -> IngestResult:
    """The `videos` columns of the downloaded file as ingest probes it (path: the local file);
    NotAVideo / CorruptVideo / ... or TooLong instead of a file that must not be published."""
    manifest_row = {"video_id": row["video_id"], "path": fetched.file, "url": row.get("url"),
                    "title": row.get("title"), "description": row.get("description"), "subtitles": None,
                    "extra_json": row.get("extra_json") or "{}", "manifest_dir": "", "manifest_row": 0,
                    "prior_signature": None}
    probed = ingest_row(manifest_row, IngestOptions())
    if probed.status != "ingested":
        raise getattr(errors, probed.error_class, InputError)(f"{url}: the {fetched.bytes} bytes downloaded do not probe as a video: "
                    f"{(probed.message or '').replace(fetched.file, 'the file')}")
    if options.max_duration_s and probed.duration_s and probed.duration_s > options.max_duration_s:
        raise TooLong(f"{url}: {probed.duration_s:g} s, longer than download.max_duration_s="
                      f"{options.max_duration_s:g}")
    return probed


def _publish(file: str, final: str) -> None:
    """Move the finished file to `final` in one step: a rename on local disk, one upload (an
    object appears whole or not at all) to a store. A store that fails is a NetworkError."""
    if not storage.is_uri(final):
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(file, final)
        return
    try:
        fs, fs_path = storage.filesystem(final)
        with storage.failures(final):
            fs.makedirs(posixpath.dirname(fs_path), exist_ok=True)
            fs.put_file(file, fs_path)
    except InputError as exc:
        raise NetworkError(f"writing {final}: {exc.message}") from exc


# ---------------------------------------------------------------- many rows: lanes in threads


def download_rows(rows: list[dict], options: DownloadOptions) -> list[DownloadResult]:
    """Download `rows`; results in their order. A host gets one worker thread per lane among its
    rows (a row's `lane`, else :func:`lane_of`): each downloads one video at a time, paced, then
    takes the host's next video, so the lanes share the host's videos however long each takes."""
    queues: dict[str, collections.deque[int]] = {}
    lanes: dict[str, set[str]] = {}
    for i, row in enumerate(rows):
        lane = row.get("lane") or lane_of(row["video_id"], row.get("url") or "", options.concurrency_per_host)
        host = lane.rsplit("#", 1)[0]
        queues.setdefault(host, collections.deque()).append(i)
        lanes.setdefault(host, set()).add(lane)
    results: list[DownloadResult | None] = [None] * len(rows)

    def work(queue: collections.deque[int]) -> None:
        pacer = pacer_for(options)
        while True:
            try:
                i = queue.popleft()  # atomic: no two workers take one row
            except IndexError:
                return
            results[i] = download_row(rows[i], options, pacer)

    workers = [queues[host] for host, names in lanes.items() for _ in names]
    if workers:
        with ThreadPoolExecutor(min(len(workers), MAX_LANES_PER_TASK), thread_name_prefix="panda-download") as pool:
            for future in [pool.submit(work, queue) for queue in workers]:
                future.result()
    return results


def download_batch(batches: Iterator[pd.DataFrame], options: DownloadOptions) -> Iterator[pd.DataFrame]:
    """mapInPandas adapter: all of a task's rows (INPUT_COLUMNS) in, RESULT_SCHEMA rows out. The
    task's batches are gathered first so that all of its lanes download at once."""
    rows = [row for batch in batches for row in batch.to_dict("records")]
    results = [asdict(r) for r in download_rows(rows, options)]
    yield pd.DataFrame.from_records(results, columns=list(_RESULT_FIELDS))

"""Typed failures of pipeline inputs.

A stage turns each of these into one row of the `errors` table: its ``error_class`` is the
stable, queryable name of what went wrong; the message says which input and why.
Misconfiguration (bad conf keys, an unreadable manifest) is a different thing: it raises
:class:`ConfigError` and stops the job before any work starts.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A conf key, command-line flag or manifest layout is wrong; the message names it."""


class InputError(Exception):
    """One input row cannot be processed; the row goes to the `errors` table."""

    error_class = "InputError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MissingField(InputError):
    error_class = "MissingField"


class FileNotFound(InputError, FileNotFoundError):
    error_class = "FileNotFound"


class PathNotAllowed(InputError):
    error_class = "PathNotAllowed"


# The store's failures are also the builtin exception a store raises for them, so that a caller that
# handles that (a missing file: FileNotFoundError) keeps working when storage raises the typed one.


class MissingBackend(InputError, ImportError):
    """The URI's scheme needs an fsspec backend that is not installed (the `cloud` extra)."""

    error_class = "MissingBackend"


class UnknownScheme(InputError, ValueError):
    """No fsspec backend has the URI's scheme."""

    error_class = "UnknownScheme"


class AccessDenied(InputError, PermissionError):
    """The store refused the file (403), or there are no usable credentials for it."""

    error_class = "AccessDenied"


class RemoteTimeout(InputError, TimeoutError):
    error_class = "RemoteTimeout"


class StorageFailure(InputError, OSError):
    """Any other failure of the store for this file (connection refused, 5xx, I/O error)."""

    error_class = "StorageFailure"


class DuplicateVideoId(InputError):
    error_class = "DuplicateVideoId"


class InvalidEncoding(InputError):
    """Bytes that are not valid UTF-8 in a text input (never replaced: the row is not loaded)."""

    error_class = "InvalidEncoding"


class NotAVideo(InputError):
    error_class = "NotAVideo"


class CorruptVideo(InputError):
    error_class = "CorruptVideo"


class TruncatedVideo(InputError):
    error_class = "TruncatedVideo"


class ZeroFrames(InputError):
    error_class = "ZeroFrames"


class NoClips(InputError):
    """A video split fine but yielded no clip; the message counts the rules that dropped its shots.
    The video is committed (not split again) while its `errors` row says why it has no clips."""

    error_class = "NoClips"


class ClipsPastEnd(InputError):
    """Published clips (split.mode published) that lie past the end of the downloaded file (a
    shorter upload than the one Panda-70M cut): they keep their row and published caption but get no
    frames. The video is committed; the message names them."""

    error_class = "ClipsPastEnd"


class MalformedSubtitles(InputError):
    error_class = "MalformedSubtitles"


class SubtitleEncoding(InputError):
    error_class = "SubtitleEncoding"


class WriteConflict(RuntimeError):
    """Another writer kept committing to a table this stage writes, past the conf'd retries.

    The message is one line: the table, the conflict and what to do. Work committed in earlier
    waves stays; a plain rerun continues from there."""


class SetupError(RuntimeError):
    """The machine lacks something a job needs before any work starts (Java for Spark); the
    message says what to install."""


# ---------------------------------------------------------------- download failures
# What fetching a video's URL can fail with (panda-spark download). `transient` failures may
# succeed later (a rerun retries them); permanent ones stay failed until `--retry-failed`.
# NotAVideo (above) also ends a download: bytes that do not probe as a video.


class DownloadFailure(InputError):
    transient = False


class NotFound(DownloadFailure):
    """HTTP 404 / 410, or the site says the video does not exist or is unavailable."""

    error_class = "NotFound"


class Private(DownloadFailure):
    """A private video, or HTTP 401 / 403: it needs an account (a cookies file) that may see it."""

    error_class = "Private"


class Unavailable(DownloadFailure):
    """It exists but cannot be had from here: geo-blocked, removed, age-gated, members only."""

    error_class = "Unavailable"


class UnsupportedUrl(DownloadFailure):
    """No backend can fetch this URL (no scheme, an unknown one, a playlist)."""

    error_class = "UnsupportedUrl"


class TooLarge(DownloadFailure):
    """More bytes than download.max_bytes."""

    error_class = "TooLarge"


class TooLong(DownloadFailure):
    """Longer than download.max_duration_s."""

    error_class = "TooLong"


class RateLimited(DownloadFailure):
    """HTTP 429, or the site asks to prove the client is not a bot."""

    error_class = "RateLimited"
    transient = True


class Timeout(DownloadFailure, TimeoutError):
    """No byte came for download.timeout_s (connecting or reading)."""

    error_class = "Timeout"
    transient = True


class Truncated(DownloadFailure):
    """The body ended before the Content-Length it announced."""

    error_class = "Truncated"
    transient = True


class ServerError(DownloadFailure):
    """HTTP 5xx."""

    error_class = "ServerError"
    transient = True


class NetworkError(DownloadFailure, OSError):
    """The connection failed (refused, reset, DNS, TLS) or the store failed to read or write."""

    error_class = "NetworkError"
    transient = True

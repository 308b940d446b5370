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

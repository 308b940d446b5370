"""File access for local paths and Hadoop/fsspec URIs: resolve, check, stat, open, hash.

Manifest paths are untrusted: they are resolved (symlinks and `..` for local paths, normalised
for URIs) before anything opens them, and must fall inside `paths.allowed_roots` when that is set.

Object stores (s3://, gs://, abfs://, ...) go through fsspec; their backends are the `cloud`
extra. A store's options (endpoint, credentials) are conf key `paths.storage_options`: the driver
applies them with :func:`use_options`, and a Spark task function wrapped by :func:`in_tasks`
applies them in the executor's Python worker. A store that fails for one file (no backend, no
credentials, 403, 404, timeout) raises the :class:`InputError` of :func:`failure`, so that file's
row goes to `errors` and the others go on.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, Callable, Iterator, Mapping

from panda_spark.errors import (AccessDenied, FileNotFound, InputError, MissingBackend, PathNotAllowed, RemoteTimeout,
                                StorageFailure, UnknownScheme)

_CHUNK = 4 << 20


# the exceptions (by class name: their packages are optional) that mean "no usable credentials"
_CREDENTIAL_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "DefaultCredentialsError", "RefreshError", "ClientAuthenticationError"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                 "AllAccessDisabled", "AccountProblem"}
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def use_options(options: Mapping[str, Mapping[str, Any]]) -> None:
    """Make `options` (URI scheme → the fsspec filesystem's keyword arguments, conf key
    `paths.storage_options`) the defaults of every filesystem this process opens from now on; a
    scheme's entry replaces whatever this process had for it (a reused worker ran other confs)."""
    import fsspec.config

    for scheme, kwargs in options.items():
        fsspec.config.conf[scheme] = dict(kwargs)


def in_tasks(fn: Callable, options: Mapping[str, Mapping[str, Any]]) -> Callable:
    """`fn` for a Spark task: it applies `options` in the worker process first (executors do not
    see the driver's :func:`use_options`; the options travel pickled with the task)."""
    return partial(_with_options, {k: dict(v) for k, v in options.items()}, fn)


def _with_options(options: dict, fn: Callable, *args, **kwargs):
    use_options(options)
    return fn(*args, **kwargs)


def failure(exc: BaseException, path: str = "") -> InputError | None:
    """The per-file error that `exc`, raised by a store while it opened or read `path`, stands for;
    None for exceptions that are not a store's (those are bugs and propagate)."""
    if isinstance(exc, InputError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    response = getattr(exc, "response", None)  # botocore's ClientError: the service's error code
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    where = f"{path}: " if path else ""
    if isinstance(exc, ImportError):
        return MissingBackend(f"{where}{exc}; the cloud backends (s3fs, gcsfs, adlfs) come with "
                              "`pip install panda-spark[cloud]`")
    if isinstance(exc, ValueError) and str(exc).startswith("Protocol not known"):
        return UnknownScheme(f"{where}{exc} (no fsspec backend has this URI scheme)")
    if isinstance(exc, FileNotFoundError) or code in _MISSING_CODES:
        return FileNotFound(f"{where}no such file ({exc})")
    if isinstance(exc, PermissionError) or names & _CREDENTIAL_ERRORS or code in _DENIED_CODES:
        return AccessDenied(f"{where}access denied ({type(exc).__name__}: {exc}); check the store's credentials "
                            "(its own chain, or paths.storage_options)")
    if isinstance(exc, TimeoutError) or any(n.endswith("TimeoutError") for n in names):
        return RemoteTimeout(f"{where}the store timed out ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError) or "BotoCoreError" in names or "ClientError" in names or "HttpResponseError" in names:
        return StorageFailure(f"{where}the store failed ({type(exc).__name__}: {exc})")
    return None


@contextmanager
def failures(path: str = "") -> Iterator[None]:
    """Raise what a store raises inside the block as the InputError of :func:`failure`."""
    try:
        yield
    except Exception as exc:
        error = failure(exc, path)
        if error is None or error is exc:
            raise
        raise error from exc


def filesystem(path: str):
    """(fsspec filesystem, path inside it) of a URI; store failures as InputErrors."""
    import fsspec

    with failures(path):
        return fsspec.core.url_to_fs(path)


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def resolve_path(raw: str, base_dir: str) -> str:
    """Absolute, normalised form of `raw`; relative paths are taken relative to `base_dir`.
    `dbfs:/x` is Databricks' FUSE mount `/dbfs/x`, which every node of a cluster has."""
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    elif raw.startswith("dbfs:/"):
        raw = "/dbfs/" + raw[len("dbfs:/"):].lstrip("/")
    if is_uri(raw):
        scheme, rest = raw.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    if is_uri(base_dir) and not os.path.isabs(raw):
        return resolve_path(posixpath.join(base_dir, raw), "")
    base = base_dir[len("file://"):] if base_dir.startswith("file://") else base_dir
    return os.path.realpath(os.path.join(base or os.getcwd(), os.path.expanduser(raw)))


def check_allowed(path: str, allowed_roots: list[str]) -> None:
    """Raise PathNotAllowed unless `path` (already resolved) lies inside one of `allowed_roots`."""
    if not allowed_roots:
        return
    for root in allowed_roots:
        resolved_root = resolve_path(root, "").rstrip("/")
        if path == resolved_root or path.startswith(resolved_root + "/"):
            return
    raise PathNotAllowed(f"{path} is outside paths.allowed_roots {allowed_roots}")


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float  # seconds since the epoch; 0.0 when the store does not say


def stat_file(path: str) -> FileStat:
    if not is_uri(path):
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise FileNotFound(f"no such file: {path}") from exc
        if not os.path.isfile(path):
            raise FileNotFound(f"not a regular file: {path}")
        return FileStat(st.st_size, st.st_mtime)
    fs, fs_path = filesystem(path)
    with failures(path):
        info = fs.info(fs_path)
    if info.get("type") not in (None, "file"):
        raise FileNotFound(f"not a regular file: {path}")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0.0
    return FileStat(int(info["size"]), mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime))


def open_binary(path: str) -> BinaryIO:
    """The file, open for reading; a store's failure to open it as an InputError (one that
    happens later, while reading, as the store raises it: wrap reads in :func:`failures`)."""
    if not is_uri(path):
        return open(path, "rb")
    fs, fs_path = filesystem(path)
    with failures(path):
        return fs.open(fs_path, "rb")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with failures(path), open_binary(path) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_tree(path: str) -> None:
    """Delete a directory of files (a local path or a URI); a missing one is fine."""
    if not is_uri(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    fs, fs_path = filesystem(path)
    if fs.exists(fs_path):
        fs.rm(fs_path, recursive=True)

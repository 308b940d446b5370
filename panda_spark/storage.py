"""File access for local paths and Hadoop/fsspec URIs: resolve, check, stat, open, hash.

Manifest paths are untrusted: they are resolved (symlinks and `..` for local paths, normalised
for URIs) before anything opens them, and must fall inside `paths.allowed_roots` when that is set.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from typing import BinaryIO

from panda_spark.errors import FileNotFound, PathNotAllowed

_CHUNK = 4 << 20


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def resolve_path(raw: str, base_dir: str) -> str:
    """Absolute, normalised form of `raw`; relative paths are taken relative to `base_dir`."""
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
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
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path)
    try:
        info = fs.info(fs_path)
    except FileNotFoundError as exc:
        raise FileNotFound(f"no such file: {path}") from exc
    if info.get("type") not in (None, "file"):
        raise FileNotFound(f"not a regular file: {path}")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0.0
    return FileStat(int(info["size"]), mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime))


def open_binary(path: str) -> BinaryIO:
    if not is_uri(path):
        return open(path, "rb")
    import fsspec

    return fsspec.open(path, "rb").open()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open_binary(path) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_tree(path: str) -> None:
    """Delete a directory of files (a local path or a URI); a missing one is fine."""
    if not is_uri(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path)
    if fs.exists(fs_path):
        fs.rm(fs_path, recursive=True)

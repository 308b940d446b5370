"""Export writers run in tasks: Panda-70M CSV files and webdataset tar shards. No Spark.

Both adapters take rows sorted by their output file (`file`, every row of one file in the same
task), write each file locally, then move the finished file into the wave's staging directory (a
local dir or an fsspec URI) and report it: one status row per video (`written` / `error`) and one
`file` row per file (rows, clips, sha256, bytes). The driver publishes staged files with
:func:`replace_files` (an atomic rename locally; a whole-object move on object stores).
Files are byte-for-byte reproducible: rows in video order, tar members with fixed metadata.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from typing import Any, Callable, Iterator

import pandas as pd

from panda_spark import storage
from panda_spark.dataset.panda70m import (ClipRecord, build_row, clip_shots, csv_line, detected_shots, format_timestamp,
                                          header_line)
from panda_spark.errors import InputError
from panda_spark.video.decode import decode_failure

# One row per video (status written | error; rows, sha256, bytes NULL) and one per file (status
# file; video_id NULL, rows = videos written into it, clips = their clips).
STATUS_SCHEMA = ("file INT, video_id STRING, clips INT, status STRING, error_class STRING, message STRING, "
                 "rows INT, sha256 STRING, bytes BIGINT")
_STATUS_COLUMNS = [c.split()[0] for c in STATUS_SCHEMA.split(", ")]
PROBE_SCHEMA = "video_id STRING, ok BOOLEAN, error_class STRING, message STRING"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def csv_name(part: int) -> str:
    return f"panda70m_{part:05d}.csv"


def shard_name(shard: int) -> str:
    return f"{shard:06d}.tar"


def clip_record(clip: dict) -> ClipRecord:
    """An export row's clip (shots with their `forced` flag) → its CSV record: detected shots only."""
    shots = () if clip["shots"] is None else clip["shots"]
    return ClipRecord(clip["start_s"], clip["end_s"], clip["caption"], clip["matching_score"],
                      clip["desirable_filtering"],
                      detected_shots([(s["start_s"], s["end_s"], s["forced"]) for s in shots]))


class _Files:
    """The local file of the current output file (rows come sorted by file), moved to `out_dir`
    when the next file starts and at close; `finished` collects one `file` status row per file."""

    def __init__(self, tmp: str, out_dir: str, name: Callable[[int], str], open_file: Callable[[str], Any]):
        self.tmp, self.out_dir, self.name, self.open_file = tmp, out_dir, name, open_file
        self.index, self.handle, self.rows, self.clips = None, None, 0, 0
        self.finished: list[tuple] = []

    def __call__(self, index: int):
        if index != self.index:
            self.close()
            self.index, self.handle = index, self.open_file(os.path.join(self.tmp, self.name(index)))
            self.rows = self.clips = 0
        return self.handle

    def wrote(self, clips: int) -> None:
        self.rows, self.clips = self.rows + 1, self.clips + clips

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            local = self.handle.name
            digest, size = storage.sha256_file(local), os.path.getsize(local)
            publish(local, f"{self.out_dir}/{self.name(self.index)}")
            self.finished.append((self.index, None, self.clips, "file", None, None, self.rows, digest, size))
            self.handle = None

    def status(self, rows: list[tuple]) -> pd.DataFrame:
        """This batch's video rows plus the files finished since the last call."""
        rows, self.finished = rows + self.finished, []
        return pd.DataFrame(rows, columns=_STATUS_COLUMNS)


def _video_status(index: int, video_id: str, clips: int, status: str, error_class: str | None = None,
                  message: str | None = None) -> tuple:
    return index, video_id, clips, status, error_class, message, None, None, None


def _open_csv(path: str):
    fh = open(path, "w", encoding="utf-8", newline="")
    fh.write(header_line())
    return fh


def write_csv_parts(batches: Iterator[pd.DataFrame], out_dir: str) -> Iterator[pd.DataFrame]:
    """Rows (file, video_id, url, clips[start_s, end_s, caption, matching_score,
    desirable_filtering, shots[start_s, end_s, forced]]) sorted by file then video_id → one CSV per file."""
    with tempfile.TemporaryDirectory() as tmp:
        files = _Files(tmp, out_dir, csv_name, _open_csv)
        for batch in batches:
            status = []
            for index, video_id, url, clips in zip(batch["file"], batch["video_id"], batch["url"], batch["clips"]):
                fh = files(index)
                try:
                    line = csv_line(build_row(video_id, url, [clip_record(c) for c in clips]))
                except (InputError, TypeError, ValueError) as exc:  # a bad stored value must not stop the export
                    status.append(_video_status(index, video_id, 0, "error", *decode_failure(exc)))
                    continue
                fh.write(line)
                files.wrote(len(clips))
                status.append(_video_status(index, video_id, len(clips), "written"))
            yield files.status(status)
        files.close()
        yield files.status([])


def write_shards(batches: Iterator[pd.DataFrame], out_dir: str) -> Iterator[pd.DataFrame]:
    """Rows (file, video_id, path, url, clips[the CSV fields + clip_id, clip_idx, start_frame,
    end_frame, clip_path, teacher, teacher_version, good_match]) sorted by file then video_id →
    one tar per file with `<clip_id>.mp4|.txt|.json` per clip. A video's clips without a stored
    mp4 are cut from its source in one decode; a video that cannot be read is reported (its clips
    left out) and the shard goes on."""
    with tempfile.TemporaryDirectory() as tmp:
        tars = _Files(tmp, out_dir, shard_name, lambda p: tarfile.open(p, "w", format=tarfile.PAX_FORMAT))
        for batch in batches:
            status = []
            for index, video_id, path, url, clips in zip(batch["file"], batch["video_id"], batch["path"], batch["url"],
                                                          batch["clips"]):
                tar = tars(index)
                clips = sorted(clips, key=lambda c: (c["start_s"], c["clip_id"]))
                try:
                    media = clip_media(path, clips, tmp)
                except Exception as exc:  # one unreadable video must not stop the shard
                    status.append(_video_status(index, video_id, 0, "error", *decode_failure(exc)))
                    continue
                clips = [clip for clip in clips if clip["clip_id"] in media]
                for clip in clips:
                    key = clip["clip_id"]  # a uuid: no dots (webdataset splits keys at the first one)
                    _add(tar, f"{key}.mp4", media[key])
                    _add(tar, f"{key}.txt", clip["caption"].encode("utf-8"))
                    _add(tar, f"{key}.json", clip_meta(clip, video_id, url).encode("utf-8"))
                tars.wrote(len(clips))
                status.append(_video_status(index, video_id, len(clips), "written"))
            yield tars.status(status)
        tars.close()
        yield tars.status([])


def probe_media(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Rows (video_id, path, clips) of videos whose shard write failed before → whether their
    clips can be cut now (`PROBE_SCHEMA`); nothing is written. Used to retry only the videos that
    were fixed, instead of rewriting the shard of every failing video on every run."""
    with tempfile.TemporaryDirectory() as tmp:
        for batch in batches:
            out = []
            for video_id, path, clips in zip(batch["video_id"], batch["path"], batch["clips"]):
                try:
                    clip_media(path, list(clips), tmp)
                    out.append((video_id, True, None, None))
                except Exception as exc:  # the outcome is the answer
                    out.append((video_id, False, *decode_failure(exc)))
            yield pd.DataFrame(out, columns=["video_id", "ok", "error_class", "message"])


def clip_media(path: str, clips: list[dict], tmp: str) -> dict[str, bytes]:
    """clip_id → mp4 bytes: the stored clip file where there is one, else cut from the source. A
    clip without a frame range (a published clip past the end of its download) has none."""
    from panda_spark.video.clip_writer import write_clips

    media, ranges = {}, {}
    for clip in clips:
        if clip["clip_path"]:
            with storage.open_binary(clip["clip_path"]) as fh:
                media[clip["clip_id"]] = fh.read()
        elif clip["start_frame"] is not None and clip["end_frame"] is not None:
            ranges[clip["clip_id"]] = (int(clip["start_frame"]), int(clip["end_frame"]))
    if ranges:
        cut_dir = tempfile.mkdtemp(dir=tmp)
        try:
            out_paths = {clip_id: os.path.join(cut_dir, f"{clip_id}.mp4") for clip_id in ranges}
            with storage.open_binary(path) as fh:
                write_clips(fh, ranges, out_paths)
            for clip_id, out in out_paths.items():
                with open(out, "rb") as fh:
                    media[clip_id] = fh.read()
        finally:
            shutil.rmtree(cut_dir, ignore_errors=True)
    return media


def clip_meta(clip: dict, video_id: str, url: str | None) -> str:
    """The `.json` member: the clip's export row, times as seconds and as CSV timestamps."""
    return json.dumps({
        "clip_id": clip["clip_id"], "video_id": video_id, "url": url, "clip_idx": clip["clip_idx"],
        "start_s": clip["start_s"], "end_s": clip["end_s"],
        "timestamp": [format_timestamp(clip["start_s"]), format_timestamp(clip["end_s"])],
        "caption": clip["caption"], "teacher": clip["teacher"], "teacher_version": clip["teacher_version"],
        "matching_score": clip["matching_score"], "good_match": clip["good_match"],
        "desirable_filtering": clip["desirable_filtering"], "shot_boundary_detection": clip_shots(clip_record(clip)),
    }, ensure_ascii=False, sort_keys=True)


def publish(local: str, target: str) -> None:
    """Move a finished local file to `target` (a local path or an fsspec URI): a staging path,
    so neither needs to be atomic."""
    if storage.is_uri(target):
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        fs.put_file(local, path)
        os.remove(local)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(local, target)


# ---------------------------------------------------------------- driver-side file operations


def replace_files(pairs: list[tuple[str, str]]) -> None:
    """Publish staged files: each (staged, target) replaces target whole. Locally an os.replace
    (staging lies under the export root, on the same filesystem: atomic); on object stores a
    move of the whole object (the new object appears complete or not at all)."""
    if not pairs:
        return
    if not storage.is_uri(pairs[0][1]):
        for staged, target in pairs:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(staged, target)
        return
    import fsspec

    fs, _ = fsspec.core.url_to_fs(pairs[0][1])
    fs.mv([fsspec.core.url_to_fs(s)[1] for s, _ in pairs], [fsspec.core.url_to_fs(t)[1] for _, t in pairs])


def remove_files(targets: list[str]) -> None:
    """Delete files (local paths or URIs); a missing one is fine."""
    for target in targets:
        if storage.is_uri(target):
            import fsspec

            fs, path = fsspec.core.url_to_fs(target)
            if fs.exists(path):
                fs.rm_file(path)
        else:
            try:
                os.remove(target)
            except FileNotFoundError:
                pass


def write_text_atomic(target: str, text: str) -> None:
    """Replace `target` by `text` whole: a temporary file beside it and os.replace locally, one
    put of the whole object on object stores."""
    data = text.encode("utf-8")
    if storage.is_uri(target):
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a published file is not
        os.replace(tmp, target)
    except BaseException:
        remove_files([tmp])
        raise


def read_text(path: str) -> str | None:
    """The text of a small file, None when it does not exist."""
    try:
        with storage.open_binary(path) as fh:
            return fh.read().decode("utf-8")
    except FileNotFoundError:
        return None


def list_names(directory: str) -> list[str]:
    """Names of the entries of `directory` (a local dir or a URI); empty when it does not exist."""
    if not storage.is_uri(directory):
        try:
            return sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
    import fsspec

    fs, path = fsspec.core.url_to_fs(directory)
    try:
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
    tar.addfile(info, io.BytesIO(data))

"""Export writers run in tasks: Panda-70M CSV parts and webdataset tar shards. No Spark.

Both adapters take rows sorted by their output file (`part` / `shard`, every row of one file in the
same task), write each file locally, then publish it to the export's staging directory (a local
dir or an fsspec URI); the driver swaps the staging directories into place (:func:`swap_in`).
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
from panda_spark.dataset.panda70m import ClipRecord, build_row, clip_shots, csv_line, format_timestamp, header_line
from panda_spark.errors import InputError, MissingField
from panda_spark.video.decode import decode_failure

STATUS_SCHEMA = "file INT, video_id STRING, clips INT, status STRING, error_class STRING, message STRING"
_STATUS_COLUMNS = [c.split()[0] for c in STATUS_SCHEMA.split(", ")]


def csv_name(part: int) -> str:
    return f"panda70m_{part:05d}.csv"


def shard_name(shard: int) -> str:
    return f"{shard:06d}.tar"


def clip_record(clip: dict) -> ClipRecord:
    return ClipRecord(clip["start_s"], clip["end_s"], clip["caption"], clip["matching_score"],
                      clip["desirable_filtering"],
                      tuple((s["start_s"], s["end_s"]) for s in (() if clip["shots"] is None else clip["shots"])))


class _PartFiles:
    """The local file of the current part (rows come sorted by part), published to `out_dir` when
    the next part starts and at close."""

    def __init__(self, tmp: str, out_dir: str, name: Callable[[int], str], open_file: Callable[[str], Any]):
        self.tmp, self.out_dir, self.name, self.open_file = tmp, out_dir, name, open_file
        self.part, self.handle = None, None

    def __call__(self, part: int):
        if part != self.part:
            self.close()
            self.part, self.handle = part, self.open_file(os.path.join(self.tmp, self.name(part)))
        return self.handle

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            publish(self.handle.name, f"{self.out_dir}/{self.name(self.part)}")
            self.handle = None


def _open_csv(path: str):
    fh = open(path, "w", encoding="utf-8", newline="")
    fh.write(header_line())
    return fh


def write_csv_parts(batches: Iterator[pd.DataFrame], out_dir: str) -> Iterator[pd.DataFrame]:
    """Rows (part, video_id, url, clips[start_s, end_s, caption, matching_score,
    desirable_filtering, shots[start_s, end_s]]) sorted by part then video_id → one CSV per part."""
    with tempfile.TemporaryDirectory() as tmp:
        files = _PartFiles(tmp, out_dir, csv_name, _open_csv)
        for batch in batches:
            status = []
            for part, video_id, url, clips in zip(batch["part"], batch["video_id"], batch["url"], batch["clips"]):
                fh = files(part)
                try:
                    fh.write(csv_line(build_row(video_id, url, [clip_record(c) for c in clips])))
                    status.append((part, video_id, len(clips), "written", None, None))
                except (InputError, TypeError, ValueError) as exc:  # a bad stored value must not stop the export
                    status.append((part, video_id, 0, "error", *decode_failure(exc)))
            yield pd.DataFrame(status, columns=_STATUS_COLUMNS)
        files.close()


def write_shards(batches: Iterator[pd.DataFrame], out_dir: str) -> Iterator[pd.DataFrame]:
    """Rows (shard, video_id, path, url, clips[the CSV fields + clip_id, clip_idx, start_frame,
    end_frame, clip_path, teacher, teacher_version, good_match]) sorted by shard then video_id →
    one tar per shard with `<clip_id>.mp4|.txt|.json` per clip. A video's clips without a stored
    mp4 are cut from its source in one decode; a video that cannot be read is reported (its clips
    left out) and the shard goes on."""
    with tempfile.TemporaryDirectory() as tmp:
        tars = _PartFiles(tmp, out_dir, shard_name, lambda p: tarfile.open(p, "w", format=tarfile.PAX_FORMAT))
        for batch in batches:
            status = []
            for shard, video_id, path, url, clips in zip(batch["shard"], batch["video_id"], batch["path"], batch["url"],
                                                          batch["clips"]):
                tar = tars(shard)
                clips = sorted(clips, key=lambda c: (c["start_s"], c["clip_id"]))
                try:
                    media = clip_media(path, clips, tmp)
                except Exception as exc:  # one unreadable video must not stop the shard
                    status.append((shard, video_id, 0, "error", *decode_failure(exc)))
                    continue
                for clip in clips:
                    key = clip["clip_id"]  # a uuid: no dots (webdataset splits keys at the first one)
                    _add(tar, f"{key}.mp4", media[key])
                    _add(tar, f"{key}.txt", clip["caption"].encode("utf-8"))
                    _add(tar, f"{key}.json", clip_meta(clip, video_id, url).encode("utf-8"))
                status.append((shard, video_id, len(clips), "written", None, None))
            yield pd.DataFrame(status, columns=_STATUS_COLUMNS)
        tars.close()


def clip_media(path: str, clips: list[dict], tmp: str) -> dict[str, bytes]:
    """clip_id → mp4 bytes: the stored clip file where there is one, else cut from the source."""
    from panda_spark.video.clip_writer import write_clips

    media, ranges = {}, {}
    for clip in clips:
        if clip["clip_path"]:
            with storage.open_binary(clip["clip_path"]) as fh:
                media[clip["clip_id"]] = fh.read()
        elif clip["start_frame"] is None or clip["end_frame"] is None:
            raise MissingField(f"clip {clip['clip_id']} has no frame range to cut")
        else:
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
    """Move a finished local file to `target` (a local path or an fsspec URI)."""
    if storage.is_uri(target):
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        fs.put_file(local, path)
        os.remove(local)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(local, target)


def write_text(target: str, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".tmp", delete=False) as fh:
        fh.write(text)
    publish(fh.name, target)


def swap_in(staging: str, root: str, names: tuple[str, ...]) -> None:
    """Replace `root/<name>` by `staging/<name>` for each name (a name missing from staging is
    removed from root: the export is a snapshot), then drop staging. Locally each directory is
    swapped by two renames; object stores have no rename, so there the old copy is deleted first."""
    if not storage.is_uri(root):
        for name in names:
            target, new = os.path.join(root, name), os.path.join(staging, name)
            old = os.path.join(staging, f".old-{name}")
            if os.path.exists(target):
                os.replace(target, old)
            if os.path.exists(new):
                os.replace(new, target)
        shutil.rmtree(staging, ignore_errors=True)
        return
    import fsspec

    fs, root_path = fsspec.core.url_to_fs(root)
    _, staging_path = fsspec.core.url_to_fs(staging)
    for name in names:
        target, new = f"{root_path.rstrip('/')}/{name}", f"{staging_path.rstrip('/')}/{name}"
        if fs.exists(target):
            fs.rm(target, recursive=True)
        if fs.exists(new):
            fs.mv(new, target, recursive=True)
    if fs.exists(staging_path):
        fs.rm(staging_path, recursive=True)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
    tar.addfile(info, io.BytesIO(data))

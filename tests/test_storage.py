import os

import pytest

from panda_spark.errors import FileNotFound, PathNotAllowed
from panda_spark.storage import check_allowed, resolve_path, sha256_file, stat_file


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    assert resolve_path("videos/a.mp4", str(tmp_path)) == str(tmp_path / "videos" / "a.mp4")
    assert resolve_path("sub/../b.mp4", str(tmp_path)) == str(tmp_path / "b.mp4")
    assert resolve_path("file:///data/x.mp4", str(tmp_path)) == "/data/x.mp4"


def test_ids_and_names_starting_with_a_dash_are_plain_paths(tmp_path):
    assert resolve_path("--1ApFKwvjE.vtt", str(tmp_path)) == str(tmp_path / "--1ApFKwvjE.vtt")


def test_uris_are_normalised_not_touched_locally():
    assert resolve_path("s3://bucket/raw/../v/a.mp4", "/ignored") == "s3://bucket/v/a.mp4"
    assert resolve_path("clips/a.mp4", "s3://bucket/manifests") == "s3://bucket/manifests/clips/a.mp4"


def test_allowed_roots_reject_paths_outside_including_symlink_escapes(tmp_path):
    inside, outside = tmp_path / "allowed", tmp_path / "elsewhere"
    inside.mkdir(), outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    os.symlink(outside / "secret.mp4", inside / "link.mp4")
    check_allowed(resolve_path("ok.mp4", str(inside)), [str(inside)])
    for raw in ["../elsewhere/secret.mp4", "link.mp4", str(tmp_path / "allowed-but-not.mp4")]:
        with pytest.raises(PathNotAllowed, match="outside paths.allowed_roots"):
            check_allowed(resolve_path(raw, str(inside)), [str(inside)])
    with pytest.raises(PathNotAllowed):
        check_allowed("s3://other/a.mp4", ["s3://bucket"])
    check_allowed("s3://bucket/v/a.mp4", ["s3://bucket/"])


def test_stat_and_hash(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert stat_file(str(tmp_path / "a.bin")).size == 3
    assert sha256_file(str(tmp_path / "a.bin")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(FileNotFound):
        stat_file(str(tmp_path / "nope.mp4"))
    with pytest.raises(FileNotFound, match="not a regular file"):
        stat_file(str(tmp_path))


def test_dbfs_uris_are_read_through_the_fuse_mount():
    assert resolve_path("dbfs:/mnt/raw/a.mp4", "/ignored") == "/dbfs/mnt/raw/a.mp4"
    assert resolve_path("dbfs:///mnt/raw/../b.mp4", "/ignored") == "/dbfs/mnt/b.mp4"

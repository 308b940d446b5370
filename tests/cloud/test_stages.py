"""ingest → split → export through s3:// URIs against moto's S3 server on 127.0.0.1, on the local
Spark + Delta session. The store's endpoint and credentials come from the conf only
(`paths.storage_options`), so the executors' Python workers get them pickled with the tasks."""
import csv
import hashlib
import io
import json
import tarfile

import pandas as pd
from pyspark.sql import functions as F

from panda_spark.config import load_config
from panda_spark.dataset import export_stage
from panda_spark.ingest import stage as ingest
from panda_spark.spark import get_spark
from panda_spark.split import stage as split
from panda_spark.tables import Lakehouse
from tests.cloud.conftest import BUCKET
from tests.conftest import overrides_for, shared_data

ON_S3 = ("YemkZ7DLOBU.15", "4F0B-U_xwN0.23")  # short clips that split into clips
LOCAL = "uguibLEdeCU.12"


def test_ingest_split_and_export_read_and_write_s3_and_each_bad_row_is_its_own_error(s3, state_root, tmp_path):
    import fsspec

    clips = shared_data("panda70m_samples", "clips")
    fs = fsspec.filesystem("s3", **s3["s3"])
    fs.mkdir(BUCKET)
    for video_id in ON_S3:
        fs.put_file(str(clips / f"{video_id}.mp4"), f"{BUCKET}/clips/{video_id}.mp4")
    rows = [*[(v, f"s3://{BUCKET}/clips/{v}.mp4") for v in ON_S3], (LOCAL, str(clips / f"{LOCAL}.mp4")),
            ("gone", f"s3://{BUCKET}/clips/gone.mp4"), ("no-backend", "oci://bucket/a.mp4"),
            ("no-scheme", "nosuchscheme://bucket/a.mp4")]
    pd.DataFrame(rows, columns=["video_id", "path"]).to_csv(tmp_path / "manifest.csv", index=False)
    export_root = f"s3://{BUCKET}/export"
    cfg = load_config(None, [*overrides_for(state_root, "cloud_s3"), f"paths.storage_options={json.dumps(s3)}",
                             f"export.path={export_root}"])
    lake = Lakehouse(get_spark(cfg), cfg, "test")

    report = ingest.run(lake.spark, cfg, "r", manifest=str(tmp_path / "manifest.csv"))
    assert report.counts["ingested"] == 3 and report.errored == 3
    videos = {r.video_id: r for r in lake.read("videos").collect()}
    assert sorted(videos) == sorted([*ON_S3, LOCAL])
    for video_id in ON_S3:
        assert videos[video_id].content_hash == hashlib.sha256((clips / f"{video_id}.mp4").read_bytes()).hexdigest()
        assert videos[video_id].frame_count > 0
    errors = {r.key: r.error_class for r in lake.read("errors").filter(F.col("stage") == "ingest").collect()}
    assert errors == {"gone": "FileNotFound", "no-backend": "MissingBackend", "no-scheme": "UnknownScheme"}

    report = split.run(lake.spark, cfg, "r")
    assert report.errored == 0
    clip_rows = lake.read("clips").collect()
    assert {c.video_id for c in clip_rows} == {*ON_S3, LOCAL}
    captions = lake.spark.createDataFrame(
        [(c.clip_id, f"caption of {c.clip_id}", "t", "t@1", 0.5, True) for c in clip_rows],
        "clip_id string, caption string, teacher string, teacher_version string, matching_score double, "
        "good_match boolean")
    lake.merge("captions", captions.select("*", F.lit(None).cast("map<string,double>").alias("candidate_scores"),
                                           F.lit("scorer@1").alias("scorer_version"), F.lit("h").alias("candidates_hash"),
                                           F.current_timestamp().alias("selected_at")))

    report = export_stage.run(lake.spark, cfg, "export")
    assert report.errored == 0 and report.counts["shard_clips"] == len(clip_rows)
    fs.invalidate_cache()
    stored = sorted(p.split("/export/", 1)[1] for p in fs.find(f"{BUCKET}/export"))
    assert stored == ["_manifest.json", "panda70m/panda70m_00000.csv", "webdataset/000000.tar"]
    manifest = json.loads(fs.cat(f"{BUCKET}/export/_manifest.json"))
    for entry in manifest["files"]:
        assert hashlib.sha256(fs.cat(f"{BUCKET}/export/{entry['path']}")).hexdigest() == entry["sha256"]
    table = list(csv.DictReader(io.StringIO(fs.cat(f"{BUCKET}/export/panda70m/panda70m_00000.csv").decode())))
    assert sorted(r["videoID"] for r in table) == sorted([*ON_S3, LOCAL])
    with tarfile.open(fileobj=io.BytesIO(fs.cat(f"{BUCKET}/export/webdataset/000000.tar"))) as tar:
        names = tar.getnames()
        assert sorted(names) == sorted(f"{c.clip_id}.{ext}" for c in clip_rows for ext in ("mp4", "txt", "json"))
        assert all(tar.extractfile(n).read()[4:8] == b"ftyp" for n in names if n.endswith(".mp4"))

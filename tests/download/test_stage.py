"""The download stage on the local Spark + Delta session against the local media server:
imported rows → probed `videos` rows and classed `errors`; reruns fetch only what failed transiently."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from panda_spark.download import stage
from panda_spark.download.core import destination_path
from panda_spark.ingest.core import RESULT_SCHEMA, IngestOptions, ingest_row
from panda_spark.ingest.stage import as_videos
from panda_spark.pipeline import _skip_reason
from panda_spark.spark import get_spark
from panda_spark.tables import IMPORTED_ORIGIN, Lakehouse

SETTINGS = ["download.retries=0", "download.backoff_s=0.01", "download.requests_per_s_per_host=0",
            "download.concurrency_per_host=2", "download.partitions=2",
            "download.timeout_s=20"]
PROBED = ["path", "url", "duration_s", "fps", "fps_rational", "avg_fps", "frame_count", "width", "height", "codec",
          "pix_fmt", "container", "has_audio", "rotation", "bytes", "content_hash", "source_signature",
          "probe_version"]


def imported_rows(lake: Lakehouse, urls: dict[str, str]) -> None:
    """`videos` rows as import-panda-csv writes them: path = url, extra origin, no probe."""
    rows = [(video_id, url, url, {"origin": IMPORTED_ORIGIN, "desirable_filtering": '{"c1": "desirable"}'})
            for video_id, url in urls.items()]
    df = lake.spark.createDataFrame(rows, "video_id string, path string, url string, extra map<string,string>")
    lake.merge("videos", lake.complete("videos", df))


def test_download_probes_imported_videos_records_failures_and_reruns_only_transient_ones(
        spark, make_cfg, media_server, videos):
    cfg = make_cfg(*SETTINGS)
    lake = Lakehouse(get_spark(cfg), cfg, "run-1")
    urls = {"ok": media_server.url("v/a.mp4"), "-ok/b": media_server.url("v/b.mp4"),
            "gone": media_server.url("status/404/x.mp4"), "flaky": media_server.url("flaky/1/503/c.mp4"),
            "junk": media_server.url("bytes/4096")}
    imported_rows(lake, urls)
    ingested = str(videos["c.mp4"])  # a video ingest probed: it has a file, download leaves it alone
    probe = ingest_row({"video_id": "local", "path": ingested, "url": media_server.url("v/c.mp4"),
                        "manifest_dir": "", "manifest_row": 0}, IngestOptions())
    lake.merge("videos", as_videos(lake.spark.createDataFrame([asdict(probe)], RESULT_SCHEMA)))
    assert _skip_reason(lake, "download", {}) is None

    report = stage.run(lake.spark, cfg, "run-1")

    sizes = {name: path.stat().st_size for name, path in videos.items()}
    assert report.counts == {"videos": 5, "downloaded": 2, "bytes": sizes["a.mp4"] + sizes["b.mp4"], "errored": 3,
                             "skipped": 0, "errors.NotAVideo": 1, "errors.NotFound": 1, "errors.ServerError": 1}
    assert (report.rows_in, report.rows_out, report.errored) == (5, 2, 3)
    rows = {r.video_id: r for r in lake.read("videos").collect()}
    assert len(rows) == lake.read("videos").count() == 6
    for video_id, name in (("ok", "a.mp4"), ("-ok/b", "b.mp4")):
        row = rows[video_id]
        assert row.path == destination_path(f"{cfg.paths.root}/downloads", video_id, "mp4")
        assert open(row.path, "rb").read() == videos[name].read_bytes()
        assert row.extra == {"origin": IMPORTED_ORIGIN, "desirable_filtering": '{"c1": "desirable"}'}
        expected = ingest_row({"video_id": video_id, "path": row.path, "url": urls[video_id], "title": None,
                               "description": None, "extra_json": json.dumps(row.extra, separators=(",", ":")),
                               "manifest_dir": "", "manifest_row": 0}, IngestOptions())
        assert expected.status == "ingested"
        assert {c: getattr(row, c) for c in PROBED} == {c: getattr(expected, c) for c in PROBED}
        assert row.file_mtime.timestamp() == pytest.approx(expected.file_mtime, abs=1e-5)  # stored in µs
    assert rows["gone"].probe_version is None and rows["gone"].path == urls["gone"]
    assert rows["local"].path == ingested and media_server.hits["/v/c.mp4"] == 0
    errors = {r.key: r for r in lake.read("errors").filter("stage = 'download'").collect()}
    assert {k: r.error_class for k, r in errors.items()} == {"gone": "NotFound", "flaky": "ServerError",
                                                             "junk": "NotAVideo"}
    assert json.loads(errors["gone"].input_snapshot)["url"] == urls["gone"]
    hits = dict(media_server.hits)

    again = stage.run(lake.spark, cfg, "run-2")  # only the transient failure is tried again

    assert again.counts == {"videos": 1, "downloaded": 1, "bytes": sizes["c.mp4"], "errored": 0, "skipped": 2}
    assert media_server.hits["/flaky/1/503/c.mp4"] == hits["/flaky/1/503/c.mp4"] + 1
    assert {p: n for p, n in media_server.hits.items() if p != "/flaky/1/503/c.mp4"} == \
           {p: n for p, n in hits.items() if p != "/flaky/1/503/c.mp4"}
    assert lake.read("videos").filter("video_id = 'flaky'").first().probe_version is not None
    assert {r.key for r in lake.read("errors").filter("stage = 'download'").collect()} == {"gone", "junk"}
    assert _skip_reason(lake, "download", {}) is not None  # a pipeline run skips the stage

    retried = stage.run(lake.spark, cfg, "run-3", retry_failed=True)

    assert (retried.counts["videos"], retried.counts["errored"], retried.counts["skipped"]) == (2, 2, 0)
    assert media_server.hits["/status/404/x.mp4"] == hits["/status/404/x.mp4"] + 1
    assert media_server.hits["/v/a.mp4"] == hits["/v/a.mp4"]  # a downloaded video is never fetched again

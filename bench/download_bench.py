"""Download throughput: the stage's download path against a plain downloader loop, same server, same concurrency.

A local server (tests/download/server.py) serves the clips of a directory, each `--repeat` times
under distinct URLs, every response capped at `--mbps` MB/s (one stream of a video site). Timed,
in one run, each with `--concurrency` downloads at once (one host: the stage's per-host limit,
no rate limit):

- reference: a thread pool of plain `requests` GETs streamed to files (`--backend yt-dlp`: one
  `yt_dlp.YoutubeDL` download per URL), nothing else;
- ours, core: `panda_spark.download.core.download_rows`, what each of the stage's tasks runs
  (lanes, fetch, the ingest probe and content hash, publish);
- ours, Spark tasks: the stage's Spark job alone (lanes dealt, `mapInPandas` of download_batch);
- ours, stage: `panda-spark download` end to end on a scratch lakehouse (the Spark tasks plus the
  Delta commits of `videos` and `errors`: a fixed cost per wave, which long downloads amortise).

Prints videos/s and MB/s of each and the ratios ours/reference (target ≥ 0.9).

    PYTHONPATH=. .venv/bin/python bench/download_bench.py [DIR] [--repeat 2] [--concurrency 8] [--mbps 2]
        [--backend http|yt-dlp] [--no-spark]     # DIR default: ../shared/data/panda70m_samples/clips
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from panda_spark.download.core import DownloadOptions, download_rows
from tests.download.server import MediaServer

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panda70m_samples" / "clips"


def reference_http(urls: list[str], out: str, concurrency: int) -> None:
    def get(i_url):
        i, url = i_url
        with requests.get(url, stream=True, timeout=60) as response, open(f"{out}/{i}.mp4", "wb") as fh:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                fh.write(chunk)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, enumerate(urls)))


def reference_ytdlp(urls: list[str], out: str, concurrency: int) -> None:
    import yt_dlp

    def get(i_url):
        i, url = i_url
        params = {"outtmpl": {"default": f"{out}/{i}.%(ext)s"}, "quiet": True, "no_warnings": True,
                  "noprogress": True, "format": "b"}
        with yt_dlp.YoutubeDL(params) as ydl:
            ydl.download([url])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, enumerate(urls)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_spark(urls: list[str], args) -> tuple[float, float]:
    """Seconds of (the stage's Spark tasks alone: lanes, mapInPandas, no table written; `panda-spark
    download` end to end) over `urls` as imported rows, Spark started beforehand."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_session import scratch_session
    from panda_spark.download import stage
    from panda_spark.tables import IMPORTED_ORIGIN, Lakehouse

    root, cfg, spark = scratch_session("download_bench_", f"download.backend={args.backend}",
                                       f"download.concurrency_per_host={args.concurrency}",
                                       "download.requests_per_s_per_host=0", "download.retries=0")

    def rows(prefix: str, urls: list[str]):
        return spark.createDataFrame([(f"{prefix}{i}", url, None, None, "{}") for i, url in enumerate(urls)],
                                     "video_id string, url string, title string, description string, "
                                     "extra_json string")

    options = DownloadOptions.from_settings(cfg.download, f"{root}/tasks")
    # warm every Python worker (its imports, yt-dlp's extractors) as a long-running job's are
    stage.fetched(rows("warm", [f"{u}&warm" for u in urls[:4 * args.concurrency]]), cfg, options).count()
    tasks_s = timed(lambda: stage.fetched(rows("v", urls), cfg, options).filter("status = 'downloaded'").count())
    lake = Lakehouse(spark, cfg, "bench")
    df = spark.createDataFrame([(f"v{i}", url, url, {"origin": IMPORTED_ORIGIN}) for i, url in enumerate(urls)],
                               "video_id string, path string, url string, extra map<string,string>")
    lake.merge("videos", lake.complete("videos", df))
    reports = []
    stage_s = timed(lambda: reports.append(stage.run(spark, cfg, "bench")))
    assert reports[0].counts["downloaded"] == len(urls), reports[0].counts
    return tasks_s, stage_s


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mbps", type=float, default=2.0, help="MB/s per response (0: unthrottled)")
    parser.add_argument("--backend", choices=("http", "yt-dlp"), default="http")
    parser.add_argument("--no-spark", action="store_true", help="only the reference and the core")
    args = parser.parse_args(argv)
    files = {p.name: p for p in sorted(Path(args.dir).glob("*.mp4"))}
    if not files:
        print(f"no .mp4 files under {args.dir}", file=sys.stderr)
        return 1
    megabytes = args.repeat * sum(p.stat().st_size for p in files.values()) / 1e6
    with MediaServer(files, bytes_per_s=args.mbps * 1e6) as server:
        urls = [server.url(f"v/{name}?copy={r}") for r in range(args.repeat) for name in files]
        print(f"videos: {len(urls)}, {megabytes:.1f} MB, concurrency {args.concurrency}, "
              f"{args.mbps:g} MB/s per response, backend {args.backend}")
        scratch = tempfile.mkdtemp(prefix="download_bench_")
        reference = reference_http if args.backend == "http" else reference_ytdlp
        ref_s = timed(lambda: reference(urls, scratch, args.concurrency))
        options = DownloadOptions(f"{scratch}/store", backend=args.backend, concurrency_per_host=args.concurrency,
                                  requests_per_s_per_host=0, retries=0)
        rows = [{"video_id": f"v{i}", "url": url} for i, url in enumerate(urls)]
        results = []
        core_s = timed(lambda: results.extend(download_rows(rows, options)))
        assert all(r.status == "downloaded" for r in results), [r.message for r in results if r.message][:3]
        shutil.rmtree(scratch, ignore_errors=True)
        lines = [("reference loop", ref_s), ("ours, core", core_s)]
        if not args.no_spark:
            tasks_s, stage_s = run_spark(urls, args)
            lines += [("ours, Spark tasks", tasks_s), ("ours, stage (+ Delta commits)", stage_s)]
    for label, seconds in lines:
        print(f"{label:30s}: {len(urls) / seconds:7.2f} videos/s  {megabytes / seconds:7.2f} MB/s  ({seconds:.1f} s)")
    for label, seconds in lines[1:]:
        print(f"ratio {label} / reference: {ref_s / seconds:.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.exit(main(sys.argv[1:]))

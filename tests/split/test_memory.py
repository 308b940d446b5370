"""The streaming split returns the rows of the plain whole-video split, holding a number of sample
frames that does not grow with the video."""
import numpy as np
import pytest

from bench.split_memory import write_synthetic_video
from panda_spark.demo.synthetic import render_demo_sources
from panda_spark.split.core import SplitParams, split_scan, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.scan import scan_video
from panda_spark.split.stitching import stitch_params
from tests.conftest import shared_data

PARAMS = {
    "released_code": SplitParams("released_code", stitch=stitch_params("released_code")),
    "panda70m": SplitParams(),  # cuts events at 60 s, trims, drops redundant
    # drops most events as redundant: their frames, picked while streaming, go unused
    "redundant": SplitParams("panda70m", stitch=stitch_params("panda70m", redundancy_threshold=1.5)),
}
# the slides barely move: without the still check, their one 123 s event is a clip, cut at 60 s
SLIDES = SplitParams("panda70m", stitch=stitch_params("panda70m", still_threshold=0.0))
LONG_TAKE = (3.0, 4.5, 100.0, 2.5, 6.0)  # shot lengths (s): a 100 s take, cut every 5 s and stitched back


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("memory")
    paths = {
        "aerial": str(shared_data("videos", "aerial_city.mp4")),
        "slides": str(shared_data("videos", "slides_1080p.mp4")),
        "city": str(render_demo_sources(folder)[0].path),  # a cross-fade (dropped) and a still event
    }
    for name, seconds, shots in (("synthetic_30s", 30, None), ("synthetic_3min", 180, None),
                                 ("long_take", 120, LONG_TAKE)):
        extra = {"shot_seconds": shots} if shots else {}
        paths[name] = str(write_synthetic_video(folder / f"{name}.mp4", seconds, **extra))
    return paths


@pytest.fixture(scope="module")
def whole_scans(videos):
    """scan_video of each video, made once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = scan_video(videos[name], SplitParams().scan)
        return cache[name]
    return get


def assert_same_rows(streamed, whole):
    assert streamed.shots == whole.shots
    assert streamed.clips == whole.clips  # ids, ranges, embeddings (floats compared exactly)
    assert [(r["clip_id"], r["frame_idx"], r["frame_number"], r["role"]) for r in streamed.clip_frames] == \
        [(r["clip_id"], r["frame_idx"], r["frame_number"], r["role"]) for r in whole.clip_frames]
    assert streamed.clip_frames == whole.clip_frames  # and the same JPEG bytes


@pytest.mark.parametrize("video, params", [
    *[pytest.param(v, params, id=f"{v}-{p}") for v in ("aerial", "city", "synthetic_3min", "long_take")
      for p, params in PARAMS.items()],
    pytest.param("slides", SLIDES, id="slides-panda70m-no-still"),  # 1080p, slow to decode: one case
])
def test_streaming_split_returns_the_whole_video_rows(videos, whole_scans, video, params):
    streamed = split_video(video, videos[video], ColorLayoutEmbedder(), params)
    whole = split_scan(video, whole_scans(video), ColorLayoutEmbedder(), params)
    assert whole.clips and len(whole.clip_frames) == 9 * len(whole.clips)
    assert_same_rows(streamed, whole)
    assert whole.peak_samples == len(whole_scans(video).samples)


def test_samples_held_do_not_grow_with_the_video(videos, whole_scans):
    released = PARAMS["released_code"]  # every event a clip: the most samples to hold
    short = split_video("short", videos["synthetic_30s"], ColorLayoutEmbedder(), released)
    long = split_video("long", videos["synthetic_3min"], ColorLayoutEmbedder(), released)
    assert len(long.clips) >= 40 and len(short.clips) >= 7
    assert long.peak_samples <= short.peak_samples + 4
    # a clip's frames are picked once the next shot is known: about two shots' samples (≤ 10.5 s) are held
    assert long.peak_samples <= 11 * 25 / 6 + 4
    assert len(whole_scans("synthetic_3min").samples) == 750  # what the whole-video split holds


def test_a_long_take_holds_samples_of_max_len_only(videos):
    params = PARAMS["panda70m"]  # events cut at 60 s
    result = split_video("take", videos["long_take"], ColorLayoutEmbedder(), params)
    take = [c for c in result.clips if c["end_frame"] - c["start_frame"] > 60 * 25 * 0.7]
    assert len(take) == 1  # the 100 s take is one clip, cut to 60 s and trimmed
    # its first 60 s, plus the part of the take that force_cuts may still cut differently (7 s and
    # the detector's 15 frame delay); the take itself has 100 s × 25 / 6 ≈ 417 samples
    max_len, open_piece = 60 * 25, 7 * 25 + 15
    assert result.peak_samples <= (max_len + open_piece) / 6 + 4 < 100 * 25 / 6


class BatchDependentEmbedder:
    """Rows that depend on the rest of their batch, as a model's may where kernels are chosen by
    batch shape; batches of `batch_size` frames, as `TransformersImageEmbedder` runs them."""

    name = "batch-dependent-test"
    batch_size = 16

    def embed(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.batch_size):
            rows = ColorLayoutEmbedder().embed(frames[start:start + self.batch_size])
            rows = rows + 0.05 * rows.mean(axis=0)
            out.append(rows / np.linalg.norm(rows, axis=1, keepdims=True))
        return np.concatenate(out)


def test_a_model_embeds_in_the_batches_of_one_call_over_the_whole_video(videos, whole_scans):
    embedder = BatchDependentEmbedder()
    scan = whole_scans("synthetic_3min")
    frames = np.stack(list(scan.embed_frames.values())[:20])
    assert not np.array_equal(embedder.embed(frames)[:2], embedder.embed(frames[:2]))  # the test can fail
    streamed = split_video("v", videos["synthetic_3min"], embedder, PARAMS["released_code"])
    whole = split_scan("v", scan, embedder, PARAMS["released_code"])
    assert len(whole.clips) >= 40
    assert_same_rows(streamed, whole)

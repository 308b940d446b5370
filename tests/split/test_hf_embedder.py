import numpy as np
import pytest

from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.hf_embedder import TransformersImageEmbedder
from tests.models.tiny import tiny_clip


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def test_a_saved_clip_model_embeds_frames_into_unit_vectors(clip_dir):
    embedder = TransformersImageEmbedder(str(clip_dir), device="cpu", batch_size=3)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    feats = embedder.embed(frames)
    assert feats.shape == (5, 16) and feats.dtype == np.float32
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedder.embed(frames[2:4]), feats[2:4], atol=1e-5)  # batching does not matter
    assert np.linalg.norm(feats[0] - feats[1]) > 1e-3  # it sees the pixels
    assert embedder.name == f"hf:{clip_dir}@default" and embedder.device == "cpu"


def test_the_split_core_runs_with_a_transformers_embedder(clip_dir, tmp_path):
    from panda_spark.demo.synthetic import render_demo_sources

    video = render_demo_sources(tmp_path)[2]
    result = split_video(video.video_id, str(video.path), TransformersImageEmbedder(str(clip_dir)), SplitParams())
    assert [s["start_frame"] for s in result.shots if not s["forced"]] == [0, *video.hard_cuts]
    assert all(len(c["embedding"]) == 16 for c in result.clips)

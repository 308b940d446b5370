"""The single decode pass on real videos: same cuts as the scenedetect package, exact shot frames."""
import numpy as np
import pytest

from panda_spark.split.scan import ScanParams, scan_video
from panda_spark.split.stitching import shot_embedding_frames
from tests.conftest import shared_data


def detected_cuts(scan) -> list[int]:
    return [s.start_frame for s in scan.shots if s.start_frame > 0 and not s.forced]


def scenedetect_cuts(path, threshold) -> list[int]:
    scenedetect = pytest.importorskip("scenedetect")
    scenes = scenedetect.detect(str(path), scenedetect.ContentDetector(threshold=threshold, min_scene_len=15),
                                start_in_scene=True)
    return [start.frame_num for start, _ in scenes[1:]]


@pytest.fixture(scope="module")
def aerial():
    path = shared_data("videos", "aerial_city.mp4")
    return path, scan_video(str(path), ScanParams(threshold=25))


@pytest.fixture(scope="module")
def slides_12():
    path = shared_data("videos", "slides_1080p.mp4")
    return path, scan_video(str(path), ScanParams(threshold=12))


def test_aerial_city_has_one_cut_at_334_as_scenedetect_finds(aerial):
    path, scan = aerial
    assert detected_cuts(scan) == [334] == scenedetect_cuts(path, 25)
    assert scan.frame_count == 632 and scan.fps == pytest.approx(29.97, abs=0.01)


def test_slides_cut_only_at_threshold_12_as_scenedetect_finds(slides_12):
    path, scan = slides_12
    assert detected_cuts(scan) == [2096, 2698, 2785, 3015] == scenedetect_cuts(path, 12)
    assert scan.scores.max() < 25  # so threshold 25 finds no cut: the slides stay one long take


def test_every_shot_gets_its_exact_5_and_95_percent_frames(aerial, slides_12):
    for _, scan in (aerial, slides_12):
        assert scan.shots[0].start_frame == 0 and scan.shots[-1].end_frame == scan.frame_count
        assert all(a.end_frame == b.start_frame for a, b in zip(scan.shots, scan.shots[1:]))
        wanted = {i for s in scan.shots for i in shot_embedding_frames(s.start_frame, s.end_frame)}
        assert wanted == set(scan.embed_frames)  # all of them, and nothing else kept
        assert all(f.shape == (224, 224, 3) and f.dtype == np.uint8 for f in scan.embed_frames.values())


def test_forced_cuts_split_long_takes(slides_12):
    _, scan = slides_12
    assert max(s.end_frame - s.start_frame for s in scan.shots) <= 7 * 30
    assert [s.start_frame for s in scan.shots[:3]] == [0, 150, 300] and scan.shots[1].forced


def test_frames_are_sampled_every_quarter_second_as_jpeg(aerial):
    _, scan = aerial
    assert sorted(scan.samples) == list(range(0, 632, 7))  # round(29.97 / 4) = 7
    assert scan.sample_size == (398, 224)
    assert all(jpeg[:2] == b"\xff\xd8" for jpeg in scan.samples.values())


def scenedetect_scores(path, downscale: int) -> np.ndarray:
    """scenedetect's per-frame content score (`content_val`) at a given downscale factor."""
    scenedetect = pytest.importorskip("scenedetect")
    video = scenedetect.open_video(str(path))
    manager = scenedetect.SceneManager(scenedetect.StatsManager())
    manager.auto_downscale, manager.downscale = False, downscale
    manager.add_detector(scenedetect.ContentDetector(threshold=25, min_scene_len=15))
    manager.detect_scenes(video)
    stats, base = manager.stats_manager, video.base_timecode
    return np.array([stats.get_metrics(base + i, ["content_val"])[0] or 0.0 for i in range(video.frame_number)])


def test_auto_analysis_scores_the_frames_scenedetect_scores(aerial):
    path, scan = aerial  # 640×360: PySceneDetect 0.6 scores it at 320×180 (factor 640 // 256 = 2)
    reference = scenedetect_scores(path, 2)
    assert len(reference) == len(scan.scores)
    assert np.abs(scan.scores - reference).max() < 0.01
    fixed = scan_video(str(path), ScanParams(threshold=25, analysis_size="fixed", keep_frames=False))
    assert np.abs(fixed.scores - reference).mean() > 0.1  # 128×72 in the decoder: the fast approximation
    assert detected_cuts(fixed) == [334]

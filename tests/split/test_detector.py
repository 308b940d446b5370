import numpy as np
import pytest

from panda_spark.split.detector import (CutFilter, Shot, detect_cuts, force_cuts, scenedetect_size,
                                         shots_from_cuts)


def scores_with(peaks: dict[int, float], n: int = 200) -> np.ndarray:
    scores = np.zeros(n)
    for frame, value in peaks.items():
        scores[frame] = value
    return scores


@pytest.mark.parametrize("mode", ["suppress", "merge"])
def test_a_cut_needs_min_scene_len_frames_since_the_start_and_the_last_cut(mode):
    assert detect_cuts(scores_with({10: 50, 40: 50, 50: 50, 70: 50}), 27, 15, mode) == [40, 70]


def test_threshold_is_inclusive():
    assert detect_cuts(scores_with({30: 27.0, 60: 26.99}), 27, 15) == [30]


def test_cuts_closer_than_min_scene_len_merge_into_their_last_frame():
    # after the cut at 100, a burst 102..118 merges into one cut at its last frame once it has
    # lasted min_scene_len frames; a shorter burst (102..116) is swallowed
    burst = {30: 50, 100: 50, **{f: 50 for f in range(102, 119, 2)}}
    assert detect_cuts(scores_with(burst), 27, 15, "merge") == [30, 100, 118]
    del burst[118]
    assert detect_cuts(scores_with(burst), 27, 15, "merge") == [30, 100]


def test_suppress_counts_from_the_last_cut_not_the_last_frame_above_threshold():
    # the default, PySceneDetect < 0.6.4: frames above threshold within 15 frames of a cut are
    # dropped, and the next frame above threshold 15 frames after the cut is a cut again
    burst = {30: 50, 100: 50, **{f: 50 for f in range(102, 119, 2)}}
    assert detect_cuts(scores_with(burst), 27, 15) == [30, 100, 116]


def test_unknown_flash_filter_is_refused():
    with pytest.raises(ValueError, match="'flash'.*'suppress', 'merge'"):
        CutFilter(27, 15, "flash")


def test_cut_filter_reports_a_merged_cut_min_scene_len_frames_late():
    flt = CutFilter(27, 15, "merge")
    reports = [(i, flt.push(s)) for i, s in enumerate(scores_with({30: 50, 40: 50, 60: 5}))]
    assert [(i, c) for i, c in reports if c is not None] == [(30, 30)]


def test_shots_and_forced_cuts_follow_the_released_code():
    scores = scores_with({300: 40.0}, n=1000)
    shots = shots_from_cuts([300], 1000, scores)
    assert shots == [Shot(0, 300, False, 0.0), Shot(300, 1000, False, 40.0)]
    # 25 fps: shots > 175 frames are cut every 125 frames, recursively
    forced = force_cuts(shots, fps=25.0)
    assert [(s.start_frame, s.end_frame, s.forced) for s in forced] == [
        (0, 125, False), (125, 300, True), (300, 425, False), (425, 550, True), (550, 675, True),
        (675, 800, True), (800, 925, True), (925, 1000, True)]
    assert forced[2].cut_score == 40.0 and forced[3].cut_score == 0.0


def test_forced_step_truncates_like_the_released_code():
    forced = force_cuts([Shot(0, 400, False, 0.0)], fps=29.97)
    assert [s.start_frame for s in forced] == [0, 149, 298]  # int(5 * 29.97) = 149; 102 frames ≤ 7 s stay


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_inputs(n):
    assert detect_cuts(np.zeros(n)) == []


@pytest.mark.parametrize("mode", ["suppress", "merge"])
def test_cut_filter_equals_scenedetect_content_detector_on_random_scores(mode):
    """Our filter vs the installed scenedetect's ContentDetector(filter_mode=...) fed the same scores."""
    scenedetect = pytest.importorskip("scenedetect")
    from scenedetect.detector import FlashFilter

    rng = np.random.default_rng(7)
    for trial in range(200):
        scores = np.where(rng.random(300) < rng.uniform(0.01, 0.3), rng.uniform(20, 60, 300), 0.0)
        min_len = int(rng.integers(1, 30))
        detector = scenedetect.ContentDetector(27.0, min_len, filter_mode=FlashFilter.Mode[mode.upper()])
        detector._calculate_frame_score = lambda timecode, frame: scores[timecode.frame_num]
        expected = []
        for frame in range(len(scores)):
            expected += [t.frame_num for t in detector.process_frame(scenedetect.FrameTimecode(frame, fps=25.0), None)]
        assert detect_cuts(scores, 27.0, min_len, mode) == sorted(set(expected)), (trial, min_len)


def test_suppress_is_the_pre_0_6_4_content_detector():
    """PySceneDetect ≤ 0.6.3 `ContentDetector.process_frame`, which built Panda-70M, restated:
    `_last_scene_cut` starts at the first frame; a frame at or above the threshold is a cut when
    `frame - _last_scene_cut >= min_scene_len`, and then becomes `_last_scene_cut`."""
    rng = np.random.default_rng(11)
    for trial in range(200):
        scores = np.where(rng.random(300) < rng.uniform(0.01, 0.3), rng.uniform(20, 60, 300), 0.0)
        min_len, last_cut, expected = int(rng.integers(1, 30)), 0, []
        for frame, score in enumerate(scores):
            if score >= 27.0 and frame - last_cut >= min_len:
                expected.append(frame)
                last_cut = frame
        assert detect_cuts(scores, 27.0, min_len, "suppress") == expected, trial


@pytest.mark.parametrize("size, scaled", [
    ((1280, 720), (256, 144)), ((1920, 1080), (274, 154)), ((640, 360), (320, 180)), ((256, 144), (256, 144)),
    ((200, 100), (200, 100)), ((1000, 563), (333, 188)), ((720, 1280), (360, 640)), ((3840, 2160), (256, 144))])
def test_scenedetect_size_is_the_0_6_auto_downscale(size, scaled):
    assert scenedetect_size(*size) == scaled
    scene_manager = pytest.importorskip("scenedetect.scene_manager")
    if size[0] >= size[1] and size[0] % 256 == 0:  # where 0.7's float factor from the long side agrees
        factor = scene_manager.compute_downscale_factor(max(size))
        assert (round(size[0] / factor), round(size[1] / factor)) == scaled

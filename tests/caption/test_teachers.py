"""Each adapter through the real processor + generate path of its tiny random model."""
import cv2
import numpy as np
import pytest

from panda_spark.caption.inputs import teacher_inputs
from panda_spark.caption.teachers import Teacher, load_teacher, _LOADED
from panda_spark.config import TeacherSettings, load_config
from tests.conftest import shared_data


def jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (224, 398, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def clip_frames(seed: int) -> list[dict]:
    return [{"frame_idx": i, "role": "uniform" if i < 8 else "keyframe", "jpeg": jpeg(seed * 10 + i)} for i in range(9)]


CUES = [{"start_s": 0.0, "end_s": 3.0, "text": "we are making pasta today"}]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("index", range(4))
def test_every_default_teacher_captions_a_batch_deterministically(index, cache_dir):
    spec = load_config(None).caption.teachers[index]
    teacher = Teacher(spec, cache_dir)
    items = [teacher_inputs(f"c{seed}", clip_frames(seed), CUES, 0.0, 3.0, "Pasta", "A quick dinner", spec, 50, 50,
                            captions={"blip2-tiny": f"a pot of pasta number {seed}"}) for seed in (1, 2)]
    captions = teacher.caption(items)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert teacher.caption(items) == captions  # greedy: the same clips give the same captions
    assert teacher.caption(items[:1]) == captions[:1]  # batching (padding) does not change a caption
    if "subtitles" in spec.inputs:
        assert "we are making pasta today" in items[0].prompt
    if spec.upstream:  # text-llm-tiny reads blip2-tiny's caption (VideoChat-Text)
        assert '"a pot of pasta number 1"' in items[0].prompt and "pasta number 2" in items[1].prompt


@pytest.fixture(scope="module")
def real_frames() -> list[list[dict]]:
    """Two clips' clip_frames rows (8 uniform + a keyframe, JPEG) from the first seconds of a real video."""
    import av

    from panda_spark.video.frames import encode_jpeg

    with av.open(str(shared_data("videos", "aerial_city.mp4"))) as container:
        images = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(90), container.decode(video=0))]
    return [[{"frame_idx": i, "role": "uniform" if i < 8 else "keyframe", "jpeg": encode_jpeg(images[start + 5 * i])}
             for i in range(9)] for start in (0, 45)]


@pytest.mark.parametrize("family, adapter, inputs", [
    ("instructblip", "instructblip", ["frame", "subtitles", "metadata"]),  # the MiniGPT-4 stand-in
    ("llava-next-video", "image-text-to-text", ["video", "subtitles", "metadata"]),
    ("video-llava", "image-text-to-text", ["video", "metadata"]),
    ("video-llava", "image-text-to-text", ["frame"]),  # the same adapter, one image
    ("qwen2-vl", "image-text-to-text", ["video"]),  # qwen2-vl's adapter under its general name
])
def test_more_teacher_families_caption_real_frames(family, adapter, inputs, real_frames, cache_dir):
    spec = TeacherSettings(name=family, model=f"tiny:{family}", adapter=adapter, inputs=inputs, max_new_tokens=8)
    teacher = Teacher(spec, cache_dir)
    assert type(teacher.adapter.model).__name__ == {
        "instructblip": "InstructBlipForConditionalGeneration", "qwen2-vl": "Qwen2VLForConditionalGeneration",
        "llava-next-video": "LlavaNextVideoForConditionalGeneration",
        "video-llava": "VideoLlavaForConditionalGeneration"}[family]
    items = [teacher_inputs(f"c{i}", frames, CUES, 0.0, 3.0, "Aerial city", "A river runs through it", spec, 50, 50)
             for i, frames in enumerate(real_frames)]
    assert [len(item.frames) for item in items] == [1 if "frame" in inputs else 8] * 2
    adapter = teacher.adapter  # its three steps, one after the other
    batch = adapter.to_device(adapter.preprocess(items))
    captions = adapter.postprocess(adapter.forward(batch), batch)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)
    assert teacher.caption(items) == captions  # greedy
    assert teacher.caption(items[1:]) == captions[1:]  # left padding in a batch does not change a caption


def test_workers_keep_at_most_three_models_resident(cache_dir):
    _LOADED.clear()
    teachers = load_config(None).caption.teachers
    first = load_teacher(teachers[0], cache_dir)
    assert load_teacher(teachers[0], cache_dir) is first  # loaded once
    for spec in teachers[1:]:
        load_teacher(spec, cache_dir)
    assert len(_LOADED) == 3 and teachers[0].name not in {t.spec.name for t in _LOADED.values()}


def test_gpu_resource_profiles_are_requested_on_clusters_only():
    from panda_spark.spark import gpu_profile
    from tests.conftest import REPO

    local = load_config(None)
    assert gpu_profile(local, local.caption.task_gpus, local.caption.executor_gpus) == {}
    cluster = load_config(REPO / "conf" / "databricks.yaml")
    profile = gpu_profile(cluster, cluster.caption.task_gpus, cluster.caption.executor_gpus)["profile"]
    # dynamic allocation off (TorchDistributor): a task-only profile on the executors there are
    assert profile.taskResources["gpu"].amount == 1.0 and profile.executorResources == {}
    cluster.spark.dynamic_allocation = True
    profile = gpu_profile(cluster, cluster.caption.task_gpus, cluster.caption.executor_gpus)["profile"]
    assert profile.taskResources["gpu"].amount == 1.0 and profile.executorResources["gpu"].amount == 1

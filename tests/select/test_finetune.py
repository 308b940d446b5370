"""Selector fine-tuning core without Spark: the loss's weights, and R@1 rising on a seeded label set."""
import math
import os

import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from panda_spark.select.finetune import FinetuneParams, retrieval_loss, train_selector
from panda_spark.splits import is_held_out  # noqa: E402
from panda_spark.select.scorers import DualEncoder  # noqa: E402
from tests.select.colors import color_clips  # noqa: E402


def test_loss_weighs_hard_and_in_batch_negatives_as_configured():
    videos = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    texts = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.5, 0.5], [0.1, 1.0], [0.9, 0.1]]), dim=-1)
    owner = torch.tensor([0, 0, 1, 1])
    positive = torch.tensor([0, 2])
    scale = 10.0
    logits = scale * videos @ texts.T

    def expected(weights):
        rows = []
        for b in range(2):
            terms = [w * math.exp(logits[b, j]) for j, w in enumerate(weights[b])]
            rows.append(-math.log(math.exp(logits[b, positive[b]]) / sum(terms)))
        return sum(rows) / 2

    got = retrieval_loss(videos, texts, owner, positive, scale, 1.0, 0.01)
    assert float(got) == pytest.approx(expected([[1, 1, 0.01, 0.01], [0.01, 0.01, 1, 1]]), rel=1e-5)
    only_own = retrieval_loss(videos, texts, owner, positive, scale, 1.0, 0.0)  # in-batch negatives off
    assert float(only_own) == pytest.approx(expected([[1, 1, 0, 0], [0, 0, 1, 1]]), rel=1e-5)
    assert float(got) > float(only_own)


def test_held_out_split_is_deterministic_and_near_the_fraction():
    ids = [f"clip-{i}" for i in range(2000)]
    held = [c for c in ids if is_held_out(c, 0.2)]
    assert held == [c for c in ids if is_held_out(c, 0.2)]
    assert 0.17 < len(held) / len(ids) < 0.23


def test_fine_tuning_raises_held_out_r1_on_a_seeded_label_set(tmp_path):
    encoder = DualEncoder("tiny:clip", cache_dir=str(tmp_path), device="cpu", dtype="float32")
    train, val = color_clips(48, seed=1), color_clips(16, seed=2)
    params = FinetuneParams(num_frames=2, epochs=4, batch_size=8, learning_rate=2e-3, seed=0)
    epochs = []
    result = train_selector(encoder, lambda epoch: train, lambda epoch: val, params,
                            on_epoch=lambda epoch, metrics: epochs.append((epoch, metrics)))
    assert result.r1_before < 0.5  # a random selector: about chance over 4 candidates
    assert result.r1_after >= 0.9 and result.r1_after > result.r1_before
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert [e for e, _ in epochs] == [0, 1, 2, 3, 4] and epochs[0][1] == {"val_r1": result.r1_before}
    assert (result.train_examples, result.val_examples) == (48, 16)

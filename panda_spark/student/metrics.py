"""Caption metrics with the COCO caption evaluation code (pycocoevalcap). No Spark.

BLEU-4, METEOR, ROUGE-L and CIDEr of candidate captions against one or more references per item,
after the PTB tokenizer, as published captioning results report them. METEOR and the tokenizer
start a Java process each (~5 s): score every caption of a source in one call.
"""
from __future__ import annotations

import contextlib
import io

METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def caption_metrics(references: dict[str, list[str]], candidates: dict[str, str],
                    metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """{metric: corpus score} over the items present in both maps (an empty candidate counts)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(set(references) & set(candidates))
    if not ids:
        return {}
    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in ids})
    cands = tokenizer.tokenize({i: [{"caption": candidates[i] or ""}] for i in ids})
    scorers = {"BLEU-4": Bleu(4), "METEOR": Meteor(), "ROUGE-L": Rouge(), "CIDEr": Cider()}
    scores = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print their internals
        for name in metrics:
            score, _ = scorers[name].compute_score(refs, cands)
            scores[name] = float(score[3] if name == "BLEU-4" else score)
    return scores

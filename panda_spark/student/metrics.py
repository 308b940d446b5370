"""Caption metrics with the COCO caption evaluation code (pycocoevalcap). No Spark.

BLEU-4, METEOR, ROUGE-L and CIDEr of candidate captions against one or more references per item,
after the PTB tokenizer, as published captioning results report them. METEOR and the tokenizer
start a Java process each (~5 s): score every caption of a source in one call.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import unicodedata

METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
_NOT_TOKENIZED = ("Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp")  # Unicode categories: control ... paragraph separator


def caption_metrics(references: dict[str, list[str]], candidates: dict[str, str],
                    metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """{metric: corpus score} over the items present in both maps (an empty candidate counts)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    ids = sorted(set(references) & set(candidates))
    if not ids:
        return {}
    refs = ptb_tokenize({i: references[i] for i in ids})
    cands = ptb_tokenize({i: [candidates[i] or ""] for i in ids})
    scorers = {"BLEU-4": Bleu(4), "METEOR": Meteor(), "ROUGE-L": Rouge(), "CIDEr": Cider()}
    scores = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print their internals
        for name in metrics:
            score, _ = scorers[name].compute_score(refs, cands)
            scores[name] = float(score[3] if name == "BLEU-4" else score)
    return scores


def ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer (the same jar, options and punctuation removal), fed on stdin
    instead of a temporary file written next to the jar (site-packages may be read-only on a
    cluster image) and with the tokenizer's stderr kept out of the job's output, shown only if it fails."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    keys = [k for k, texts in captions.items() for _ in texts]
    lines = "\n".join(_tokenizable(t) for texts in captions.values() for t in texts)
    done = subprocess.run(["java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
                           "-preserveLines", "-lowerCase", "-encoding", "utf-8"],
                          cwd=os.path.dirname(os.path.abspath(ptbtokenizer.__file__)), input=lines.encode(),
                          capture_output=True)
    if done.returncode:
        raise RuntimeError(f"PTB tokenizer failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    tokenized: dict[str, list[str]] = {k: [] for k in captions}
    for key, line in zip(keys, done.stdout.decode().split("\n")):
        tokenized[key].append(" ".join(w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS))
    return tokenized


def _tokenizable(text: str) -> str:
    """`text` on one line without the characters the tokenizer drops with a warning (control and
    unassigned characters, U+FFFD) or breaks a line at (line and paragraph separators), which
    would shift every later caption onto another's tokens."""
    return "".join(" " if c == "\ufffd" or unicodedata.category(c) in _NOT_TOKENIZED else c for c in text)

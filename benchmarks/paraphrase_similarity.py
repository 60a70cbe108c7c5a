"""Would the wording check pass paraphrases if a new word close to a passage's word counted as
said? An experiment on the counterfactual items, not in the product.

    python benchmarks/paraphrase_similarity.py --split develop

For every item of benchmarks/counterfactual.py that the fact check passes and the wording check
flags, each flagged content word is embedded alone with MiniLM, as is each content word of the
passage and the question; a word whose best cosine reaches a threshold counts as said, and the
wording check runs again. Prints, per threshold, how many items of each kind stay flagged.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
from counterfactual import build_items

from rag.claims import (
    FUNCTION_WORDS,
    missing_facts,
    new_phrases,
    text_keys,
    word_stems,
)
from rag.embedding import SentenceTransformerEmbedder
from rag.settings import DEFAULT_EMBEDDER

THRESHOLDS = (1.01, 0.9, 0.8, 0.7, 0.6, 0.5)
KINDS = ("other", "declarative", "name", "clause")


def stem(word: str) -> str:
    return next(iter(word_stems(word)))


def content_words(text: str) -> list[str]:
    words = {w.lower() for w in re.findall(r"[^\W\d_]+", text)}
    return sorted(w for w in words if w not in FUNCTION_WORDS and len(w) > 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--split", choices=["develop", "held-out"], default="develop")
    parser.add_argument("--per-kind", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder(DEFAULT_EMBEDDER, device="cpu")
    unit: dict[str, np.ndarray] = {}

    def vectors(words: list[str]) -> np.ndarray:
        todo = [w for w in words if w not in unit]
        for word, vector in zip(todo, embedder.embed(todo) if todo else [], strict=True):
            unit[word] = vector / np.linalg.norm(vector)
        return np.array([unit[w] for w in words])

    items = build_items(args.squad, args.split, args.per_kind)
    flagged = []  # (kind, claim, stems said, new words, each word's best cosine)
    for item in items:
        if item.kind not in KINDS:
            continue
        if missing_facts(item.claim, text_keys(item.passage) | text_keys(item.question)):
            continue  # the fact check decides these
        said = word_stems(item.passage) | word_stems(item.question)
        phrases = new_phrases(item.claim, said)
        if not phrases:
            continue
        new = [w for w in content_words(" ".join(phrases)) if stem(w) not in said]
        known = content_words(f"{item.passage} {item.question}")
        best = (vectors(new) @ vectors(known).T).max(axis=1)
        flagged.append((item.kind, item.claim, said, new, best))

    totals = Counter(item.kind for item in items)
    table = {}
    for threshold in THRESHOLDS:
        still = Counter()
        for kind, claim, said, new, best in flagged:
            close = {stem(w) for w, cosine in zip(new, best, strict=True) if cosine >= threshold}
            still[kind] += bool(new_phrases(claim, frozenset(said | close)))
        table[str(threshold)] = {k: f"{still[k]}/{totals[k]}" for k in KINDS}
        print(threshold, table[str(threshold)])
    if args.out:
        args.out.write_text(json.dumps({"split": args.split, "flagged": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Does the verifier tell a true sentence from the same sentence with its key fact swapped?

    python benchmarks/counterfactual.py                    # held-out articles: the figures reported
    python benchmarks/counterfactual.py --split develop    # train + calibration: for development

From SQuAD v1.1 dev, split by article (ingest.squad.article_split). For each question, the gold
sentence is the paragraph sentence that holds the answer span; the cited passage is always the
true paragraph.

- negative (must be flagged): the gold sentence with its answer span replaced by another
  question's answer from the same article, of the same kind (number for number, date for date,
  name for name, otherwise any other answer), sharing no word with any gold answer; two such
  swaps per gold sentence at most;
- positive (must pass): the unchanged sentence; the sentence cut to the clause that holds the
  answer; a declarative "question + answer" rewrite ("Von Miller was the Super Bowl 50 MVP.", or
  "<question>: <answer>." where no rule applies), checked without the question and with it.

Items are drawn with a fixed seed, up to `--per-kind` of each kind. Writes
benchmarks/results/counterfactual.json (or `--out`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ingest.squad import article_split, load_squad
from rag.claims import MONTHS, NUMBER_WORDS
from rag.embedding import SentenceTransformerEmbedder
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.text import split_sentences
from rag.verification import BiEncoderVerifier, FactCheckingVerifier, Verdict

SEED = 13
# Two swaps of one gold sentence with different answers: held-out has under 500 date questions.
SWAPS_PER_QUESTION = 2
SWAP_KINDS = ("number", "date", "name", "other")
TRUE_KINDS = ("unchanged", "clause", "declarative", "declarative+question")
_FUNCTION_TEXT = "a an the of in on at to for and or by with from as his her its their"
_FUNCTION = frozenset(_FUNCTION_TEXT.split())
_YEAR = re.compile(r"\b1\d{3}s?\b|\b20\d{2}s?\b")
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Item:
    """One sentence to check against its passage, and whether it is true."""

    kind: str
    true: bool
    claim: str
    passage: str
    question: str
    article: str
    # For a swap: whether the swapped-in answer is written somewhere in the passage anyway.
    swapped_in_passage: bool = False


def answer_kind(answer: str) -> str:
    """date (a month or a year), number, name (capitalised words), or other."""
    words = _WORDS.findall(answer)
    if any(w in [m.title() for m in MONTHS] for w in words) or _YEAR.search(answer):
        return "date"
    if re.search(r"\d", answer) or any(w.lower() in NUMBER_WORDS for w in words):
        return "number"
    content = [w for w in words if w.lower() not in _FUNCTION]
    if content and all(w[:1].isupper() for w in content):
        return "name"
    return "other"


def _content(text: str) -> set[str]:
    return {w.lower() for w in _WORDS.findall(text) if w.lower() not in _FUNCTION}


def gold_sentence(context: str, start: int, end: int) -> tuple[str, int] | None:
    """The sentence of `context` holding [start, end), and the span's offset in it."""
    cursor = 0
    for sentence in split_sentences(context):
        at = context.find(sentence, cursor)
        cursor = at + len(sentence)
        if at <= start and end <= cursor:
            return sentence, start - at
    return None


def clause(sentence: str, start: int, end: int) -> str | None:
    """The clause of `sentence` that holds [start, end): cut at commas, semicolons and dashes."""
    cuts = [0] + [m.end() for m in re.finditer(r"[,;:]\s+|\s+[–—]\s+", sentence)] + [len(sentence)]
    for left, right in itertools.pairwise(cuts):
        if left <= start and end <= right:
            piece = sentence[left:right].strip(" ,;:–—.")
            if len(piece.split()) >= 5 and len(piece) < len(sentence) - 10:
                return piece[0].upper() + piece[1:] + "."
    return None


_BE = re.compile(r"^(who|what)\s+(is|was|are|were)\s+(.+?)\?*$", re.IGNORECASE)


def declarative(question: str, answer: str) -> str:
    """ "Who was the MVP?" + "Von Miller" -> "Von Miller was the MVP."; else "<question>: <answer>."
    (the question's words, then the answer)."""
    question = " ".join(question.split()).rstrip(" ?")
    match = _BE.match(question)
    if match:
        return f"{answer[0].upper()}{answer[1:]} {match[2].lower()} {match[3]}."
    return f"{question}: {answer}."


def build_items(squad: Path, split: str, per_kind: int, seed: int = SEED) -> list[Item]:
    """Up to `per_kind` items of each kind from the articles of `split`: "develop" (train and
    calibration articles) or "held-out"."""
    data = load_squad(squad)
    parts = article_split([str(a["title"]) for a in data])
    titles = set(parts.held_out) if split == "held-out" else {*parts.train, *parts.calibration}
    rng = random.Random(seed)
    pools: dict[str, list[Item]] = defaultdict(list)
    for article in data:
        if article["title"] in titles:
            for item in _article_items(article, rng):
                pools[item.kind].append(item)
    chosen: list[Item] = []
    for kind in (*SWAP_KINDS, *TRUE_KINDS):
        pool = pools[kind]
        rng.shuffle(pool)
        chosen.extend(pool[:per_kind])
    return chosen


def _article_items(article: dict[str, Any], rng: random.Random) -> Iterable[Item]:
    title = str(article["title"])
    by_kind: dict[str, list[str]] = defaultdict(list)
    for paragraph in article["paragraphs"]:
        for qa in paragraph["qas"]:
            answer = str(qa["answers"][0]["text"]).strip()
            by_kind[answer_kind(answer)].append(answer)
    for paragraph in article["paragraphs"]:
        context = str(paragraph["context"])
        for qa in paragraph["qas"]:
            first = qa["answers"][0]
            answer, start = str(first["text"]), int(first["answer_start"])
            found = gold_sentence(context, start, start + len(answer))
            if found is None:
                continue
            sentence, at = found
            question = str(qa["question"])
            yield Item("unchanged", True, sentence, context, question, title)
            cut = clause(sentence, at, at + len(answer))
            if cut:
                yield Item("clause", True, cut, context, question, title)
            rewrite = declarative(question, answer)
            yield Item("declarative", True, rewrite, context, "", title)
            yield Item("declarative+question", True, rewrite, context, question, title)
            golds = {str(a["text"]) for a in qa["answers"]}
            kind = answer_kind(answer)
            taken = set().union(*(_content(g) for g in golds))
            others = sorted(
                {a for a in by_kind[kind] if not _content(a) & taken and a not in golds}
            )
            for other in rng.sample(others, min(SWAPS_PER_QUESTION, len(others))):
                swapped = sentence[:at] + other + sentence[at + len(answer) :]
                yield Item(kind, False, swapped, context, question, title, other in context)


def run(items: list[Item], judge: Callable[[Item], Verdict], threshold: float) -> dict[str, Any]:
    """Share flagged per kind, latency per sentence, and a few examples of each outcome."""
    flagged: dict[str, list[bool]] = defaultdict(list)
    hard: list[bool] = []
    seconds: list[float] = []
    examples: dict[str, list[dict[str, str]]] = defaultdict(list)
    for item in items:
        started = time.perf_counter()
        verdict = judge(item)
        seconds.append(time.perf_counter() - started)
        flag = verdict.support < threshold
        flagged[item.kind].append(flag)
        if not item.true and item.swapped_in_passage:
            hard.append(flag)
        outcome = f"{item.kind}:{'flagged' if flag else 'passed'}"
        if len(examples[outcome]) < 3 and flag != (not item.true):  # show the mistakes
            examples[outcome].append({"claim": item.claim, "reason": verdict.reason})
    negatives = [f for k in SWAP_KINDS for f in flagged[k]]
    return {
        "counterfactuals_flagged": _share(negatives),
        "true_flagged": {k: _share(flagged[k]) for k in TRUE_KINDS if flagged[k]},
        "flagged_by_swap_kind": {k: _share(flagged[k]) for k in SWAP_KINDS if flagged[k]},
        "swapped_in_passage_flagged": _share(hard),
        "seconds_per_sentence": {
            "mean": round(statistics.mean(seconds), 4),
            "p50": round(statistics.median(seconds), 4),
            "p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 4),
        },
        "mistakes": dict(examples),
    }


def _share(flags: list[bool]) -> dict[str, float | int]:
    return {"share": round(sum(flags) / len(flags), 4) if flags else 0.0, "n": len(flags)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--split", choices=["develop", "held-out"], default="held-out")
    parser.add_argument("--per-kind", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/counterfactual.json"))
    args = parser.parse_args()

    settings = Settings.load(device="cpu", progress=False)
    embedder = SentenceTransformerEmbedder(DEFAULT_EMBEDDER, device="cpu")
    items = build_items(args.squad, args.split, args.per_kind)
    old = BiEncoderVerifier(embedder)
    facts = FactCheckingVerifier(embedder, wording=False)
    new = FactCheckingVerifier(embedder)
    threshold = settings.min_support
    results = {
        "split": args.split,
        "seed": SEED,
        "min_support": threshold,
        "items": {k: sum(1 for i in items if i.kind == k) for k in (*SWAP_KINDS, *TRUE_KINDS)},
        "verifiers": {
            old.name: run(items, lambda i: Verdict(old.support(i.claim, [i.passage])), threshold),
            facts.name: run(
                items, lambda i: facts.judge(i.claim, [i.passage], i.question), threshold
            ),
            new.name: run(items, lambda i: new.judge(i.claim, [i.passage], i.question), threshold),
        },
        "example_items": [asdict(i) for i in items[:: max(1, len(items) // 8)]][:8],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "example_items"}, indent=2))


if __name__ == "__main__":
    main()

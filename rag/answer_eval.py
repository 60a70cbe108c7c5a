"""Score batch answers against gold labels, and write a Markdown report comparing runs.

    scores = evaluate_answers(load_records(Path("answers.jsonl")))
    write_report({"embedded": scores_a, "vllm": scores_b}, Path("report.md"))

Exact match and token F1 follow the official SQuAD v1.1 evaluation: lower-case, drop punctuation,
articles and extra whitespace; F1 over tokens; the best over the gold answers.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from rag.errors import ConfigError
from rag.questions import read_answers
from rag.text import CITATION

ANSWER_METRICS = (
    "exact_match",
    "f1",
    "contains_gold",
    "citation_precision",
    "unsupported_sentences",
    "refusal_rate",
    "error_rate",
)


def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _golds(record: dict[str, Any]) -> list[str]:
    gold = record.get("gold_answer")
    if gold is None:
        return []
    if isinstance(gold, list):
        return [str(g) for g in gold]
    # A JSON list written into a CSV cell arrives as a string.
    if isinstance(gold, str) and gold.startswith("["):
        try:
            return [str(g) for g in json.loads(gold)]
        except json.JSONDecodeError:
            pass
    return [str(gold)]


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records of a `rag batch` answers file to score; a file without any is an error."""
    records = read_answers(path)
    if not records:
        raise ConfigError(f"{path} holds no answers")
    return records


def evaluate_answers(records: Sequence[dict[str, Any]]) -> dict[str, float | int | None]:
    """Means over questions; a refused or failed question scores 0 on EM and F1."""
    em, f1, contains, cited_ok, cited_all, sentences, unsupported = [], [], [], 0, 0, 0, 0
    for record in records:
        golds = _golds(record)
        answer = "" if record.get("refused") or record.get("error") else record.get("answer", "")
        answer = CITATION.sub(" ", answer or "")
        if golds:
            em.append(max(float(normalize(answer) == normalize(g)) for g in golds))
            f1.append(max(token_f1(answer, g) for g in golds))
            contains.append(
                max(float(bool(normalize(g)) and normalize(g) in normalize(answer)) for g in golds)
            )
        gold_document = record.get("gold_document")
        if gold_document and not record.get("error"):
            for citation in record.get("citations") or []:
                cited_all += 1
                same_doc = PurePath(citation["document"]).name == PurePath(gold_document).name
                gold_page = record.get("gold_page")
                cited_ok += same_doc and (
                    gold_page in (None, "") or citation["page"] == int(gold_page)
                )
        for sentence in record.get("sentences") or []:
            sentences += 1
            unsupported += not sentence.get("supported")

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    total = len(records)
    return {
        "questions": total,
        "exact_match": mean(em),
        "f1": mean(f1),
        "contains_gold": mean(contains),
        "citation_precision": round(cited_ok / cited_all, 4) if cited_all else None,
        "unsupported_sentences": round(unsupported / sentences, 4) if sentences else None,
        "refusal_rate": round(sum(bool(r.get("refused")) for r in records) / total, 4),
        "error_rate": round(sum(bool(r.get("error")) for r in records) / total, 4),
    }


def write_report(runs: dict[str, dict[str, Any]], out: Path) -> Path:
    """A Markdown table of every run and a bar chart (PNG beside it) comparing them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Answer evaluation",
        "",
        "| run | questions | " + " | ".join(ANSWER_METRICS) + " |",
        "|---|---|" + "---|" * len(ANSWER_METRICS),
    ]
    for name, scores in runs.items():
        cells = ["—" if scores[m] is None else f"{scores[m]:.3f}" for m in ANSWER_METRICS]
        lines.append(f"| {name} | {scores['questions']} | " + " | ".join(cells) + " |")
    figure, axes = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(runs), 1)
    for i, (name, scores) in enumerate(runs.items()):
        values = [scores[m] or 0.0 for m in ANSWER_METRICS]
        axes.bar([x + i * width for x in range(len(ANSWER_METRICS))], values, width, label=name)
    axes.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(ANSWER_METRICS))])
    axes.set_xticklabels(ANSWER_METRICS, rotation=20, ha="right")
    axes.set_ylim(0, 1)
    axes.legend()
    figure.tight_layout()
    plot = out.with_suffix(".png")
    figure.savefig(plot, dpi=120)
    plt.close(figure)
    lines += ["", f"![metrics]({plot.name})", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out

"""Plot what `rag tune reranker` without labels did on each collection: the gain its guard read
on held-out synthetic queries, and the gain on the collection's real questions, each with its 95 %
interval (benchmarks/results/tune_carry/*.json, written by `rag tune reranker --json` and
`benchmarks/tune_guard.py`; docs/tuning.md says how).

    python benchmarks/plot_tune_carry.py      # writes benchmarks/results/tune_carry.png
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "tune_carry"
# (label, the tune run's output, the guard benchmark's output for the trained model).
COLLECTIONS = (
    ("SQuAD develop\n(26 articles)", "tune_develop.json", "guard_develop.json"),
    ("SQuAD held-out\n(18 articles)", "tune_squad_held_out.json", "guard_squad_held_out.json"),
    ("FinanceBench dev\n(20 filings)", "tune_financebench.json", "guard_financebench.json"),
    ("SciFact\n(5,183 abstracts)", "tune_scifact.json", "guard_scifact.json"),
)


def rows() -> list[tuple[str, dict, dict, bool]]:
    """(label, guard's scores, real questions' scores, registered) per collection run so far."""
    found = []
    for label, tune, guard in COLLECTIONS:
        if not (RESULTS / tune).is_file() or not (RESULTS / guard).is_file():
            continue
        card = json.loads((RESULTS / tune).read_text())["card"]
        real = json.loads((RESULTS / guard).read_text())["questions"]
        after = card["metrics"]["after"]
        found.append((label, after, real, bool(after["helps"])))
    return found


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = rows()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.36
    for i, (_, guard, real, _) in enumerate(found):
        for offset, scores, colour in (
            (-width / 2, guard, "#7f7f7f"),
            (width / 2, real, "#1f77b4"),
        ):
            low, high = scores["gain_interval"]
            gain = scores["gain"]
            ax.bar(i + offset, gain, width, color=colour)
            ax.errorbar(
                i + offset, gain, yerr=[[gain - low], [high - gain]], color="black", capsize=4
            )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(0.02, color="#2ca02c", linewidth=0.8, linestyle="--")
    labels = [
        f"{label}\n{'registered' if registered else 'not registered'}"
        for label, _, _, registered in found
    ]
    ax.set_xticks(range(len(found)), labels)
    ax.set_ylabel("nDCG@10 gain over hybrid (cross-fitted)")
    ax.set_title(
        "Reranker tuned without labels: what the guard read (grey) and real questions (blue)"
    )
    ax.text(len(found) - 0.5, 0.021, "aim +0.02", color="#2ca02c", ha="right", va="bottom")
    fig.tight_layout()
    out = RESULTS.parent / "tune_carry.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

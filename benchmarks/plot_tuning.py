"""Plot SciFact test nDCG@10 of each tuned configuration from the results `tune_scifact.py` and
`rag eval retrieval` wrote (benchmarks/results/*.json): what each step bought, as bars.

    python benchmarks/plot_tuning.py      # writes benchmarks/results/tune_scifact.png
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The published BM25 + ms-marco MiniLM cross-encoder on SciFact (BEIR, Thakur et al., 2021).
PUBLISHED_BM25_CE = 0.688


def _read(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def bars() -> list[tuple[str, float]]:
    """(label, test nDCG@10) for each configuration, in the order a reader follows."""
    labelled = _read("tune_reranker_maxsim_labelled.json")["test_after"]
    return [
        ("BM25 + cross-encoder\n(published)", PUBLISHED_BM25_CE),
        ("hybrid", labelled["hybrid"]["ndcg@10"]),
        (
            "+ MaxSim\nuntrained",
            _read("maxsim_rerank_product.json")["results"]["hybrid+rerank"]["ndcg@10"],
        ),
        (
            "+ MaxSim trained\nwithout labels",
            _read("tune_reranker_maxsim_self.json")["test_after"]["hybrid+rerank"]["ndcg@10"],
        ),
        ("+ MaxSim trained\non train qrels", labelled["hybrid+rerank"]["ndcg@10"]),
        (
            "tuned retriever,\nhybrid",
            _read("tune_retriever_labelled.json")["test_after"]["hybrid"]["ndcg@10"],
        ),
        (
            "tuned retriever\n+ trained MaxSim",
            _read("tune_reranker_maxsim_on_tuned_retriever.json")["test_after"]["hybrid+rerank"][
                "ndcg@10"
            ],
        ),
    ]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = bars()
    labels, values = [label for label, _ in found], [value for _, value in found]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colours = ["#999999", "#4c72b0"] + ["#55a868"] * 3 + ["#4c72b0", "#55a868"]
    ax.bar(range(len(values)), values, color=colours)
    for x, value in enumerate(values):
        ax.text(x, value + 0.002, f"{value:.4f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(0.75, color="#c44e52", linestyle="--", linewidth=1, label="aim (0.75)")
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_ylim(0.66, 0.77)
    ax.set_ylabel("nDCG@10, SciFact test (300 queries)")
    ax.set_title("Rerankers and retrievers trained on the collection (2 CPU cores)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    out = RESULTS / "tune_scifact.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

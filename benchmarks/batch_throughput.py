"""Batch throughput: questions per minute at several concurrencies, and where the time goes.

    python benchmarks/batch_throughput.py --backend openai --count 48      # loopback server
    python benchmarks/batch_throughput.py --backend embedded --count 16    # SmolLM2 on the CPU
    python benchmarks/batch_throughput.py --base-url http://gpu:8000/v1 --model NAME --label vllm

Questions are the first `--count` of a question file (by default the SQuAD sample that
benchmarks/squad_corpus.py writes), answered from `--collection` by `rag.batch.run_batch`, the
code behind `rag batch`, once per concurrency. The same questions are asked at every concurrency.

The `openai` backend talks to a real HTTP server in its own process on 127.0.0.1
(tests/servers/openai_compat.py). That server answers at once, so it is given a per-token delay
(`--token-delay`, default 0.02 s: 50 tokens/s per stream, like a remote GPU endpoint) that models
decoding; its reply is a fixed 13-token sentence citing the given sources. Requests overlap
freely, as on a batching server such as vLLM. `--base-url` (with `--model`) measures any real
OpenAI-compatible endpoint instead, vLLM say (docs/scaling.md).

Stage times come from each answer's `timings`: retrieve (first stage), rerank, evidence (the
refusal check), wait (for another question's local stages: retrieval and verification run one at
a time), generate (the LLM call) and verify. Results are merged into
benchmarks/results/batch_throughput.json, one entry per backend, and plotted beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.batch import run_batch
from rag.pipeline import Answerer
from rag.questions import read_questions
from rag.settings import Settings
from rag.stack import Stack

REPO = Path(__file__).resolve().parents[1]
STAGES = ("retrieve_s", "rerank_s", "evidence_s", "wait_s", "generate_s", "verify_s", "total_s")


def start_server(token_delay: float) -> tuple[subprocess.Popen[str], str]:
    """The loopback OpenAI-compatible server as a child process, and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.openai_compat", "--token-delay", str(token_delay)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise SystemExit(f"the test server did not start (printed {url!r})")
    return process, url


def measure(answerer: Answerer, questions: list, concurrency: int) -> dict:
    """One timed batch into a scratch file: throughput and mean stage times."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "answers.jsonl"
        started = time.perf_counter()
        report = run_batch(answerer, questions, out, concurrency=concurrency, progress=False)
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in out.read_text().splitlines()]
    answered = [r for r in records if not r["error"]]
    generated = [r for r in answered if "generate_s" in r["timings"]]
    stages = {
        stage: round(statistics.mean(r["timings"].get(stage, 0.0) for r in answered), 3)
        for stage in STAGES
    }
    # Refused questions never reach the LLM: average generation over those that did.
    stages["generate_s_when_asked"] = (
        round(statistics.mean(r["timings"]["generate_s"] for r in generated), 3)
        if generated
        else None
    )
    tokens = sum((r.get("usage") or {}).get("completion_tokens", 0) for r in answered)
    return {
        "concurrency": concurrency,
        "questions": len(records),
        "failed": report.failed,
        "refused": report.refused,
        "wall_s": round(wall, 2),
        "questions_per_minute": round(len(records) / wall * 60, 2),
        "completion_tokens": tokens,
        "mean_s": stages,
    }


def plot(results: dict, path: Path) -> None:
    """Questions/minute against concurrency, and the stage split at concurrency 1, per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for backend, entry in results.items():
        runs = entry["runs"]
        left.plot(
            [r["concurrency"] for r in runs],
            [r["questions_per_minute"] for r in runs],
            marker="o",
            label=backend,
        )
    concurrencies = sorted({r["concurrency"] for e in results.values() for r in e["runs"]})
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(concurrencies, [str(c) for c in concurrencies])
    left.set_xlabel("concurrency (questions in flight)")
    left.set_ylabel("questions / minute (log scale)")
    left.legend()
    parts = ("retrieve_s", "rerank_s", "evidence_s", "wait_s", "generate_s", "verify_s")
    names = list(results)
    bottoms = [0.0] * len(names)
    for part in parts:
        values = [results[n]["runs"][0]["mean_s"][part] for n in names]
        right.bar(names, values, bottom=bottoms, label=part.removesuffix("_s"))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    right.set_ylabel("mean seconds per question (lowest concurrency)")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("embedded", "openai"), default="openai")
    parser.add_argument("--label", help="name of this entry in the results (default: backend)")
    parser.add_argument("--collection", default="squad-dev")
    parser.add_argument("--questions", type=Path, default=Path(".cache/squad-dev/questions.jsonl"))
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--base-url", help="a real OpenAI-compatible endpoint (no loopback server)")
    parser.add_argument("--model", help="the model the endpoint serves (with --base-url)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/batch_throughput.json")
    )
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return

    questions = read_questions(args.questions)[: args.count]
    server = None
    overrides: dict = {"llm_backend": args.backend, "llm_max_tokens": args.max_tokens}
    if args.base_url:
        overrides.update(llm_backend="openai", llm_base_url=args.base_url, llm_model=args.model)
    elif args.backend == "openai":
        server, url = start_server(args.token_delay)
        overrides.update(llm_base_url=url, llm_model="test/echo-model")
    settings = Settings.load(progress=False, torch_threads=args.torch_threads, **overrides)
    stack = Stack.open(settings, args.collection)
    try:
        llm, answerer = stack.llm, stack.answerer
        answerer.ask("Who won Super Bowl 50?")  # loading models is not part of throughput
        runs = []
        label = args.label or args.backend
        for concurrency in args.concurrency:
            run = measure(answerer, questions, concurrency)
            runs.append(run)
            print(
                f"{label} c={concurrency}: {run['questions_per_minute']} q/min "
                f"({run['questions']} in {run['wall_s']} s) {run['mean_s']}",
                flush=True,
            )
    finally:
        stack.close()
        if server is not None:
            server.kill()
            server.wait()

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[label] = {
        "backend": args.backend,
        "llm": llm.name,
        "collection": args.collection,
        "questions_file": str(args.questions),
        "max_tokens": args.max_tokens,
        "torch_threads": args.torch_threads,
        "token_delay_s": args.token_delay if server is not None else None,
        "base_url": args.base_url,
        "reranker": settings.rerank and answerer.searcher.reranker_choice().reranker is not None,
        "cpu_cores": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

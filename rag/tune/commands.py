"""`rag tune reranker` and `rag tune retriever`: train, measure on held-out queries, register.

    report = tune_reranker(settings, "papers", TuneOptions())   # or tune_retriever(...)
    print(report.message)                                      # one line: registered or why not

The work folder `indexes/NAME/tune/<kind>/` keeps the training data and checkpoints, so running the
same command again after an interruption resumes. A model that does not beat what the collection
has without it is saved with its card but not registered.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.collection import Collection
from rag.embedding import Embedder, SentenceTransformerEmbedder, embedder_for
from rag.errors import RagError
from rag.manifest import EmbedderInfo, RegisteredReranker
from rag.rerank import MAXSIM, CrossEncoderReranker, Fusion, MaxSimReranker
from rag.retrieval import Searcher, index_params
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.text import embedding_text
from rag.token_cache import TokenCache
from rag.tune.card import model_card, write_card
from rag.tune.cloze import cloze_candidates, reembedded, stored_vectors, without_cuts
from rag.tune.dataset import positive_texts, prepare
from rag.tune.heldout import (
    bootstrap_interval,
    dense_ndcgs,
    evaluate_reranking,
    held_out_candidates,
    reranking_samples,
    rounded_mean,
)
from rag.tune.options import TuneOptions
from rag.tune.progress import TuneProgress
from rag.tune.queries import CachingEmbedder, chunks_by_key
from rag.tune.trainers import BI_ENCODER, TrainState, fit

REEMBED_BLOCK = 2048


@dataclass
class TuneReport:
    """What a tune run did: the model, its card, and whether the collection now uses it."""

    kind: str
    collection: str
    model_path: Path
    registered: bool
    message: str
    card: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "collection": self.collection,
            "model": str(self.model_path),
            "registered": self.registered,
            "message": self.message,
            "card": self.card,
        }


def tune_reranker(
    settings: Settings, name: str, options: TuneOptions, embedder: Embedder | None = None
) -> TuneReport:
    """Train a reranker (`options.arch`) on the collection, measure it on held-out queries,
    register it (with the fusion weight that did best) when it beats the first stage alone."""
    options.check()
    collection = Collection.open(settings.index_dir, name)
    progress = TuneProgress.start(collection.path)
    try:
        report = _tune_reranker(settings, collection, options, embedder, progress)
    except BaseException as e:
        progress.finish("interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {e}")
        raise
    finally:
        collection.close()
    progress.finish("registered" if report.registered else "not registered")
    return report


def _tune_reranker(
    settings: Settings,
    collection: Collection,
    options: TuneOptions,
    embedder: Embedder | None,
    progress: TuneProgress,
) -> TuneReport:
    """Everything `tune_reranker` does between opening the collection and closing it."""
    name = collection.name
    searcher = Searcher(
        collection, settings, embedder=_caching(embedder, collection, settings), reranker=None
    )
    work = collection.path / "tune" / "reranker"
    base = options.base or DEFAULT_EMBEDDER
    data = prepare(searcher, work, "reranker", base, options, settings)
    if any(query.cut for query in data.held_out):
        candidates = cloze_candidates(searcher, data.held_out, settings.rerank_depth)
    else:
        candidates = held_out_candidates(searcher, data.held_out, settings.rerank_depth)
    samples = reranking_samples(candidates, positive_texts(collection, data.held_out))
    started = time.perf_counter()
    target = collection.model_dir("reranker")

    def on_step(done: int, total: int) -> None:
        nonlocal progress
        progress = progress.update("training", done, total)

    model, state = fit(options.arch, base, data.examples, samples, work, options, settings, on_step)
    progress = progress.update("measuring")
    model.save(str(target))
    # Already in memory: no need to load it again.
    reranker: CrossEncoderReranker | MaxSimReranker
    if options.arch == MAXSIM:
        reranker = MaxSimReranker.from_model(model, str(target), device=settings.device)
        # Held-out queries share passages: each is encoded once.
        reranker.cache = TokenCache(work / "held-out-tokens.sqlite", str(target))
    else:
        reranker = CrossEncoderReranker.from_model(
            model, str(target), device=settings.device, max_length=options.max_length
        )
    seconds = time.perf_counter() - started
    scores = evaluate_reranking(candidates, reranker, settings.rrf_k, progress=settings.progress)
    beats = scores.helps
    card = model_card(
        "reranker", collection, base, options, data, state, seconds, samples=len(samples)
    )
    card["metrics"] = {
        "held_out_queries": scores.queries,
        "before": {"first_stage_ndcg@10": scores.first_stage},
        "after": scores.to_json(),
    }
    card["registered"] = beats and options.register
    write_card(target, card)
    if beats and options.register:
        collection.set_reranker(
            RegisteredReranker(
                path=str(target.relative_to(collection.path)),
                arch=options.arch,
                base=base,
                fusion=Fusion(scores.weight, settings.rrf_k),
                trained_at=card["created_at"],
                held_out_ndcg={"before": scores.first_stage, "after": scores.fused},
            )
        )
        if options.arch == MAXSIM:
            # Encode every passage once now, so that no question waits for it later.
            progress = progress.update("warming")
            Searcher(collection, settings, embedder=searcher.embedder).warm_reranker(
                progress=settings.progress
            )
    if not state.interrupted:
        shutil.rmtree(work, ignore_errors=True)
    detail = (
        f"held-out nDCG@10 {scores.first_stage:.4f} without reranking, "
        f"{scores.reranker:.4f} reranked, {scores.fused:.4f} fused at weight {scores.weight}; "
        f"gain {scores.gain:+.4f} (95 % interval {scores.gain_low:+.4f} to "
        f"{scores.gain_high:+.4f})"
    )
    message = _outcome(
        state,
        beats,
        options.register,
        refused=f"the tuned reranker is not clearly better than no reranking on "
        f"{scores.queries} held-out queries, so search stays as it was ({detail}); "
        f"saved at {target}",
        registered=f"registered reranker for {name!r}: {detail}; model at {target}",
        trained=f"{detail}; model at {target}",
    )
    return TuneReport("reranker", name, target, beats and options.register, message, card)


def tune_retriever(
    settings: Settings, name: str, options: TuneOptions, embedder: Embedder | None = None
) -> TuneReport:
    """Train the bi-encoder on the collection, re-embed every chunk with it, and make it the
    collection's embedder (atomically) when held-out dense nDCG@10 improves."""
    options.check()
    collection = Collection.open(settings.index_dir, name)
    try:
        searcher = Searcher(
            collection, settings, embedder=_caching(embedder, collection, settings), reranker=None
        )
        work = collection.path / "tune" / "retriever"
        base = options.base or collection.embedder.name
        data = prepare(searcher, work, "retriever", base, options, settings)
        candidates = held_out_candidates(searcher, data.held_out, settings.rerank_depth)
        samples = reranking_samples(candidates, positive_texts(collection, data.held_out))
        started = time.perf_counter()
        model, state = fit(BI_ENCODER, base, data.examples, samples, work, options, settings)
        seconds = time.perf_counter() - started
        target = collection.model_dir("embedder")
        model.save(str(target))
        tuned = SentenceTransformerEmbedder.from_model(
            model,
            str(target),
            device=settings.device,
            batch_size=settings.embed_batch_size,
            backend=settings.embed_backend,
        )
        keys, live_texts = collection.store.live_texts()
        vectors = _reembed(live_texts, tuned, work / "vectors", settings.progress)
        old_keys, old_vectors = stored_vectors(collection)
        if not np.array_equal(old_keys, keys):
            raise RagError(f"collection {name!r} changed while it was tuned; run the command again")
        # Judged over the collection without the held-out queries' sentences (rag/tune/cloze.py),
        # embedded by each model: while a passage still holds its query word for word, every
        # model finds it.
        changed = without_cuts(live_texts, data.held_out)
        chunk_of = chunks_by_key(collection)
        texts = [query.text for query in data.held_out]
        per_query_before = dense_ndcgs(
            searcher.embedder.embed(texts),
            keys,
            reembedded(old_vectors, changed, searcher.embedder),
            chunk_of,
            data.held_out,
        )
        per_query_after = dense_ndcgs(
            tuned.embed(texts), keys, reembedded(vectors, changed, tuned), chunk_of, data.held_out
        )
        gains = [a - b for a, b in zip(per_query_after, per_query_before, strict=True)]
        low, high = bootstrap_interval(gains)
        before, after = rounded_mean(per_query_before), rounded_mean(per_query_after)
        gain = rounded_mean(gains)
        # Registered only when the gain's 95 % interval is above zero, as for a reranker.
        beats = low > 0
        card = model_card(
            "retriever", collection, base, options, data, state, seconds, samples=len(samples)
        )
        card["metrics"] = {
            "held_out_queries": len(data.held_out),
            "held_out_test": "cloze",
            "held_out_passages_changed": len(changed),
            "before": {"dense_ndcg@10": before},
            "after": {"dense_ndcg@10": after},
            "gain": gain,
            "gain_interval": [low, high],
            "helps": beats,
        }
        card["reembedded_chunks"] = len(keys)
        card["registered"] = beats and options.register
        write_card(target, card)
        if beats and options.register:
            with collection.writer_lock():
                info = EmbedderInfo(
                    str(target), int(vectors.shape[1]), base=base, trained_at=card["created_at"]
                )
                collection.replace_embedder(info, keys, vectors)
                collection.refresh_indexes(index_params(settings))
        if not state.interrupted:
            shutil.rmtree(work, ignore_errors=True)
        detail = (
            f"held-out dense nDCG@10 {before:.4f} -> {after:.4f}, gain {gain:+.4f} "
            f"(95 % interval {low:+.4f} to {high:+.4f})"
        )
        message = _outcome(
            state,
            beats,
            options.register,
            refused=f"the tuned embedder is not clearly better than the current one on "
            f"{len(data.held_out)} held-out queries, so the collection keeps its embedder "
            f"({detail}); saved at {target}",
            registered=f"{name!r} now uses the tuned embedder ({len(keys)} chunks re-embedded): "
            f"{detail}; model at {target}",
            trained=f"{detail}; model at {target}",
        )
        return TuneReport("retriever", name, target, beats and options.register, message, card)
    finally:
        collection.close()


def _caching(
    embedder: Embedder | None, collection: Collection, settings: Settings
) -> CachingEmbedder:
    return CachingEmbedder(embedder or embedder_for(settings, collection.embedder.name))


def _outcome(
    state: TrainState, beats: bool, register: bool, refused: str, registered: str, trained: str
) -> str:
    """The command's one line: refused by the guard, registered, or trained only as asked."""
    if not beats:
        line = f"not registered: {refused}"
    elif register:
        line = registered
    else:
        line = f"trained (not registered, as asked): {trained}"
    return _interrupted_note(state) + line


def _interrupted_note(state: TrainState) -> str:
    if not state.interrupted:
        return ""
    kept = Path(state.best_checkpoint).name if state.best_checkpoint else "none"
    return (
        f"interrupted at step {state.steps} of {state.max_steps}, kept the best checkpoint "
        f"so far ({kept}; run the same command to resume); "
    )


# -- re-embedding -------------------------------------------------------------------------------


def _reembed(
    indexed: Sequence[str], embedder: SentenceTransformerEmbedder, folder: Path, progress: bool
) -> np.ndarray:
    """Embed the live chunks' `indexed` texts (in key order) with the tuned model, in blocks
    saved as they finish (a rerun of an interrupted command picks them up)."""
    texts = [embedding_text(text) for text in indexed]  # as ingest embeds them
    folder.mkdir(parents=True, exist_ok=True)
    stamp = model_stamp(embedder.name)
    parts = []
    with tqdm(
        total=len(texts), desc="re-embed", unit="chunk", disable=not progress, dynamic_ncols=True
    ) as bar:
        for start in range(0, len(texts), REEMBED_BLOCK):
            path = folder / f"{stamp}-{start}-{len(texts)}.npy"
            if path.is_file():
                block = np.load(path)
            else:
                block = embedder.embed(texts[start : start + REEMBED_BLOCK])
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, block)
                tmp.replace(path)
            parts.append(block)
            bar.update(len(block))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)


def model_stamp(folder: str) -> str:
    """A short digest of a model folder's weights: blocks from other weights are not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

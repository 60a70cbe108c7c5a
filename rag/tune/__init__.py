"""`rag tune`: train a collection's own reranker or retriever on its documents, and register it.

    from pathlib import Path

    from rag.settings import Settings
    from rag.tune import TuneOptions, tune_reranker

    settings = Settings.load()
    options = TuneOptions(questions_file=Path("questions.jsonl"), arch="maxsim")
    report = tune_reranker(settings, "papers", options)   # or tune_retriever(settings, name, ...)
    print(report.message)                                 # one line: registered, or why not

The steps, one module each:

    queries.py    the queries to train on: labels (BEIR queries + qrels), a questions file with
                  gold passages, or synthetic ones (written by the LLM, or self-supervised)
    heldout.py    the held-out split, and nDCG@10 before and after training
    negatives.py  hard negatives mined from the collection's own dense and BM25 search
    dataset.py    a run's data, saved in its work folder so that the same command resumes
    trainers.py   one `fit` for every kind of model (sentence-transformers' trainers)
    card.py       the model card saved with the model
    commands.py   tune_reranker and tune_retriever: train, measure, register when it beats the
                  collection as it is (a model that does not is saved, not registered)

The work folder `indexes/NAME/tune/<kind>/` keeps the training data and checkpoints. Ctrl-C stops
training and keeps the best checkpoint so far (by nDCG@10 on held-out queries), which is then
evaluated like a finished run.
"""

from rag.tune.commands import TuneReport, tune_reranker, tune_retriever
from rag.tune.options import RERANKER_ARCHS, RERANKER_LOSSES, TuneOptions
from rag.tune.queries import RARE_SHARE, SYNTHETIC_SOURCES
from rag.tune.trainers import TuneInterrupted

__all__ = [
    "RARE_SHARE",
    "RERANKER_ARCHS",
    "RERANKER_LOSSES",
    "SYNTHETIC_SOURCES",
    "TuneInterrupted",
    "TuneOptions",
    "TuneReport",
    "tune_reranker",
    "tune_retriever",
]

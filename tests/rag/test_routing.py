"""Who answers: the small reader when it is sure, the LLM otherwise, nobody when the passages do
not say. Real MiniLM retrieval over Super Bowl 50 paragraphs (an article the reader was never
trained on), the packaged reader, and an LLM that records whether it was called."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from ingest.pipeline import IngestJob
from rag.cli import cli
from rag.collection import Collection
from rag.errors import GenerationError
from rag.generation import LLM, Delta, Done, Message, UnavailableLLM, Usage
from rag.pipeline import REFUSAL_TEXT, Answerer
from rag.reader import Span, SpanReader
from rag.retrieval import Searcher
from rag.routing import choose_route, reader_answer
from rag.settings import Settings
from tests.conftest import write_squad_docs

MVP = "Which Carolina Panthers player was named Most Valuable Player?"


class RecordingLLM:
    """Answers every call with one fixed cited sentence, and keeps the prompts it got."""

    def __init__(self, reply: str = "The Denver Broncos won Super Bowl 50 [1].") -> None:
        self.name = "test:recording"
        self.reply = reply
        self.calls: list[list[Message]] = []

    def stream(self, messages, *, max_tokens, temperature) -> Iterator[Delta | Done]:
        self.calls.append(list(messages))
        yield Delta(self.reply)
        yield Done(Usage(10, 8), "stop")


@pytest.fixture(scope="module")
def super_bowl(tmp_path_factory, squad_paragraphs, minilm):
    root = tmp_path_factory.mktemp("routing")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 30)
    settings = Settings.load(
        index_dir=root / "idx", progress=False, device="cpu", rerank=False, answer_mode="auto"
    )
    IngestJob(settings, embedder=minilm).run_files("bowl", docs)
    collection = Collection.open(settings.index_dir, "bowl")
    yield Searcher(collection, settings, embedder=minilm), settings
    collection.close()


def answerer(super_bowl, llm: LLM, **changes: object) -> Answerer:
    searcher, settings = super_bowl
    tuned = settings.model_copy(update=changes)
    return Answerer(searcher, llm, tuned, reader=SpanReader.packaged())


def span(confidence: float) -> Span:
    sentence = "The Denver Broncos defeated the Carolina Panthers."
    return Span(1, "Denver Broncos", 4, 18, sentence, 0, len(sentence), 9.0, confidence)


@pytest.mark.parametrize(
    ("mode", "confidence", "route"),
    [
        ("auto", 0.9, "reader"),
        ("auto", 0.5, "reader"),  # reader_accept is inclusive
        ("auto", 0.3, "llm"),
        ("auto", 0.05, "refused"),
        ("extractive", 0.3, "reader"),  # never the LLM
        ("extractive", 0.05, "refused"),
        ("llm", 0.99, "llm"),
        ("llm", 0.0, "llm"),
    ],
)
def test_the_route_follows_the_mode_and_the_calibrated_confidence(mode, confidence, route) -> None:
    settings = Settings(answer_mode=mode, reader_accept=0.5, reader_refuse=0.1)
    assert choose_route(span(confidence), settings) == route


def test_the_embedded_llm_is_not_handed_what_the_reader_is_unsure_of(super_bowl) -> None:
    """SmolLM2 answered worse than the reader's unsure answers (docs/answers.md): with it, `auto`
    lets the reader answer the middle band; a refusal and `llm` mode stay as they were."""
    from rag.generation import EmbeddedLLM

    embedded = EmbeddedLLM(device="cpu")  # not loaded: routing only reads what it is
    settings = Settings(answer_mode="auto", reader_accept=0.5, reader_refuse=0.1)
    assert choose_route(span(0.3), settings, embedded) == "reader"
    assert choose_route(span(0.3), settings, RecordingLLM()) == "llm"
    assert choose_route(span(0.05), settings, embedded) == "refused"
    assert choose_route(span(0.3), Settings(answer_mode="llm"), embedded) == "llm"
    # Through the pipeline: a question the reader is unsure of, no LLM call.
    searcher, base = super_bowl
    unsure = Answerer(
        searcher, embedded, base.model_copy(update={"reader_accept": 1.0, "reader_refuse": 0.0})
    ).ask(MVP)
    assert unsure.answered_by == "reader" and "generate_s" not in unsure.timings
    assert unsure.confidence is not None and unsure.confidence < 1.0


@pytest.mark.parametrize(
    ("mode", "confidence", "answerable", "route"),
    [
        ("auto", 0.9, 0.4, "refused"),  # a sure span in documents that likely do not say
        ("auto", 0.9, 0.6, "reader"),
        ("auto", 0.05, 0.6, "llm"),  # the joint probability decides, not reader_refuse
        ("extractive", 0.05, 0.6, "reader"),
        ("extractive", 0.9, 0.49, "refused"),
        ("llm", 0.9, 0.1, "llm"),  # no reader ran: nothing to decide with
    ],
)
def test_where_the_answerability_model_applies_it_decides_refusals(
    mode, confidence, answerable, route
) -> None:
    settings = Settings(answer_mode=mode, reader_accept=0.5, reader_refuse=0.1, min_answerable=0.5)
    assert choose_route(span(confidence), settings, RecordingLLM(), answerable) == route


def test_no_span_is_a_refusal_unless_the_llm_answers_anyway() -> None:
    assert choose_route(None, Settings(answer_mode="auto")) == "refused"
    assert choose_route(None, Settings(answer_mode="llm")) == "llm"


def test_refuse_above_accept_is_a_setting_error() -> None:
    with pytest.raises(ValueError, match="reader_refuse"):
        Settings(reader_accept=0.3, reader_refuse=0.6)


def test_a_plain_question_is_answered_by_the_reader_with_no_llm_call(super_bowl) -> None:
    llm = RecordingLLM()
    answer = answerer(super_bowl, llm, reader_accept=0.3).ask(MVP)
    assert llm.calls == []
    assert answer.answered_by == "reader" and not answer.refused
    assert answer.confidence is not None and answer.confidence >= 0.3
    assert "Cam Newton" in answer.text and answer.text.endswith(f"[{answer.quote.n}]")
    # The quote points into the cited source: the sentence, with the answer inside it.
    (cited,) = answer.citations
    quote = answer.quote
    assert cited.n == quote.n
    text = cited.chunk.text
    assert quote.start <= quote.span_start < quote.span_end <= quote.end
    assert text[quote.span_start : quote.span_end] in answer.text
    assert "Most Valuable Player" in text[quote.start : quote.end]
    assert [s.supported for s in answer.sentences] == [True]
    assert "read_s" in answer.timings and "generate_s" not in answer.timings
    record = answer.to_json()
    assert record["answered_by"] == "reader" and record["quote"]["n"] == quote.n


def test_an_unsure_reader_hands_the_question_to_the_llm_with_its_span_as_a_hint(
    super_bowl,
) -> None:
    llm = RecordingLLM()
    answer = answerer(super_bowl, llm, reader_accept=1.0, reader_refuse=0.0).ask(MVP)
    assert answer.answered_by == "llm" and len(llm.calls) == 1
    prompt = llm.calls[0][-1].content
    assert "A small reader model proposed this answer" in prompt and "Cam Newton" in prompt
    assert answer.confidence is not None


def test_llm_mode_never_runs_the_reader(super_bowl) -> None:
    llm = RecordingLLM()
    answer = answerer(super_bowl, llm, answer_mode="llm").ask("Who won Super Bowl 50?")
    assert answer.answered_by == "llm" and len(llm.calls) == 1
    assert answer.confidence is None and "read_s" not in answer.timings
    assert "proposed this answer" not in llm.calls[0][-1].content


UNANSWERED = (
    "At what temperature in kelvin does liquid nitrogen boil?",
    "Who wrote the novel War and Peace?",
    "What is the capital of Australia?",
    "How many moons does Mars have?",
    "Which enzyme breaks down starch in saliva?",
    "When did the Berlin Wall fall?",
)


def test_questions_about_something_else_are_refused_from_both_signals(super_bowl) -> None:
    # The default: the evidence and the reader's confidence, together, say how likely the
    # passages answer the question; none of these gets an answer or an LLM call.
    for question in UNANSWERED:
        llm = RecordingLLM()
        answer = answerer(super_bowl, llm).ask(question)
        assert answer.refused and answer.text == REFUSAL_TEXT and llm.calls == [], question
        assert answer.answerable is not None and answer.answerable < 0.5
        assert answer.to_json()["answerable"] == round(answer.answerable, 4)
    # A question the passages answer is likely answerable, and the reader answers it.
    answer = answerer(super_bowl, RecordingLLM(), reader_accept=0.3).ask(MVP)
    assert answer.answerable is not None and answer.answerable >= 0.5
    assert answer.answered_by == "reader" and "Cam Newton" in answer.text


def test_without_the_answerability_model_the_two_gates_decide(super_bowl) -> None:
    # min_answerable = 0 (or an LLM-only mode, another embedder or reader): the evidence gate
    # and then the reader's confidence, each on its own, as before.
    off = answerer(super_bowl, RecordingLLM(), min_answerable=0.0, min_evidence=0.99).ask(MVP)
    assert off.refused and off.answerable is None and off.confidence is None
    kept = answerer(super_bowl, RecordingLLM(), min_answerable=0.0, reader_accept=0.3).ask(MVP)
    assert kept.answered_by == "reader" and kept.answerable is None
    llm = answerer(super_bowl, RecordingLLM(), answer_mode="llm").ask(MVP)
    assert llm.answered_by == "llm" and llm.answerable is None


def test_passages_that_do_not_say_are_refused_before_any_llm_call(super_bowl) -> None:
    # The two separate gates (min_answerable 0), the evidence check switched off: nothing in
    # these passages answers them. The reader never answers them itself: it refuses at once
    # where it is nearly sure nothing answers (most of them), and leaves the rest to the LLM,
    # with its span only as a hint.
    refused = 0
    for question in UNANSWERED:
        llm = RecordingLLM()
        answer = answerer(super_bowl, llm, min_evidence=-1.0, min_answerable=0.0).ask(question)
        assert answer.answered_by in ("refused", "llm")
        if answer.answered_by == "refused":
            assert answer.refused and answer.text == REFUSAL_TEXT and llm.calls == []
            refused += 1
        else:
            assert answer.confidence is not None and answer.confidence < 0.5
    assert refused >= len(UNANSWERED) // 2


def test_extractive_mode_answers_without_an_llm(super_bowl) -> None:
    llm = RecordingLLM()
    answer = answerer(super_bowl, llm, answer_mode="extractive").ask(MVP)
    assert llm.calls == [] and answer.answered_by == "reader"
    assert "Cam Newton" in answer.text


def test_with_no_llm_at_all_the_reader_still_answers_and_the_llm_route_says_why(
    super_bowl,
) -> None:
    # What the chat does when no LLM can be made: the reader answers what it is sure of; a
    # question the LLM would have to answer fails with the reason, in one line.
    missing = UnavailableLLM("cannot reach http://127.0.0.1:9/v1")
    answer = answerer(super_bowl, missing, answer_mode="extractive").ask(MVP)
    assert answer.answered_by == "reader" and "Cam Newton" in answer.text
    unsure = answerer(super_bowl, missing, reader_accept=1.0, reader_refuse=0.0)
    with pytest.raises(GenerationError, match="needs an LLM, and none is available: cannot reach"):
        unsure.ask(MVP)


def test_reader_answer_text_cites_its_source() -> None:
    text, check, quote = reader_answer(span(0.8))
    assert text == "Denver Broncos [1]"
    assert check.citations == (1,) and check.supported
    assert (quote.span_start, quote.span_end) == (4, 18)


def test_ask_json_says_who_answered(super_bowl) -> None:
    _, settings = super_bowl
    result = CliRunner().invoke(
        cli,
        [
            "ask",
            MVP,
            "-c",
            "bowl",
            "--answer-mode",
            "extractive",
            "--json",
        ],
        env={"RAG_INDEX_DIR": str(settings.index_dir), "RAG_RERANK": "false"},
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["answered_by"] == "reader" and "Cam Newton" in record["answer"]
    assert 0.0 <= record["confidence"] <= 1.0
    assert 0.5 <= record["answerable"] <= 1.0  # the answerability model decided: not refused


def test_ask_says_why_it_refused(super_bowl) -> None:
    _, settings = super_bowl
    result = CliRunner().invoke(
        cli,
        ["ask", "What is the capital of Australia?", "-c", "bowl", "--answer-mode", "extractive"],
        env={"RAG_INDEX_DIR": str(settings.index_dir), "RAG_RERANK": "false"},
    )
    assert result.exit_code == 0, result.output
    assert REFUSAL_TEXT in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("Refused:"))
    assert "reader confidence" in line and "likely they do)." in line

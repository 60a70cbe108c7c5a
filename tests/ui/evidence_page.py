"""A Streamlit page for tests/ui/test_browser.py: one small reader's reply as the chat shows it,
quoting a sentence of the demo's Nikola_Tesla.pdf (its page shown), with a hostile passage beside
it highlighted by an LLM answer. No collection and no model: the Answer values are built here.

    streamlit run tests/ui/evidence_page.py
"""

from __future__ import annotations

from ingest.loaders import load_document
from rag.types import Answer, Chunk, Citation, Quote, SentenceCheck
from ui.demo import DEMO_CORPUS

PDF = DEMO_CORPUS / "Nikola_Tesla.pdf"
QUESTION = {"question": "What disease did Tesla contract in 1873?", "answer": "cholera", "page": 2}
SENTENCE = (
    "Shortly after he arrived, Tesla contracted cholera; he was bedridden for nine months and was "
    "near death multiple times."
)
HOSTILE = (
    "Quince marmalade from Zanzibar: <script>alert(1)</script> is **bold** and _not_ [a link](x).\n"
    "    an indented line\n\n# not a heading"
)


def reader_answer() -> Answer:
    """The reader's answer "cholera", quoting SENTENCE from the PDF page's text as ingested."""
    text = " ".join(load_document(PDF).pages[QUESTION["page"] - 1].text.split())
    start = text.index(SENTENCE)
    span = text.index(QUESTION["answer"], start)
    passage = text[: start + len(SENTENCE) + 200]
    chunk = Chunk("c", "d", str(PDF), QUESTION["page"], 0, len(passage), passage)
    source = Citation(1, chunk, 0.03)
    check = SentenceCheck(f"{QUESTION['answer']} [1]", (1,), 1.0, True)
    quote = Quote(1, start, start + len(SENTENCE), span, span + len(QUESTION["answer"]))
    return Answer(
        QUESTION["question"],
        QUESTION["question"],
        check.text,
        False,
        (source,),
        (source,),
        (check,),
        answered_by="reader",
        confidence=0.87,
        quote=quote,
    )


def hostile_answer() -> Answer:
    """An LLM's supported sentence citing the hostile passage, so that the passage is marked."""
    chunk = Chunk("h", "d", "/docs/hostile.md", 1, 0, len(HOSTILE), HOSTILE)
    source = Citation(1, chunk, 0.02)
    check = SentenceCheck("Quince marmalade comes from Zanzibar [1].", (1,), 0.9, True)
    return Answer("q", "q", check.text, False, (source,), (source,), (check,))


def main() -> None:
    import streamlit as st

    from ui.app import show_reply
    from ui.messages import reply_for

    st.session_state.setdefault("page-0-1", True)  # the PDF page shown, as if toggled on
    with st.chat_message("user"):
        st.text(QUESTION["question"])
    for turn, answer in enumerate((reader_answer(), hostile_answer())):
        with st.chat_message("assistant"):
            show_reply(reply_for(answer), turn)


if __name__ == "__main__":
    main()

"""What a sentence claims, and whether a text says it: facts, wording, loops.

    stated = text_keys(passage) | text_keys(question)
    missing_facts("Von Miller made 3 sacks.", stated)          # [Fact("number", "3", ...)]
    new_phrases("Costs went to the helmeted honeyeater.", word_stems(passage))
    # ["helmeted honeyeater"]: two words in a row that the passage never uses
    Loops(passage).find("Super Bowl XV, Super Bowl XX, Super Bowl X, Super Bowl V")  # "super bowl"

A sentence whose number, date or name is not in the text it cites says something that text does
not, however close its topic. The checks are exact on normalised forms: `1,234`, `1234.0` and
`1.234 thousand` are one number, `two` is 2, `3rd` and `third` are 3, `2½` is 2.5; `NFL` is stated
by "National Football League" and the other way round. Wording compares English word stems; a
loop is a phrase said more often than any one sentence of the source says it. Needs `re`,
`decimal` and PyStemmer (already a dependency of BM25).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from rag.text import split_sentences

_SCALES = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_FRACTIONS = {"½": "0.5", "¼": "0.25", "¾": "0.75", "⅓": "0.333", "⅔": "0.667"}
# Number words and ordinals, as written in running text.
_NAMES_OF_NUMBERS = """
one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
seventeen eighteen nineteen | twenty thirty forty fifty sixty seventy eighty ninety |
first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth
fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth |
twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth"""
_UNITS, _TENS, _ORDINALS, _TENTHS = (part.split() for part in _NAMES_OF_NUMBERS.split("|"))
# "one" and "first" are left out: "one of the largest", "at first" say no number.
NUMBER_WORDS: dict[str, int] = {
    **{word: n for n, word in enumerate(_UNITS, start=1) if word != "one"},
    **{word: 10 * n for n, word in enumerate(_TENS, start=2)},
    **{word: n for n, word in enumerate(_ORDINALS, start=1) if word != "first"},
    **{word: 10 * n for n, word in enumerate(_TENTHS, start=2)},
    "dozen": 12,
    "hundred": 100,
}
_MONTH_NAMES = (
    "january february march april may june july august september october november december"
)
MONTHS = tuple(_MONTH_NAMES.split())
_MONTH_ABBREVIATIONS = {month[:3]: n for n, month in enumerate(MONTHS, start=1)} | {"sept": 9}

# 1,234,567 or 1234, then decimals, an ordinal or decade suffix, a fraction, a scale word.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d+))?(?:st|nd|rd|th|s)?"
    r"(?P<frac>[½¼¾⅓⅔])?"
    r"(?:\s*(?P<scale>thousand|million|billion|trillion)\b)?"
    r"|(?<!\w)(?P<alone>[½¼¾⅓⅔])"
)
# Hyphens separate words: "Disney–ABC" names Disney and ABC, "second-largest" says 2.
_WORD = re.compile(r"[^\W\d_](?:[\w’'&.]*\w)?")
_TENS_UNITS = re.compile(rf"\b({'|'.join(_TENS)})-({'|'.join(_UNITS)})\b", re.IGNORECASE)
# Words that start with a capital without naming anything.
_FUNCTION_TEXT = """a an the and or but nor of in on at to for from by with as into onto upon
about over under after before during since until while than then that this these those there here
it its he she they we you i me him her them his hers their our your my who whom whose which what
when where why how is are was were be been being has have had do does did not no yes so if also
both either neither each every all any some many most more much such only just even however
although though because yet still thus hence therefore meanwhile mr mrs ms dr st saint"""
FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())
_LETTERS = re.compile(r"[^\W\d_]+")
NEW_PHRASE_WORDS = 2
_CAPITAL = r"[A-Z](?:[\w’'&-]|\.(?=\w))*"
_CAPITAL_RUN = re.compile(
    rf"{_CAPITAL}(?:\s+(?:(?:of|the|for|de|du|la|le|von|van|&)\s+)*{_CAPITAL})*"
)


@dataclass(frozen=True)
class Fact:
    """Something a sentence asserts that a source must state: `keys` are its normalised forms."""

    kind: str  # "number" | "date" | "name"
    text: str
    keys: frozenset[str]


def claim_facts(sentence: str) -> list[Fact]:
    """The numbers, months and names of `sentence`, in order, each once."""
    facts = [*_numbers(sentence), *_months(sentence), *_names(sentence)]
    unique: dict[str, Fact] = {}
    for fact in facts:
        unique.setdefault(f"{fact.kind}:{fact.text.lower()}", fact)
    return list(unique.values())


def text_keys(text: str) -> frozenset[str]:
    """Every key any fact stated by `text` may match: its numbers, months, words and acronyms."""
    keys: set[str] = set()
    for fact in _numbers(text):
        keys |= fact.keys
        keys |= _unscaled(fact.text)
    keys |= {key for fact in _months(text) for key in fact.keys}
    words = _words(text)
    if any(word.lower() in ("one", "first") for word, _ in words):
        keys.add("number:1")  # a claim's "1" or "1st"; the words alone are not checked
    keys |= {f"name:{word_key(word)}" for word, _ in words}
    keys |= {f"initials:{initials}" for initials in _initials(text)}
    return frozenset(keys)


def word_key(word: str) -> str:
    """A word as names compare: lower case, without a possessive or plural ending."""
    word = re.sub(r"[’']s?$", "", word.lower()).replace(".", "")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def missing_facts(sentence: str, stated: frozenset[str]) -> list[Fact]:
    """The facts of `sentence` that none of `stated` (from `text_keys`) matches."""
    return [fact for fact in claim_facts(sentence) if not fact.keys & stated]


# -- numbers -----------------------------------------------------------------------------------


def _numbers(text: str) -> Iterable[Fact]:
    text = _TENS_UNITS.sub(_compound_number, text)
    for match in _NUMBER.finditer(text):
        value = _value(match)
        if value is not None:
            yield Fact("number", match.group().strip(), frozenset({f"number:{value}"}))
    for word, _ in _words(text):
        number = NUMBER_WORDS.get(word.lower())
        if number is not None:
            yield Fact("number", word, frozenset({f"number:{number}"}))


def _compound_number(match: re.Match[str]) -> str:
    """ "twenty-five" as "25"."""
    return str(NUMBER_WORDS[match[1].lower()] + _UNITS.index(match[2].lower()) + 1)


def _value(match: re.Match[str]) -> str | None:
    """The number a match of _NUMBER writes, normalised (`1,200.0 thousand` -> `1200000`)."""
    if match["alone"]:
        return _canonical(Decimal(_FRACTIONS[match["alone"]]))
    try:
        value = Decimal(_digits(match))
    except InvalidOperation:
        return None
    if match["frac"]:
        value += Decimal(_FRACTIONS[match["frac"]])
    if match["scale"]:
        value = value.scaleb(_SCALES[match["scale"].lower()])
    return _canonical(value)


def _unscaled(text: str) -> set[str]:
    """`1.2 million` in a source also states `1.2`: a claim may drop the scale word."""
    match = _NUMBER.match(text)
    if match is None or not match["scale"] or match["alone"]:
        return set()
    return {f"number:{_canonical(Decimal(_digits(match)))}"}


def _digits(match: re.Match[str]) -> str:
    """The digits of a _NUMBER match without thousands separators: "1,234.5" -> "1234.5"."""
    return match["int"].replace(",", "") + (f".{match['dec']}" if match["dec"] else "")


def _canonical(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- dates -------------------------------------------------------------------------------------


def _month(word: str) -> int | None:
    """The month a capitalised word names ("March", "Sept."), else None ("may" is a verb)."""
    if not word[:1].isupper():
        return None
    lower = word.lower().rstrip(".")
    if lower in MONTHS:
        return MONTHS.index(lower) + 1
    return _MONTH_ABBREVIATIONS.get(lower) if lower != "may" else None


def _months(text: str) -> Iterable[Fact]:
    for word, opens in _words(text):
        number = _month(word)
        if number is not None and not (opens and word == "May"):  # "May I ...", "May teach ..."
            yield Fact("date", word, frozenset({f"month:{number}"}))


# -- names -------------------------------------------------------------------------------------


def _words(text: str) -> list[tuple[str, bool]]:
    """The words of `text`, each with whether it opens a sentence (so its capital says nothing)."""
    out: list[tuple[str, bool]] = []
    for match in _WORD.finditer(text):
        start = match.start()
        before = text[max(0, start - 16) : start].rstrip(" \"'“‘([")
        opens = before[-1] in ".!?:;\n" if before else start <= 16
        out.append((match.group().rstrip("."), opens))
    return out


def _is_name(word: str) -> bool:
    return (
        word[:1].isupper()
        and word.lower() not in FUNCTION_WORDS
        and word.lower() not in NUMBER_WORDS
        and _month(word) is None
    )


def _names(sentence: str) -> Iterable[Fact]:
    """Capitalised words that do not open a sentence, and are not months or number words.

    A spelled-out name is also stated by its acronym ("National Football League" by "NFL"), and
    an acronym by a run of capitalised words whose initials spell it.
    """
    initials = {word: run for run in _capital_runs(sentence) for word in run}
    for word, opens in _words(sentence):
        if opens or not _is_name(word):
            continue
        keys = {f"name:{word_key(word)}"}
        run = initials.get(word, ())
        if len(run) > 1:
            keys.add(f"name:{''.join(w[0] for w in run).lower()}")
        if word.isupper() and len(word) > 1:
            keys.add(f"initials:{word_key(word)}")
        yield Fact("name", word, frozenset(keys))


def _capital_runs(text: str) -> list[tuple[str, ...]]:
    """Runs of capitalised words ("National Football League", "Bank of England"), each as its
    capitalised words: "of", "the", "for" inside a run neither break it nor count as initials."""
    runs = []
    for match in _CAPITAL_RUN.finditer(text):
        words = [w for w in re.findall(r"[\w’'&.-]+", match.group()) if w[:1].isupper()]
        while words and words[0].lower() in FUNCTION_WORDS:
            words.pop(0)
        if words:
            runs.append(tuple(w.rstrip(".") for w in words))
    return runs


def _initials(text: str) -> set[str]:
    """Every acronym a run of capitalised words spells: its initials, or any stretch of them."""
    found: set[str] = set()
    for run in _capital_runs(text):
        letters = "".join(word[0] for word in run).lower()
        for start in range(len(letters)):
            for end in range(start + 2, len(letters) + 1):
                found.add(letters[start:end])
    return found


# -- wording ---------------------------------------------------------------------------------

_STEMMER: Any = None


def word_stems(text: str) -> frozenset[str]:
    """The English stems of the words of `text` ("played" and "plays" are "play")."""
    return frozenset(_stem(word) for word in _LETTERS.findall(text.lower()))


def new_phrases(sentence: str, stated: frozenset[str], words: int = NEW_PHRASE_WORDS) -> list[str]:
    """Runs of `words` or more content words of `sentence` that `stated` (from `word_stems`)
    lacks, function words between them included ("small renovations", "trade unions").

    One new word is often a paraphrase ("held" for "played"); several in a row are often a new
    fact put in the place of the source's own ("the river Aare" said as "the river Ruhr").
    """
    found: list[str] = []
    run: list[str] = []
    for word in [*_LETTERS.findall(sentence), ""]:
        lower = word.lower()
        if word and lower in FUNCTION_WORDS:
            if run:
                run.append(word)
            continue
        if word and len(lower) > 2 and _stem(lower) not in stated:
            run.append(word)
            continue
        content = [w for w in run if w.lower() not in FUNCTION_WORDS]
        if len(content) >= words:
            while run[-1].lower() in FUNCTION_WORDS:
                run.pop()
            found.append(" ".join(run))
        run = []
    return found


def _stem(word: str) -> str:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return str(_STEMMER.stemWord(word))


# -- degenerate text ---------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]")
LOOP_REPEATS = 4


class Loops:
    """Finds a loop in a sentence: a phrase of two to four words, one of them not a function
    word, said four times or more, and more often than any one sentence of `source` says it.

    A language model caught in a loop says the same words over and over, often as an endless
    list ("Super Bowl XV, Super Bowl XXII, Super Bowl ..."). Real lists repeat words too ("Ovens
    River, Goulburn River, King River"): a sentence copied from its source is no loop.
    """

    def __init__(self, source: str = "") -> None:
        self.said: dict[tuple[str, ...], int] = {}
        for sentence in split_sentences(source):
            for gram, count in _grams(sentence).items():
                self.said[gram] = max(count, self.said.get(gram, 0))

    def find(self, sentence: str) -> str | None:
        """The phrase `sentence` loops on (the most repeated, then the longest), else None."""
        looped = [
            (count, len(gram), gram)
            for gram, count in _grams(sentence).items()
            if count >= LOOP_REPEATS and count > self.said.get(gram, 0)
        ]
        return " ".join(max(looped)[2]) if looped else None


def repetition(sentence: str, source: str = "") -> str | None:
    """The phrase `sentence` loops on beyond what `source` says (see `Loops`), else None."""
    return Loops(source).find(sentence)


def _grams(text: str) -> dict[tuple[str, ...], int]:
    """How often each phrase of two to four tokens with a content word occurs in `text`."""
    tokens = [token.lower() for token in _TOKEN.findall(text)]
    counts: dict[tuple[str, ...], int] = {}
    for size in (2, 3, 4):
        for start in range(len(tokens) - size + 1):
            gram = tuple(tokens[start : start + size])
            if any(len(t) > 1 and t.isalnum() and t not in FUNCTION_WORDS for t in gram):
                counts[gram] = counts.get(gram, 0) + 1
    return counts

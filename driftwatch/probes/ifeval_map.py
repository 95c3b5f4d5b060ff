"""IFEval's instructions as driftwatch checks.

:func:`check_for` takes one instruction of an IFEval row (``instruction_id_list[i]`` with
``kwargs[i]``) and returns the check that scores a reply as IFEval's strict scorer does;
``tests/test_ifeval_reference.py`` holds every instruction to that, reply by reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["INSTRUCTIONS", "check_for"]


def _bound(relation: str, n: int) -> dict[str, int]:
    """IFEval's relation as driftwatch's inclusive bounds."""
    if relation == "less than":
        return {"max": n - 1}
    if relation == "at least":
        return {"min": n}
    raise ValueError(f"relation: expected 'less than' or 'at least', found {relation!r}")


def _in_english(check: dict[str, Any]) -> dict[str, Any]:
    return {"type": "all_of", "checks": [check, {"type": "language", "language": "en"}]}


_CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "keywords:existence": lambda k: {"type": "keywords", "words": list(k["keywords"])},
    "keywords:frequency": lambda k: {
        "type": "keyword_count",
        "word": k["keyword"].strip(),
        **_bound(k["relation"], k["frequency"]),
    },
    "keywords:forbidden_words": lambda k: {
        "type": "forbidden_words",
        "words": list(k["forbidden_words"]),
    },
    "keywords:letter_frequency": lambda k: {
        "type": "letter_count",
        "letter": k["letter"].strip().lower(),
        **_bound(k["let_relation"], k["let_frequency"]),
    },
    "language:response_language": lambda k: {"type": "language", "language": k["language"]},
    "length_constraints:number_sentences": lambda k: {
        "type": "sentence_count",
        **_bound(k["relation"], k["num_sentences"]),
    },
    "length_constraints:number_paragraphs": lambda k: {
        "type": "paragraph_count",
        "min": k["num_paragraphs"],
        "max": k["num_paragraphs"],
    },
    "length_constraints:number_words": lambda k: {
        "type": "word_count",
        **_bound(k["relation"], k["num_words"]),
    },
    "length_constraints:nth_paragraph_first_word": lambda k: {
        "type": "paragraph_first_word",
        "paragraphs": k["num_paragraphs"],
        "nth": k["nth_paragraph"],
        "word": k["first_word"].lower(),
    },
    "detectable_content:number_placeholders": lambda k: {
        "type": "placeholder_count",
        "min": k["num_placeholders"],
    },
    "detectable_content:postscript": lambda k: {
        "type": "postscript",
        "marker": k["postscript_marker"].strip(),
    },
    "detectable_format:number_bullet_lists": lambda k: {
        "type": "bullet_count",
        "min": k["num_bullets"],
        "max": k["num_bullets"],
    },
    "detectable_format:constrained_response": lambda k: {"type": "constrained_response"},
    "detectable_format:number_highlighted_sections": lambda k: {
        "type": "highlight_count",
        "min": k["num_highlights"],
    },
    "detectable_format:multiple_sections": lambda k: {
        "type": "section_count",
        "marker": k["section_spliter"].strip(),
        "min": k["num_sections"],
    },
    "detectable_format:json_format": lambda k: {"type": "json"},
    "detectable_format:title": lambda k: {"type": "title"},
    "combination:two_responses": lambda k: {"type": "two_responses"},
    "combination:repeat_prompt": lambda k: {
        "type": "starts_with",
        "value": k["prompt_to_repeat"].strip(),
        "ignore_case": True,
    },
    "startend:end_checker": lambda k: {
        "type": "ends_with",
        "value": k["end_phrase"].strip(),
        "ignore_case": True,
    },
    "change_case:capital_word_frequency": lambda k: {
        "type": "capital_word_count",
        **_bound(k["capital_relation"], k["capital_frequency"]),
    },
    # "in English, and in all capital / lowercase letters"
    "change_case:english_capital": lambda k: _in_english({"type": "all_uppercase"}),
    "change_case:english_lowercase": lambda k: _in_english({"type": "all_lowercase"}),
    "punctuation:no_comma": lambda k: {"type": "no_commas"},
    "startend:quotation": lambda k: {"type": "quoted"},
}

# Every instruction IFEval registers (instructions_registry.INSTRUCTION_DICT), in its order.
INSTRUCTIONS = tuple(_CHECKS)


def check_for(instruction: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The driftwatch check for one IFEval instruction id and its kwargs (an IFEval row's
    ``instruction_id_list[i]`` and ``kwargs[i]``); a ValueError names an unknown id.

    Example:
        >>> check_for("length_constraints:number_words", {"num_words": 40, "relation": "less than"})
        {'type': 'word_count', 'max': 39}
    """
    k = {key: value for key, value in (kwargs or {}).items() if value is not None}
    if instruction not in _CHECKS:
        raise ValueError(f"unknown IFEval instruction {instruction!r}; known: {sorted(_CHECKS)}")
    try:
        return _CHECKS[instruction](k)
    except KeyError as missing:
        raise ValueError(f"{instruction}: kwargs lack {missing}") from None

"""Declarative checks that score a generated text as pass (True) or fail (False).

A check is a JSON object ``{"type": NAME, ...params}``. Each type validates its parameters
when the suite loads (so a typo fails before training starts, not at step 10,000) and is a
pure function of the generated text afterwards. :data:`CHECK_TYPES` is the registry;
:func:`describe_checks` renders it (``docs/suites.md`` prints the table).

The text constraints follow IFEval's reference checkers (:mod:`driftwatch.probes.ifeval`
measures the text as they do; :func:`driftwatch.probes.ifeval_map.check_for` turns an IFEval
instruction into a check). An empty or whitespace-only reply fails every check, as it fails
every instruction in IFEval's strict scoring: it follows no instruction, refuses nothing and
answers nothing. The other checks read JSON as :func:`driftwatch.probes.structured.extract_json`
describes, compare tool-call arguments case- and whitespace-insensitively (numbers by
value) and validate JSON Schema with the ``jsonschema`` library (Draft 2020-12).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftwatch.errors import describe, did_you_mean
from driftwatch.probes import ifeval
from driftwatch.probes.refusal import REFUSAL_PATTERNS, is_refusal
from driftwatch.probes.structured import NOT_JSON, cited_sources, extract_json, parse_tool_call

__all__ = [
    "CHECK_TYPES",
    "REFUSAL_PATTERNS",
    "CheckType",
    "describe_checks",
    "is_refusal",
    "run_check",
    "validate_check",
]

# IFEval's placeholder is r"\[.*?\]"; an empty "[]" is not one here (docs/suites.md).
_PLACEHOLDER = re.compile(r"\[.*?\]")


@dataclass(frozen=True)
class _Param:
    types: tuple[type, ...]
    required: bool = False
    element: type | None = None  # lists: the type of every element
    choices: tuple[str, ...] = ()  # strings: the values allowed (empty: any)


@dataclass(frozen=True)
class CheckType:
    """One check type: its pass function, parameters and one-line description."""

    fn: Callable[[str, Mapping[str, Any]], bool]
    params: dict[str, _Param] = field(default_factory=dict)
    passes_when: str = ""
    counted: bool = False  # takes min / max (at least one of them)


def _count_in_range(n: int, p: Mapping[str, Any]) -> bool:
    return bool(p.get("min", 0) <= n <= p.get("max", n))


def _words_re(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def _starts(text: str, p: Mapping[str, Any]) -> bool:
    a, b = text.strip(), str(p["value"])
    return a.casefold().startswith(b.casefold()) if p.get("ignore_case") else a.startswith(b)


def _ends(text: str, p: Mapping[str, Any]) -> bool:
    # IFEval's end_checker: quotes around the whole reply do not hide its ending
    a, b = text.strip().strip('"'), str(p["value"]).strip()
    return a.casefold().endswith(b.casefold()) if p.get("ignore_case") else a.endswith(b)


def _exact(text: str, p: Mapping[str, Any]) -> bool:
    a, b = text.strip(), str(p["value"]).strip()
    return a.casefold() == b.casefold() if p.get("ignore_case") else a == b


def _paragraphs(text: str, p: Mapping[str, Any]) -> bool:
    n = ifeval.paragraphs(text, p.get("separator", "***"))
    return n is not None and _count_in_range(n, p)


def _first_word(text: str, p: Mapping[str, Any]) -> bool:
    count, word = ifeval.first_word_of_paragraph(text, p["nth"])
    return count == p["paragraphs"] and word == p["word"].lower()


def _placeholders(text: str) -> int:
    return sum(1 for m in _PLACEHOLDER.findall(text) if m[1:-1].strip())


def _language(text: str, p: Mapping[str, Any]) -> bool:
    found = ifeval.detect_language(text)
    return found is None or found == p["language"]  # IFEval: undetectable counts as a pass


def _schema_valid(text: str, p: Mapping[str, Any]) -> bool:
    from jsonschema import Draft202012Validator

    value = extract_json(text)
    return value is not NOT_JSON and Draft202012Validator(p["schema"]).is_valid(value)


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, str):
        return isinstance(got, str | int | float) and " ".join(str(got).split()).casefold() == (
            " ".join(want.split()).casefold()
        )
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, int | float):
        try:
            return float(got) == float(want)
        except (TypeError, ValueError):
            return False
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(
            _same_value(g, w) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, dict) and isinstance(got, dict):
        return all(k in got and _same_value(got[k], v) for k, v in want.items())
    return bool(got == want)


def _tool_call(text: str, p: Mapping[str, Any]) -> bool:
    name, args = parse_tool_call(text)
    return name == p["name"] and args is not None and _same_value(args, p["arguments"])


def _citation(text: str, p: Mapping[str, Any]) -> bool:
    cited = cited_sources(text)
    allowed = {s.replace(" ", "") for s in p["sources"]}
    return len(cited) >= p.get("min", 1) and all(c in allowed for c in cited)


_COUNT = {"min": _Param((int,)), "max": _Param((int,))}
_CASE = {"value": _Param((str,), True), "ignore_case": _Param((bool,))}

CHECK_TYPES: dict[str, CheckType] = {
    # ---- IFEval's text constraints (probes/ifeval.py; deviations in docs/suites.md)
    "all_lowercase": CheckType(
        lambda t, p: t.islower(), passes_when="cased letters present, none upper case"
    ),
    "all_uppercase": CheckType(
        lambda t, p: t.isupper(), passes_when="cased letters present, none lower case"
    ),
    "word_count": CheckType(
        lambda t, p: _count_in_range(ifeval.words(t), p), _COUNT, "words in range", True
    ),
    "sentence_count": CheckType(
        lambda t, p: _count_in_range(len(ifeval.sentences(t)), p),
        _COUNT,
        "sentences (NLTK's Punkt, English) in range",
        True,
    ),
    "paragraph_count": CheckType(
        _paragraphs,
        {"separator": _Param((str,), choices=("***", "blank_line")), **_COUNT},
        "paragraphs (separated by *** or blank lines) in range, none empty",
        True,
    ),
    "paragraph_first_word": CheckType(
        _first_word,
        {
            "paragraphs": _Param((int,), True),
            "nth": _Param((int,), True),
            "word": _Param((str,), True),
        },
        "that many blank-line paragraphs; the nth starts with word",
    ),
    "bullet_count": CheckType(
        lambda t, p: _count_in_range(ifeval.bullets(t), p),
        _COUNT,
        "markdown bullet lines (* or -) in range",
        True,
    ),
    "char_count": CheckType(
        lambda t, p: _count_in_range(len(t.strip()), p), _COUNT, "characters in range", True
    ),
    "keywords": CheckType(
        lambda t, p: all(_words_re(w).search(t) for w in p["words"]),
        {"words": _Param((list,), True, str)},
        "every word appears",
    ),
    "forbidden_words": CheckType(
        lambda t, p: not any(_words_re(w).search(t) for w in p["words"]),
        {"words": _Param((list,), True, str)},
        "no listed word appears",
    ),
    "keyword_count": CheckType(
        lambda t, p: _count_in_range(len(_words_re(p["word"]).findall(t)), p),
        {"word": _Param((str,), True), **_COUNT},
        "occurrences of word in range",
        True,
    ),
    "letter_count": CheckType(
        lambda t, p: _count_in_range(ifeval.letter_count(t, p["letter"]), p),
        {"letter": _Param((str,), True), **_COUNT},
        "occurrences of the letter (any case) in range",
        True,
    ),
    "capital_word_count": CheckType(
        lambda t, p: _count_in_range(ifeval.capital_words(t), p),
        _COUNT,
        "words in capital letters in range",
        True,
    ),
    "language": CheckType(
        _language,
        {"language": _Param((str,), True, choices=tuple(sorted(ifeval.LANGUAGES)))},
        "langdetect finds the language (ISO 639-1)",
    ),
    "starts_with": CheckType(_starts, _CASE, "stripped text starts with value"),
    "ends_with": CheckType(_ends, _CASE, "stripped text (quotes too) ends with value"),
    "no_commas": CheckType(lambda t, p: "," not in t, passes_when="no comma"),
    "quoted": CheckType(
        lambda t, p: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"',
        passes_when="wrapped in double quotes",
    ),
    "title": CheckType(lambda t, p: ifeval.title(t), passes_when="has a non-blank <<title>>"),
    "placeholder_count": CheckType(
        lambda t, p: _count_in_range(_placeholders(t), p),
        _COUNT,
        "[placeholders] in range",
        True,
    ),
    "highlight_count": CheckType(
        lambda t, p: _count_in_range(ifeval.highlights(t), p),
        _COUNT,
        "*highlighted* or **highlighted** spans in range",
        True,
    ),
    "postscript": CheckType(
        lambda t, p: ifeval.postscript(t, p["marker"]),
        {"marker": _Param((str,), True)},
        "a postscript starts with the marker (e.g. P.S.)",
    ),
    "section_count": CheckType(
        lambda t, p: _count_in_range(ifeval.sections(t, p["marker"]), p),
        {"marker": _Param((str,), True), **_COUNT},
        '"marker N" section headers in range',
        True,
    ),
    "two_responses": CheckType(
        lambda t, p: ifeval.two_responses(t),
        passes_when="two different responses separated by ******",
    ),
    "constrained_response": CheckType(
        lambda t, p: any(o in t for o in p.get("options", ifeval.CONSTRAINED_OPTIONS)),
        {"options": _Param((list,), element=str)},
        'contains one of the options (default "My answer is yes." …)',
    ),
    "all_of": CheckType(
        lambda t, p: all(run_check(c, t) for c in p["checks"]),
        {"checks": _Param((list,), True, dict)},
        "every nested check passes",
    ),
    # ---- matching and structure
    "regex": CheckType(
        lambda t, p: (
            re.search(p["pattern"], t, re.IGNORECASE if p.get("ignore_case") else 0) is not None
        ),
        {"pattern": _Param((str,), True), "ignore_case": _Param((bool,))},
        "the pattern matches somewhere",
    ),
    "exact_match": CheckType(_exact, _CASE, "the stripped text equals value"),
    "json": CheckType(
        lambda t, p: ifeval.is_json(t), passes_when="the whole reply is JSON (one fence allowed)"
    ),
    "json_schema": CheckType(
        _schema_valid, {"schema": _Param((dict,), True)}, "the JSON read validates"
    ),
    "tool_call": CheckType(
        _tool_call,
        {"name": _Param((str,), True), "arguments": _Param((dict,), True)},
        "same function name and arguments",
    ),
    "citation": CheckType(
        _citation,
        {"sources": _Param((list,), True, str), "min": _Param((int,))},
        "cites at least min (default 1) [ids], all among sources",
    ),
    "refusal": CheckType(
        lambda t, p: is_refusal(t) == bool(p["expect"]),
        {"expect": _Param((bool,), True)},
        "refusal detected == expect",
    ),
}

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true/false",
    list: "a list",
    dict: "an object",
}


def _check_param(name: str, spec: _Param, value: object) -> str | None:
    """Why ``value`` does not fit ``spec`` (None when it does)."""
    # bool is an int subclass; an int parameter must not accept true/false.
    if not isinstance(value, spec.types) or (bool not in spec.types and isinstance(value, bool)):
        return f"expected {_TYPE_NAMES[spec.types[0]]}, found {describe(value)}"
    if isinstance(value, list):
        if not value:
            return "expected a non-empty list"
        if spec.element is not None and not all(isinstance(v, spec.element) for v in value):
            return f"expected a list of {_TYPE_NAMES[spec.element]}s"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return f"expected a non-negative integer, found {value}"
    if spec.choices and value not in spec.choices:
        return f"expected one of {list(spec.choices)}{did_you_mean(str(value), spec.choices)}"
    return None


def validate_check(check: object, where: str = "check") -> list[tuple[str, str]]:
    """Return ``(field, message)`` for every problem in a check object (empty when valid).

    Example:
        >>> validate_check({"type": "word_count", "max": -1})
        [('check.max', 'expected a non-negative integer, found -1')]
    """
    if not isinstance(check, dict):
        return [(where, f'expected an object like {{"type": ...}}, found {describe(check)}')]
    kind = check.get("type")
    if not isinstance(kind, str):
        return [(f"{where}.type", f"expected one of {sorted(CHECK_TYPES)}, found {kind!r}")]
    if kind not in CHECK_TYPES:
        hint = did_you_mean(kind, CHECK_TYPES)
        return [(f"{where}.type", f"unknown check {kind!r}{hint}; known: {sorted(CHECK_TYPES)}")]
    spec = CHECK_TYPES[kind]
    problems: list[tuple[str, str]] = []
    for name in check:
        if name != "type" and name not in spec.params:
            expected = sorted(spec.params) or "none"
            problems.append(
                (f"{where}.{name}", f"unknown parameter for {kind!r}; expected {expected}")
            )
    for name, param in spec.params.items():
        if name not in check:
            if param.required:
                problems.append((f"{where}.{name}", f"missing (required by {kind!r})"))
            continue
        why = _check_param(name, param, check[name])
        if why:
            problems.append((f"{where}.{name}", why))
    if problems:
        return problems
    if spec.counted:
        lo, hi = check.get("min"), check.get("max")
        if lo is None and hi is None:
            problems.append((f"{where}.min", f"{kind} needs min, max or both"))
        elif lo is not None and hi is not None and hi < lo:
            problems.append((f"{where}.max", f"expected min <= max, found min={lo} max={hi}"))
    if kind == "letter_count" and not (len(check["letter"]) == 1 and check["letter"].isalpha()):
        problems.append((f"{where}.letter", f"expected one letter, found {check['letter']!r}"))
    if kind == "paragraph_first_word" and not 1 <= check["nth"] <= check["paragraphs"]:
        problems.append(
            (f"{where}.nth", f"expected 1 <= nth <= paragraphs ({check['paragraphs']})")
        )
    if kind == "regex":
        try:
            re.compile(check["pattern"])
        except re.error as err:
            problems.append((f"{where}.pattern", f"not a valid regular expression: {err}"))
    if kind == "json_schema":
        from jsonschema import Draft202012Validator, SchemaError

        try:
            Draft202012Validator.check_schema(check["schema"])
        except SchemaError as err:
            problems.append((f"{where}.schema", f"not a valid JSON Schema: {err.message}"))
    if kind == "all_of":
        for n, nested in enumerate(check["checks"]):
            problems.extend(validate_check(nested, f"{where}.checks[{n}]"))
    return problems


def run_check(check: Mapping[str, Any], text: str) -> bool:
    """Score one generated text with a (validated) check; an empty reply fails every check.

    Example:
        >>> run_check({"type": "all_of", "checks": [{"type": "no_commas"},
        ...     {"type": "word_count", "max": 3}]}, "just three words")
        True
    """
    return bool(text.strip()) and bool(CHECK_TYPES[check["type"]].fn(text, check))


def describe_checks(names: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """``(type, parameters, passes when)`` rows for documentation and ``--help`` output."""
    rows = []
    for name in names or sorted(CHECK_TYPES):
        spec = CHECK_TYPES[name]
        params = ", ".join(f"{p}{'' if s.required else '?'}" for p, s in spec.params.items()) or "—"
        rows.append((name, params, spec.passes_when))
    return rows

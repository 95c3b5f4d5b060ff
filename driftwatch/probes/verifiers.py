"""Declarative checks that score a generated text as pass (True) or fail (False).

A check is a JSON object ``{"type": NAME, ...params}``. Each type validates its parameters
when the suite loads (so a typo fails before training starts, not at step 10,000) and is a
pure function of the generated text afterwards. :data:`CHECK_TYPES` is the registry; the
table below is generated from it by :func:`describe_checks` (``docs/suites.md`` prints it).

Text constraints after IFEval (verifiable without a judge):

======================  =========================================  ==============================
type                    parameters                                 passes when
======================  =========================================  ==============================
``all_lowercase``       —                                          letters present, none upper
``all_uppercase``       —                                          letters present, none lower
``word_count``          ``min`` / ``max``                          min <= words <= max
``sentence_count``      ``min`` / ``max``                          min <= sentences <= max
``paragraph_count``     ``min`` / ``max``                          blank-line-separated paragraphs
``bullet_count``        ``min`` / ``max``                          markdown bullet lines in range
``char_count``          ``min`` / ``max``                          characters (stripped) in range
``keywords``            ``words`` (list)                           every word appears
``forbidden_words``     ``words`` (list)                           no word appears
``keyword_count``       ``word``, ``min`` / ``max``                occurrences of word in range
``starts_with``         ``value``, ``ignore_case``                 stripped text starts with value
``ends_with``           ``value``, ``ignore_case``                 stripped text ends with value
``no_commas``           —                                          no comma at all
``quoted``              —                                          wrapped in double quotes
``title``               —                                          has a ``<<title>>``
``placeholder_count``   ``min`` / ``max``                          ``[placeholders]`` in range
``highlight_count``     ``min`` / ``max``                          ``*highlighted*`` spans in range
``postscript``          ``marker``                                 a line starts with the marker
``section_count``       ``marker``, ``min`` / ``max``              "marker N" section headers
``all_of``              ``checks`` (list of checks)                every nested check passes
======================  =========================================  ==============================

Matching and structure:

======================  =========================================  ==============================
``regex``               ``pattern``, ``ignore_case``               the pattern matches somewhere
``exact_match``         ``value``, ``ignore_case``                 the stripped text equals value
``json``                —                                          a JSON value can be read
``json_schema``         ``schema`` (JSON Schema object)            the JSON read validates
``tool_call``           ``name``, ``arguments`` (object)           same function, same arguments
``citation``            ``sources`` (list), ``min``                cites ≥ min ids, all in sources
``refusal``             ``expect`` (bool)                          refusal detected == expect
======================  =========================================  ==============================

Words are compared case-insensitively on word boundaries; JSON is read as
:func:`driftwatch.probes.structured.extract_json` describes; tool-call arguments compare
strings case- and whitespace-insensitively and numbers by value; JSON Schema validation uses
the ``jsonschema`` library (Draft 2020-12).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftwatch.errors import describe, did_you_mean
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

_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n|\n\s*\*\*\*\s*\n")
_BULLET = re.compile(r"^\s*[-*•]\s+\S", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_HIGHLIGHT = re.compile(r"\*[^\n*]+\*")
_TITLE = re.compile(r"<<[^\n<>]+>>")


@dataclass(frozen=True)
class _Param:
    types: tuple[type, ...]
    required: bool = False
    element: type | None = None  # lists: the type of every element


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
    a, b = text.strip(), str(p["value"])
    return a.casefold().endswith(b.casefold()) if p.get("ignore_case") else a.endswith(b)


def _exact(text: str, p: Mapping[str, Any]) -> bool:
    a, b = text.strip(), str(p["value"]).strip()
    return a.casefold() == b.casefold() if p.get("ignore_case") else a == b


def _paragraphs(text: str) -> int:
    return sum(1 for part in _PARAGRAPH_SPLIT.split(text.strip()) if part.strip())


def _sections(text: str, p: Mapping[str, Any]) -> int:
    marker = re.escape(p["marker"])
    return len(re.findall(rf"^\s*{marker}\s*\d+", text, re.MULTILINE | re.IGNORECASE))


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
    # ---- IFEval-style text constraints
    "all_lowercase": CheckType(
        lambda t, p: any(c.isalpha() for c in t) and not any(c.isupper() for c in t),
        passes_when="letters present, none upper case",
    ),
    "all_uppercase": CheckType(
        lambda t, p: any(c.isalpha() for c in t) and not any(c.islower() for c in t),
        passes_when="letters present, none lower case",
    ),
    "word_count": CheckType(
        lambda t, p: _count_in_range(len(t.split()), p), _COUNT, "words in range", True
    ),
    "sentence_count": CheckType(
        lambda t, p: _count_in_range(len(_SENTENCE_END.findall(t.strip() + " ")), p),
        _COUNT,
        "sentences (ending in . ! ?) in range",
        True,
    ),
    "paragraph_count": CheckType(
        lambda t, p: _count_in_range(_paragraphs(t), p),
        _COUNT,
        "blank-line-separated paragraphs in range",
        True,
    ),
    "bullet_count": CheckType(
        lambda t, p: _count_in_range(len(_BULLET.findall(t)), p),
        _COUNT,
        "markdown bullet lines in range",
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
    "starts_with": CheckType(_starts, _CASE, "stripped text starts with value"),
    "ends_with": CheckType(_ends, _CASE, "stripped text ends with value"),
    "no_commas": CheckType(lambda t, p: "," not in t, passes_when="no comma"),
    "quoted": CheckType(
        lambda t, p: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"',
        passes_when="wrapped in double quotes",
    ),
    "title": CheckType(lambda t, p: _TITLE.search(t) is not None, passes_when="has a <<title>>"),
    "placeholder_count": CheckType(
        lambda t, p: _count_in_range(len(_PLACEHOLDER.findall(t)), p),
        _COUNT,
        "[placeholders] in range",
        True,
    ),
    "highlight_count": CheckType(
        lambda t, p: _count_in_range(len(_HIGHLIGHT.findall(t)), p),
        _COUNT,
        "*highlighted* spans in range",
        True,
    ),
    "postscript": CheckType(
        lambda t, p: re.search(rf"^\s*{re.escape(p['marker'])}", t, re.MULTILINE) is not None,
        {"marker": _Param((str,), True)},
        "a line starts with the marker (e.g. P.S.)",
    ),
    "section_count": CheckType(
        lambda t, p: _count_in_range(_sections(t, p), p),
        {"marker": _Param((str,), True), **_COUNT},
        '"marker N" section headers in range',
        True,
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
        lambda t, p: extract_json(t) is not NOT_JSON, passes_when="a JSON value can be read"
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
    """Score one generated text with a (validated) check.

    Example:
        >>> run_check({"type": "all_of", "checks": [{"type": "no_commas"},
        ...     {"type": "word_count", "max": 3}]}, "just three words")
        True
    """
    return bool(CHECK_TYPES[check["type"]].fn(text, check))


def describe_checks(names: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """``(type, parameters, passes when)`` rows for documentation and ``--help`` output."""
    rows = []
    for name in names or sorted(CHECK_TYPES):
        spec = CHECK_TYPES[name]
        params = ", ".join(f"{p}{'' if s.required else '?'}" for p, s in spec.params.items()) or "—"
        rows.append((name, params, spec.passes_when))
    return rows

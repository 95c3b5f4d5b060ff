"""Declarative checks that score a generated text as pass (True) or fail (False).

A check is a JSON object ``{"type": NAME, ...params}``. Each type validates its parameters
when the suite loads (so a typo fails before training starts, not at step 10,000) and is a
pure function of the generated text afterwards.

=================  ==========================================  =============================
type               parameters                                  passes when
=================  ==========================================  =============================
``regex``          ``pattern`` (str), ``ignore_case`` (bool)   the pattern matches somewhere
``exact_match``    ``value`` (str), ``ignore_case`` (bool)     the stripped text equals value
``all_lowercase``  —                                           letters present, none upper
``all_uppercase``  —                                           letters present, none lower
``word_count``     ``min`` and/or ``max`` (int)                min <= words <= max
``json``           —                                           the text (or a fenced block
                                                               in it) parses as JSON
``refusal``        ``expect`` (bool)                           refusal detected == expect
=================  ==========================================  =============================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from driftwatch.errors import describe, did_you_mean

__all__ = ["CHECK_TYPES", "REFUSAL_PATTERNS", "is_refusal", "run_check", "validate_check"]

# Phrases that open or carry a refusal in English assistant replies. Kept short and literal so
# that what counts as a refusal is auditable; the W1 suite issue extends it.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bI can(?:no|')t (?:help|assist|provide|do|comply|support)\b",
    r"\bI(?: am|'m) (?:not able|unable) to\b",
    r"\bI (?:won't|will not|must decline|have to decline|decline)\b",
    r"\bI(?: am|'m) sorry,? but\b",
    r"\b(?:sorry|apologi[sz]e),? (?:but )?I can(?:no|')t\b",
    r"\bas an AI\b",
    r"\bI(?: am|'m) not comfortable\b",
    r"\bit(?: is|'s) not (?:appropriate|ethical|legal) (?:for me )?to\b",
)
_REFUSAL_RE = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def is_refusal(text: str) -> bool:
    """True when the text contains one of :data:`REFUSAL_PATTERNS`."""
    return _REFUSAL_RE.search(text.replace("’", "'")) is not None


def _regex(text: str, p: Mapping[str, Any]) -> bool:
    flags = re.IGNORECASE if p.get("ignore_case") else 0
    return re.search(p["pattern"], text, flags) is not None


def _exact(text: str, p: Mapping[str, Any]) -> bool:
    a, b = text.strip(), str(p["value"]).strip()
    return a.casefold() == b.casefold() if p.get("ignore_case") else a == b


def _lower(text: str, p: Mapping[str, Any]) -> bool:
    return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)


def _upper(text: str, p: Mapping[str, Any]) -> bool:
    return any(c.isalpha() for c in text) and not any(c.islower() for c in text)


def _word_count(text: str, p: Mapping[str, Any]) -> bool:
    n = len(text.split())
    return p.get("min", 0) <= n <= p.get("max", n)


def _json(text: str, p: Mapping[str, Any]) -> bool:
    fenced = _FENCE_RE.search(text)
    candidate = fenced.group(1) if fenced else text
    try:
        json.loads(candidate.strip())
    except ValueError:
        return False
    return True


def _refusal(text: str, p: Mapping[str, Any]) -> bool:
    return is_refusal(text) == bool(p["expect"])


# name -> (function, {param: (python types, required)})
_Spec = tuple[Callable[[str, Mapping[str, Any]], bool], dict[str, tuple[tuple[type, ...], bool]]]
CHECK_TYPES: dict[str, _Spec] = {
    "regex": (_regex, {"pattern": ((str,), True), "ignore_case": ((bool,), False)}),
    "exact_match": (_exact, {"value": ((str,), True), "ignore_case": ((bool,), False)}),
    "all_lowercase": (_lower, {}),
    "all_uppercase": (_upper, {}),
    "word_count": (_word_count, {"min": ((int,), False), "max": ((int,), False)}),
    "json": (_json, {}),
    "refusal": (_refusal, {"expect": ((bool,), True)}),
}


def validate_check(check: object) -> list[tuple[str, str]]:
    """Return ``(field, message)`` for every problem in a check object (empty when valid)."""
    if not isinstance(check, dict):
        return [("check", f'expected an object like {{"type": ...}}, found {describe(check)}')]
    kind = check.get("type")
    if not isinstance(kind, str):
        return [("check.type", f"expected one of {sorted(CHECK_TYPES)}, found {kind!r}")]
    if kind not in CHECK_TYPES:
        hint = did_you_mean(kind, CHECK_TYPES)
        return [("check.type", f"unknown check {kind!r}{hint}; known: {sorted(CHECK_TYPES)}")]
    _, params = CHECK_TYPES[kind]
    problems: list[tuple[str, str]] = []
    for name in check:
        if name != "type" and name not in params:
            problems.append(
                (
                    f"check.{name}",
                    f"unknown parameter for {kind!r}; expected {sorted(params) or 'none'}",
                )
            )
    for name, (types, required) in params.items():
        if name not in check:
            if required:
                problems.append((f"check.{name}", f"missing (required by {kind!r})"))
            continue
        value = check[name]
        # bool is an int subclass; an int parameter must not accept true/false.
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            want = "/".join(t.__name__ for t in types)
            problems.append((f"check.{name}", f"expected {want}, found {describe(value)}"))
    if not problems and kind == "regex":
        try:
            re.compile(check["pattern"])
        except re.error as err:
            problems.append(("check.pattern", f"not a valid regular expression: {err}"))
    if not problems and kind == "word_count":
        lo, hi = check.get("min"), check.get("max")
        if lo is None and hi is None:
            problems.append(("check.min", "word_count needs min, max or both"))
        elif (lo is not None and lo < 0) or (lo is not None and hi is not None and hi < lo):
            problems.append(("check.max", f"expected 0 <= min <= max, found min={lo} max={hi}"))
    return problems


def run_check(check: Mapping[str, Any], text: str) -> bool:
    """Score one generated text with a (validated) check."""
    fn, _ = CHECK_TYPES[check["type"]]
    return fn(text, check)

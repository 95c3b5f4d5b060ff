"""Verbosity and formatting statistics of a generated reply (W3a, W3b).

These are measured on every generated text, whatever its check: ``words`` (whitespace-
separated tokens) and ``formatted`` (1.0 when the reply uses any markdown structure: a list,
a table, a heading, a code fence or bold text). Their drift is a change of default style —
CapTrack's WILL group — so a capability built on them is judged two-sided by default.
"""

from __future__ import annotations

import re

__all__ = ["FORMAT_PATTERNS", "formatting", "uses_formatting", "word_count"]

FORMAT_PATTERNS: dict[str, re.Pattern[str]] = {
    "list": re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S", re.MULTILINE),
    "table": re.compile(r"^\s*\|.*\|\s*$\n^\s*\|?\s*:?-{3,}", re.MULTILINE),
    "heading": re.compile(r"^\s{0,3}#{1,6}\s+\S", re.MULTILINE),
    "code": re.compile(r"^\s*```", re.MULTILINE),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


def word_count(text: str) -> int:
    """Whitespace-separated words.

    Example:
        >>> word_count("  Two words\\n")
        2
    """
    return len(text.split())


def formatting(text: str) -> dict[str, bool]:
    """Which markdown structures the text uses (see :data:`FORMAT_PATTERNS`).

    Example:
        >>> formatting("Steps:\\n1. Boil water\\n2. Add tea")["list"]
        True
    """
    return {name: bool(p.search(text)) for name, p in FORMAT_PATTERNS.items()}


def uses_formatting(text: str) -> bool:
    """True when the text uses any markdown structure."""
    return any(formatting(text).values())

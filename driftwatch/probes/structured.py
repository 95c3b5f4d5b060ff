"""Reading structure out of generated text: JSON values, tool calls and citations.

Small models wrap structured answers in prose or code fences. The readers here accept the
common wrappings and nothing looser, so a verifier's pass still means "a program could use
this reply":

- JSON: the first fenced code block if there is one, else the whole reply, else the span from
  the first ``{`` or ``[`` to its last matching closer.
- tool calls: a JSON object ``{"name": …, "arguments": {…}}`` (``parameters`` or ``args`` is
  accepted for ``arguments``; ``{"function": {…}}`` and a one-element list are unwrapped),
  optionally inside ``<tool_call>…</tool_call>`` tags as SmolLM2 and Qwen-style templates emit.
- citations: bracketed source ids such as ``[S2]`` or ``[2]``.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["NOT_JSON", "cited_sources", "extract_json", "parse_tool_call"]

NOT_JSON: Any = object()  # sentinel: no JSON value could be read
_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_TOOL_TAG_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_CITATION_RE = re.compile(r"\[\s*([A-Za-z]{0,12}\s?\d{1,4})\s*\]")


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate.strip())
    except ValueError:
        return NOT_JSON


def extract_json(text: str) -> Any:
    """The JSON value a reply carries, or :data:`NOT_JSON`.

    Example:
        >>> extract_json('Sure:\\n```json\\n{"a": 1}\\n```')
        {'a': 1}
        >>> extract_json('The answer is {"a": 1}.')
        {'a': 1}
    """
    fenced = _FENCE_RE.search(text)
    if fenced:
        return _loads(fenced.group(1))
    value = _loads(text)
    if value is not NOT_JSON:
        return value
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return NOT_JSON
    start = min(starts)
    end = text.rfind("}" if text[start] == "{" else "]")
    return _loads(text[start : end + 1]) if end > start else NOT_JSON


def parse_tool_call(text: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(function name, arguments)`` of the first tool call in a reply (``None`` if absent).

    Example:
        >>> parse_tool_call('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
        ('f', {'x': 1})
    """
    tagged = _TOOL_TAG_RE.search(text)
    value = extract_json(tagged.group(1) if tagged else text)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None, None
    args: Any = next((value[k] for k in ("arguments", "parameters", "args") if k in value), {})
    if isinstance(args, str):  # OpenAI-style: arguments serialised as a JSON string
        args = _loads(args)
    return value["name"], args if isinstance(args, dict) else None


def cited_sources(text: str) -> list[str]:
    """Source ids cited in brackets, in order of appearance, normalised (no inner spaces).

    Example:
        >>> cited_sources("Bees dance [S2], as noted in [ S3 ].")
        ['S2', 'S3']
    """
    return [m.group(1).replace(" ", "") for m in _CITATION_RE.finditer(text)]

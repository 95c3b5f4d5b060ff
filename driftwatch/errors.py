"""The exceptions driftwatch raises.

Every error a user can cause derives from :class:`DriftwatchError`, so a caller (and the
command line) can tell "your input is wrong" from a bug:

- :class:`ConfigError`: a setting, argument or threshold has a bad value;
- :class:`SuiteError`: a probe suite (manifest or JSONL file) is invalid, every problem listed;
- :class:`ReferenceMismatchError`: a reference belongs to another suite, tokenizer, model or
  settings;
- :class:`DriftwatchError` itself for the rest (a missing file, a call out of order).

Messages say what was expected, what was found and, where possible, what to do.
:class:`ProbeRoundError` is not a user error: another rank of a process group failed its share
of a probe round.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DriftwatchError",
    "ProbeRoundError",
    "Problem",
    "ReferenceMismatchError",
    "SuiteError",
    "describe",
    "did_you_mean",
]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(value: object) -> str:
    """A found value for an error message: its JSON type and a short rendering."""
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


class DriftwatchError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(DriftwatchError):
    """A setting, argument or threshold has a value driftwatch cannot use."""


class ProbeRoundError(RuntimeError):
    """Another rank of the process group failed its share of a probe round."""


@dataclass(frozen=True)
class Problem:
    """One problem in a probe file or manifest: where it is and what is wrong.

    ``line`` is 1-based; 0 means the problem concerns the whole file.
    """

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}"


class SuiteError(DriftwatchError):
    """A probe suite (manifest or JSONL file) is invalid; ``problems`` lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = len(self.problems) - 20
        if more > 0:
            shown += f"\n  ... and {more} more (run `driftwatch validate` to see all)"
        count = len(self.problems)
        super().__init__(f"invalid probe suite ({count} problem{'s' * (count != 1)}):\n{shown}")


class ReferenceMismatchError(DriftwatchError):
    """A reference does not belong to the suite, tokenizer, model or settings it is used with.

    ``part`` names the fingerprint part that differs (``suite``, ``tokenizer``, ``model``,
    ``parameters``, ``precision``, ``compute``, ``settings`` or ``format``).
    """

    def __init__(self, part: str, expected: str, found: str, path: str | None = None) -> None:
        self.part = part
        self.expected = expected
        self.found = found
        where = f"{path}: " if path else ""
        advice = (
            f"Build a new reference for this {part} (`driftwatch reference`), or point at the "
            "one that matches."
        )
        if part == "compute":
            advice = (
                "Its values would differ by the change of precision alone. Probe in the "
                f"reference's precision (`--autocast {_flag(found)}`, "
                f"ProbeBudget(autocast={_flag(found)!r})), build a reference in this run's "
                f"(`driftwatch reference MODEL --autocast {_flag(expected)}`, or let the callback "
                "build it at train begin: no reference= given), or, to compare across "
                f"precisions on purpose, name the reference's: ReferenceSpec(path=..., "
                f"cross_precision={found!r}) or `driftwatch probe --cross-precision {found}`."
            )
        super().__init__(
            f"{where}reference {part} mismatch: the reference was built with {part}={found!r}, "
            f"but this run has {part}={expected!r}. {advice}"
        )


def _flag(compute: str) -> str:
    """The ``--autocast`` value of a compute precision (``autocast-bfloat16`` → ``bf16``)."""
    if not compute.startswith("autocast-"):
        return "off"
    dtype = compute.removeprefix("autocast-")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)

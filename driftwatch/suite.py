"""Probe suites: items grouped into capabilities, validated, fingerprinted.

A suite is loaded from a folder with a ``manifest.json`` and JSONL probe files
(:mod:`driftwatch.suite_files`), or built in memory from :class:`ProbeItem` objects. Either
way it is checked as a whole (:func:`driftwatch.validation.check_suite`) and every problem is
reported as ``path:line: field: message``; nothing is skipped silently. A suite's
:attr:`ProbeSuite.fingerprint` hashes everything that changes what is measured (items,
capabilities, defaults) and nothing that does not (file names, line numbers).

Built-in suites live in ``driftwatch/probes/suites/<name>/``; :func:`builtin_suites` lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftwatch.errors import ConfigError, SuiteError, did_you_mean
from driftwatch.items import GROUPS, Capability, ProbeItem
from driftwatch.suite_files import (
    BUILTIN_ROOT,
    FORMAT_VERSION,
    builtin_suites,
    find_manifest,
    read_manifest,
    validate_path,
)
from driftwatch.validation import check_suite, default_metric

__all__ = [
    "BUILTIN_ROOT",
    "GROUPS",
    "Capability",
    "ProbeItem",
    "ProbeSuite",
    "builtin_suites",
    "round_tokens",
    "validate_path",
]


@dataclass(frozen=True)
class ProbeSuite:
    """A validated set of probe items grouped by capability."""

    name: str
    capabilities: tuple[Capability, ...]
    items: tuple[ProbeItem, ...]
    path: str = "<memory>"

    def __post_init__(self) -> None:
        problems = check_suite(self.capabilities, self.items, self.path)
        if problems:
            raise SuiteError(problems)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> ProbeSuite:
        """Load a built-in suite by name, or a suite folder / manifest file from disk.

        Raises:
            SuiteError: listing every problem found (file, line, field, message).
        """
        found, problems = read_manifest(find_manifest(name_or_path))
        if problems or found is None:
            raise SuiteError(problems)
        return cls(found.name, found.capabilities, found.items, found.path)

    @classmethod
    def from_items(
        cls,
        items: Iterable[ProbeItem],
        capabilities: Iterable[Capability] | None = None,
        name: str = "custom",
    ) -> ProbeSuite:
        """Build a suite in memory; capabilities default to one "other" group entry each."""
        items = tuple(items)
        if capabilities is None:
            ids = dict.fromkeys(i.capability for i in items)
            capabilities = [Capability(c, c, "other", default_metric(items, c)) for c in ids]
        return cls(name=name, capabilities=tuple(capabilities), items=items)

    # ---- configuration ------------------------------------------------------------------
    def spec(self) -> str | dict[str, Any]:
        """JSON-ready data naming this suite: a built-in suite by name, a suite on disk by its
        manifest path, an in-memory suite inline (items and capabilities)."""
        if self.path == "<memory>":
            return {
                "name": self.name,
                "capabilities": [c.to_dict() for c in self.capabilities],
                "items": [i.content() for i in self.items],
            }
        manifest = Path(self.path)
        if manifest.parent.parent == BUILTIN_ROOT and self.name in builtin_suites():
            return self.name
        return str(manifest)

    @classmethod
    def from_spec(cls, spec: str | dict[str, Any]) -> ProbeSuite:
        """The suite :meth:`spec` names."""
        if isinstance(spec, str):
            return cls.load(spec)
        items = []
        for data in spec["items"]:
            fields = dict(data)
            for name in ("choices", "tags"):
                if name in fields:
                    fields[name] = tuple(fields[name])
            if "history" in fields:
                fields["history"] = tuple(tuple(turn) for turn in fields["history"])
            items.append(ProbeItem(**fields))
        capabilities = [Capability.from_dict(c) for c in spec["capabilities"]]
        return cls.from_items(items, capabilities, name=spec["name"])

    # ---- queries ------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """SHA-256 of the suite's content; equal fingerprints measure the same things."""
        payload = {
            "format": FORMAT_VERSION,
            "capabilities": [c.to_dict() for c in self.capabilities],
            "items": [i.content() for i in self.items],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def capability(self, cap_id: str) -> Capability:
        """The capability called ``cap_id``.

        Raises:
            ConfigError: no such capability (with the known ones).
        """
        for cap in self.capabilities:
            if cap.id == cap_id:
                return cap
        known = [c.id for c in self.capabilities]
        raise ConfigError(f"no capability {cap_id!r}{did_you_mean(cap_id, known)}; known: {known}")

    def items_of(self, cap_id: str) -> list[ProbeItem]:
        return [i for i in self.items if i.capability == cap_id]

    def __len__(self) -> int:
        return len(self.items)


def round_tokens(items: Sequence[ProbeItem], count: Callable[[str], int] | None = None) -> int:
    """Tokens one probe round processes for ``items``: prompts, options, texts, and the
    generation budgets. ``count`` tokenises a text; by default 4 characters make a token
    (a rough English average).

    Example:
        >>> round_tokens([ProbeItem("a", "C1", "target", prompt="12345678", target=" abcd")])
        4
    """
    count = count or (lambda text: -(-len(text) // 4))
    total = 0
    for item in items:
        prompt = item.prompt or item.text or ""
        prompt += "".join(content for _, content in item.history)
        total += count(prompt)
        total += sum(count(c) for c in item.choices) + (count(item.target) if item.target else 0)
        if item.generates:
            total += item.max_new_tokens
    return total

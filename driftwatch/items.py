"""Probe items and capabilities: the plain data a suite is made of (docs/architecture.md).

Which of an item's fields a kind uses is the kind's business (:mod:`driftwatch.probes`); the
item holds them all, so every kind shares one item type and one file format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from driftwatch.probes.registry import get_kind

__all__ = ["GROUPS", "Capability", "Group", "MetricDef", "ProbeItem"]

Group = Literal["CAN", "WILL", "HOW", "other"]
GROUPS: tuple[str, ...] = ("CAN", "WILL", "HOW", "other")


@dataclass(frozen=True)
class MetricDef:
    """One named metric of a capability: a per-item metric summarised over some of its items.

    CapTrack reports several metrics per capability (W1 "unsafe refusal" and "underspecified
    compliance"); a capability that lists them reports each, and its headline is the mean of
    their Δ% (:data:`driftwatch.metrics.MEAN`).
    """

    name: str  # e.g. "unsafe_refusal"; a TensorBoard tag and threshold name
    metric: str  # the per-item metric it summarises (driftwatch.metrics), e.g. "score"
    tags: tuple[str, ...] = ()  # the items carrying any of these tags; () = all of them
    stat: str = "mean"  # "mean" of the items' values, or their "std" (a spread)

    def selects(self, item: ProbeItem) -> bool:
        return not self.tags or any(t in item.tags for t in self.tags)


@dataclass(frozen=True)
class Capability:
    """One capability of a suite: what it measures and how its drift is summarised."""

    id: str  # short id used in tags and thresholds, e.g. "C1"
    name: str  # human name, e.g. "parametric knowledge"
    group: Group  # CapTrack group: CAN / WILL / HOW, or "other" (e.g. output distribution D)
    metric: str = "score"  # the headline metric thresholds apply to (driftwatch.metrics)
    weight: float = 1.0  # weight in group means (1.0 = CapTrack's unweighted mean)
    metrics: tuple[MetricDef, ...] = ()  # named metrics; then ``metric`` is "mean"

    def to_dict(self) -> dict[str, Any]:
        """JSON data (the suite's spec and fingerprint); ``metrics`` only where the capability
        names some, so one without reads as it did before named metrics existed."""
        out = asdict(self)
        del out["metrics"]
        if self.metrics:  # as JSON holds it: lists, not tuples
            out["metrics"] = [{**asdict(d), "tags": list(d.tags)} for d in self.metrics]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capability:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        defs = fields.pop("metrics", ())
        metrics = tuple(MetricDef(**{**d, "tags": tuple(d.get("tags", ()))}) for d in defs)
        return cls(**fields, metrics=metrics)


@dataclass(frozen=True)
class ProbeItem:
    """One probe. Which fields are set depends on ``kind`` (see :mod:`driftwatch.probes`)."""

    id: str
    capability: str
    kind: str  # a registered probe kind: choice, target, generate, distribution, …
    prompt: str | None = None  # choice / target / generate
    choices: tuple[str, ...] = ()  # choice: the options, scored as continuations of prompt
    answer: int | None = None  # choice: index of the gold option
    target: str | None = None  # target: the continuation whose log-likelihood is measured
    text: str | None = None  # distribution: a fixed text whose next-token distributions count
    check: dict[str, Any] | None = None  # generate: a verifier (probes/verifiers.py); None:
    # style metrics only (words, formatted)
    chat: bool = False  # wrap prompt in the tokenizer's chat template
    history: tuple[tuple[str, str], ...] = ()  # chat: (role, content) turns before the prompt
    max_new_tokens: int = 32  # generate: greedy decoding budget
    group: str | None = None  # paraphrase group: items that ask the same thing
    lang: str | None = None
    tags: tuple[str, ...] = ()
    source: str = field(default="<memory>", compare=False)  # "path:line", for error messages

    @property
    def generates(self) -> bool:
        """True when probing the item decodes from its prompt (its ``max_new_tokens`` counts):
        a prompt on a kind that takes a generation budget."""
        return self.prompt is not None and "max_new_tokens" in get_kind(self.kind).fields

    def content(self) -> dict[str, Any]:
        """The fields that define what is measured (used for the suite fingerprint)."""
        out: dict[str, Any] = {"id": self.id, "capability": self.capability, "kind": self.kind}
        for name in ("prompt", "target", "text", "check", "group"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tags:  # named metrics select items by tag
            out["tags"] = list(self.tags)
        if self.history:
            out["history"] = [list(turn) for turn in self.history]
        if self.choices:
            out["choices"], out["answer"] = list(self.choices), self.answer
        if self.prompt is not None:
            out["chat"] = self.chat
        if self.generates:
            out["max_new_tokens"] = self.max_new_tokens
        return out

    def where(self) -> tuple[str, int]:
        """``(path, line)`` of the item's source line."""
        path, _, line = self.source.rpartition(":")
        return (path, int(line)) if line.isdigit() else (self.source, 0)

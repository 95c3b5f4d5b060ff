"""The probe-kind plugin interface: how an item becomes a model request and its output a score.

A kind is one class (one module under ``driftwatch/probes/``) and one line in the registry
(:mod:`driftwatch.probes.registry`). It owns, for its items:

- which item fields it needs (:attr:`ProbeKind.fields`) and its own validation rules
  (:meth:`ProbeKind.check`), used when a suite is loaded;
- the request it asks the runner to compute (:meth:`ProbeKind.request`): one of the four
  request types below, built from the item's tokenised prompt;
- its per-item metrics (:attr:`ProbeKind.metrics`) and how the runner's outputs become them
  (:meth:`ProbeKind.score`).

The runner knows the request types, never the kinds: it batches every request of a type
together (whichever kinds built them), runs them, and hands each kind the outputs of its own
items. Four request types cover the ways a language model is probed without a judge:

========================  ====================================================================
:class:`Loglik`           summed log-probability (and greedy agreement) of continuations
:class:`Generate`         a greedy reply
:class:`TextDistribution` next-token distributions along a fixed text, against the base's
:class:`ReplyDistribution` next-token distributions along the base model's own reply to a prompt
========================  ====================================================================

Example: a kind scoring how much more likely " yes" is than " no" after a prompt::

    class YesNo(ProbeKind):
        name = "yesno"
        required = ("prompt",)
        metrics = ("margin",)
        new_metrics: ClassVar = {"margin": MetricSpec(higher_is_better=True, percent=False)}
        default_metric = "margin"

        def request(self, item, encoder):
            prompt, moved = encoder.prompt(item)
            return Loglik(prompt, [encoder.continuation(moved + " yes"),
                                   encoder.continuation(moved + " no")])

        def score(self, items, outputs):
            return {"margin": torch.stack([o.logprobs[0] - o.logprobs[1] for o in outputs])}

    register_kind(YesNo())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from driftwatch.metrics import MetricSpec

if TYPE_CHECKING:
    import torch

    from driftwatch.items import ProbeItem
    from driftwatch.runner.encoding import Encoder

__all__ = [
    "DistributionOutput",
    "Generate",
    "GenerateOutput",
    "ItemProblem",
    "Loglik",
    "LoglikOutput",
    "Output",
    "ProbeKind",
    "ReplyDistribution",
    "Request",
    "TextDistribution",
]


# ------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class Loglik:
    """Teacher-forced log-likelihood of each continuation after the prompt (token ids)."""

    prompt: list[int]
    continuations: list[list[int]]


@dataclass(frozen=True)
class Generate:
    """A greedy reply of at most ``max_new_tokens`` tokens to the prompt (token ids)."""

    prompt: list[int]
    max_new_tokens: int


@dataclass(frozen=True)
class TextDistribution:
    """The next-token distribution at every position of a fixed text but its last."""

    tokens: list[int]


@dataclass(frozen=True)
class ReplyDistribution:
    """The next-token distributions along the base model's greedy reply to the prompt: the
    reply is generated once, when the reference is built, and kept in it."""

    prompt: list[int]
    max_new_tokens: int


Request = Loglik | Generate | TextDistribution | ReplyDistribution


# ------------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class LoglikOutput:
    """One :class:`Loglik` request's result, per continuation."""

    logprobs: torch.Tensor  # (O,) float64: summed log-probability of each continuation
    lengths: torch.Tensor  # (O,) long: tokens of each continuation
    mismatches: torch.Tensor  # (O,) float64: positions where the argmax is not the next token


@dataclass(frozen=True)
class GenerateOutput:
    """One :class:`Generate` request's greedy reply, cut at its budget and end of sequence."""

    tokens: list[int]
    text: str  # decoded without special tokens


@dataclass(frozen=True)
class DistributionOutput:
    """Per scored position of a distribution request, against the base model's top-k."""

    kl: torch.Tensor  # (P,) float64: KL(base ‖ now) in nats (0 when building the reference)
    top1: torch.Tensor  # (P,) float64: 1.0 where the argmax is the base's (1 when building)


Output = LoglikOutput | GenerateOutput | DistributionOutput


class ItemProblem(Exception):
    """Raised by :meth:`ProbeKind.request` when an item cannot become a request (for example
    a prompt that tokenises to nothing); the compiler reports it with the item's file, line
    and ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -------------------------------------------------------------------------------- kinds
class ProbeKind:
    """One probe kind. Subclass it, set the class attributes, implement :meth:`request` and
    :meth:`score`, and register an instance (:func:`~driftwatch.probes.registry.register_kind`).
    """

    name: ClassVar[str]
    # item fields of this kind beyond the common ones (id, capability, kind, chat, history,
    # group, lang, tags, meta): the ones it needs, and the ones it also accepts
    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    # the per-item metrics it produces, by name (driftwatch.metrics.METRICS)
    metrics: ClassVar[tuple[str, ...]]
    # metrics this kind introduces; registering the kind adds them to METRICS
    new_metrics: ClassVar[Mapping[str, MetricSpec]] = {}
    # a capability made only of this kind's items is judged on this metric by default
    default_metric: ClassVar[str] = "score"

    @property
    def fields(self) -> dict[str, bool]:
        """This kind's item fields, each mapped to whether it is required."""
        return {**dict.fromkeys(self.optional, False), **dict.fromkeys(self.required, True)}

    def check(self, item: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(field, message)`` for each kind-specific problem of one raw JSON item whose
        fields have the right types (required fields present, no field of another kind)."""
        return []

    def capability_problems(self, metric: str, items: Sequence[ProbeItem]) -> list[str]:
        """Why a capability whose headline is ``metric`` cannot be measured on ``items`` (this
        kind's items of the capability); empty when it can."""
        return []

    def request(self, item: ProbeItem, encoder: Encoder) -> Request:
        """The request the runner computes for ``item`` (raise :class:`ItemProblem` when
        there can be none)."""
        raise NotImplementedError

    def score(self, items: Sequence[ProbeItem], outputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Per-item metrics, each a ``(len(items),)`` float64 tensor (NaN: not applicable),
        from the outputs of the items' requests (in the same order)."""
        raise NotImplementedError

    def records(
        self, items: Sequence[ProbeItem], outputs: Sequence[Any]
    ) -> dict[str, torch.Tensor]:
        """Extra tensors the reference keeps for this kind (saved as ``<kind>/<name>``)."""
        return {}

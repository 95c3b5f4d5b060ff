"""The monitor's settings, grouped by concern: frozen dataclasses that check themselves.

Each group validates its fields in ``__post_init__`` (a bad value fails when it is written,
with the fix in the message) and serialises with :func:`dataclasses.asdict`, so a monitor's
configuration round-trips through JSON: :meth:`Settings.to_dict` / :meth:`Settings.from_dict`.
The :class:`~driftwatch.policy.Policy` (thresholds, action, patience…) is the fifth group.

Example::

    DriftMonitor("quick", every_n_steps=50, action="stop")          # the common case
    DriftMonitor("quick", cadence=Cadence(50, max_overhead_pct=5, adapt=True),
                 budget=ProbeBudget(memory_share=None),
                 reference=ReferenceSpec(cache_dir="/data/refs", build_from="base"),
                 rollback=RollbackPlan(after="continue", snapshot="disk",
                                       snapshot_dir="runs/exp/snap"),
                 policy=Policy(action="rollback", patience=2))

These are what the user configured. Values the monitor adapts while it runs (a stretched
cadence, a token budget halved after running out of memory) live in its ``state_dict()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from driftwatch.errors import ConfigError, did_you_mean

__all__ = [
    "Cadence",
    "Decode",
    "ProbeBudget",
    "ReferenceSpec",
    "RollbackPlan",
    "Settings",
    "probe_settings",
]

S = TypeVar("S", bound="Settings")
# how generate items are decoded: verified against the base's replies, or token by token
Decode = Literal["draft", "plain"]
# the precision probe forwards compute in: "auto" follows the training (an active
# torch.autocast, accelerate's autocast-wrapped forward, the Trainer's bf16/fp16 or
# Lightning's precision), "off" the weights' dtype, "bf16"/"fp16" autocast in that dtype
Autocast = Literal["auto", "off", "bf16", "fp16"]
AUTOCAST_CHOICES = ("auto", "off", "bf16", "fp16")


class Settings:
    """JSON round trip for a frozen settings dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``dataclasses.asdict``, tuples as lists)."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """Rebuild from :meth:`to_dict` data; unknown names are refused."""
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        for name in data:
            if name not in known:
                raise ConfigError(
                    f"{cls.__name__}: unknown setting {name!r}{did_you_mean(name, known)}; "
                    f"expected some of {known}"
                )
        return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _count(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}.{name}: expected an integer >= {minimum}, found {value!r}")


def _path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def _choice(owner: str, name: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        wanted = " or ".join(repr(o) for o in options)
        raise ConfigError(f"{owner}.{name}: expected {wanted}, found {value!r}")


@dataclass(frozen=True)
class Cadence(Settings):
    """When to probe."""

    every_n_steps: int = 100  # probe after every this many optimizer steps
    # a round whose wall time is over this share (percent) of the training time since the
    # previous round is reported (a warning, ``overhead_over_budget`` in its report)
    max_overhead_pct: float | None = None
    # stretch the cadence (never shrink it) so the next interval fits max_overhead_pct; in a
    # process group every rank uses the largest share of any rank, so the cadence stays equal
    adapt: bool = False

    def __post_init__(self) -> None:
        _count("Cadence", "every_n_steps", self.every_n_steps, 1)
        share = self.max_overhead_pct
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, (int, float)) or not share > 0
        ):
            raise ConfigError(
                f"Cadence.max_overhead_pct: expected a positive percentage, found {share!r}"
            )
        if self.adapt and share is None:
            raise ConfigError("Cadence: adapt=True needs max_overhead_pct (the budget to keep to)")

    def stretched(self, every: int, share: float) -> int:
        """The cadence after a round that took ``share`` percent of the training time: the
        interval grows by the factor that brings the share back under the budget."""
        if not self.adapt or self.max_overhead_pct is None or share <= self.max_overhead_pct:
            return every
        return every * math.ceil(share / self.max_overhead_pct)


@dataclass(frozen=True)
class ProbeBudget(Settings):
    """How large one probe pass may be (docs/benchmarks.md §4)."""

    token_budget: int = 4096  # most tokens (rows × padded width) in one forward pass
    # most memory one pass may allocate beyond the weights, as a share of the weights' bytes,
    # by driftwatch.memory's estimate from the model's config; None: token_budget alone. A
    # probe round runs on top of training's weights and optimizer state.
    memory_share: float | None = 0.1
    # out of memory halves the token budget (and the share) and retries, down to this;
    # None: 256, or token_budget when smaller. Below it the round is skipped with a warning.
    min_token_budget: int | None = None
    # "draft": each greedy reply is verified against the base model's recorded reply in one
    # forward pass and decoded only past its first divergence (the same replies, a fraction
    # of the time); "plain": every reply decoded token by token (driftwatch.runner.drafts)
    decode: Decode = "draft"
    # the precision each probe forward computes in (driftwatch.runner.precision); the
    # reference records it, and one of another compute precision is refused
    autocast: Autocast = "auto"

    def __post_init__(self) -> None:
        _count("ProbeBudget", "token_budget", self.token_budget, 1)
        _choice("ProbeBudget", "decode", self.decode, ("draft", "plain"))
        _choice("ProbeBudget", "autocast", self.autocast, AUTOCAST_CHOICES)
        floor = self.min_token_budget
        if floor is None:
            object.__setattr__(self, "min_token_budget", min(256, self.token_budget))
        elif (
            isinstance(floor, bool)
            or not isinstance(floor, int)
            or not 1 <= floor <= self.token_budget
        ):
            raise ConfigError(
                f"ProbeBudget.min_token_budget: expected 1..token_budget ({self.token_budget}), "
                f"found {floor!r}"
            )
        share = self.memory_share
        if share is not None:
            if (
                isinstance(share, bool)
                or not isinstance(share, (int, float))
                or not 0 < share < math.inf
            ):
                raise ConfigError(
                    "ProbeBudget.memory_share: expected a positive share of the weights (0.1 "
                    f"is a tenth) or None, found {share!r}"
                )
            object.__setattr__(self, "memory_share", float(share))


def probe_settings(*, topk: int = 32, reference_from: str = "model") -> dict[str, Any]:
    """The settings that change what a reference holds (its fingerprint's ``settings`` part).

    ``topk`` is the number of base log-probs kept per distribution position;
    ``reference_from`` is ``"model"`` or ``"base"`` (a PEFT model with adapters disabled).
    """
    return {"topk": topk, "reference_from": reference_from}


@dataclass(frozen=True)
class ReferenceSpec(Settings):
    """Which base reference a run is measured against, and how it is built."""

    path: str | None = None  # a reference file to use instead of the cache
    cache_dir: str | None = None  # default: ~/.cache/driftwatch/references ($DRIFTWATCH_CACHE)
    topk: int = 32  # base log-probs kept per distribution position
    # "model": the weights the run starts with; "base": a PEFT model with its adapters
    # disabled (the underlying base model), e.g. when training resumes from existing adapters
    build_from: Literal["model", "base"] = "model"
    # a reference file's compute precision (its fingerprint's "compute", e.g. "float32") to
    # accept although the run computes in another: a deliberate cross-precision comparison,
    # whose drift includes the change of precision. None: a different one is refused.
    cross_precision: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path(self.path))
        object.__setattr__(self, "cache_dir", _path(self.cache_dir))
        topk = self.topk
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= 1024:
            raise ConfigError(f"ReferenceSpec.topk: expected 1..1024, found {topk!r}")
        _choice("ReferenceSpec", "build_from", self.build_from, ("model", "base"))
        cross = self.cross_precision
        if cross is not None and (not isinstance(cross, str) or not cross):
            raise ConfigError(
                "ReferenceSpec.cross_precision: expected a reference's compute precision "
                f"(e.g. 'float32') or None, found {cross!r}"
            )
        if cross is not None and self.path is None:
            raise ConfigError(
                "ReferenceSpec.cross_precision compares with a given reference file: set "
                "path= too (a cached reference always matches the run's precision)"
            )

    @property
    def settings(self) -> dict[str, Any]:
        """What of this spec a reference's fingerprint records (:func:`probe_settings`)."""
        return probe_settings(topk=self.topk, reference_from=self.build_from)


@dataclass(frozen=True)
class RollbackPlan(Settings):
    """What ``action="rollback"`` keeps and does (the policy decides *when*)."""

    # after restoring the last healthy snapshot: "stop", or "continue" with the learning rate
    # times lr_scale; after max_rollbacks continues the next rollback stops
    after: Literal["stop", "continue"] = "stop"
    lr_scale: float = 0.5
    max_rollbacks: int = 3
    # keep the snapshot (trainable parameters and optimizer moments) in CPU "memory" or on
    # "disk" (a safetensors file in snapshot_dir); or keep none and restore the trainer's own
    # latest "checkpoint" saved at or before the last healthy round (HF Trainer, Lightning)
    snapshot: Literal["memory", "disk", "checkpoint"] = "memory"
    snapshot_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshot_dir", _path(self.snapshot_dir))
        _choice("RollbackPlan", "after", self.after, ("stop", "continue"))
        scale = self.lr_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ConfigError(f"RollbackPlan.lr_scale: expected 0 < lr_scale <= 1, found {scale!r}")
        _count("RollbackPlan", "max_rollbacks", self.max_rollbacks, 0)
        _choice("RollbackPlan", "snapshot", self.snapshot, ("memory", "disk", "checkpoint"))
        if self.snapshot == "disk" and self.snapshot_dir is None:
            raise ConfigError("RollbackPlan: snapshot='disk' needs a directory (snapshot_dir=)")

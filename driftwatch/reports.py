"""The drift report types: what one probe round says, as plain data (docs/architecture.md).

:class:`MetricDrift` is one metric of one capability; :class:`CapabilityDrift` holds a
capability's metrics and names its headline; :class:`DriftReport` is a whole round. They are
produced by :mod:`driftwatch.drift` and read by the policy, the sinks and the formatting; they
round-trip through JSON (:meth:`DriftReport.to_dict`, :meth:`DriftReport.from_dict`), which is
what the history file holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CapabilityDrift", "DriftReport", "MetricDrift"]


@dataclass(frozen=True)
class MetricDrift:
    """One metric of one capability: base and current value, change and its 95% interval.

    For a capability's ``mean`` (the mean Δ% of its named metrics) only the percentages are
    defined: ``base``, ``now``, ``delta`` and the unit interval are NaN.
    """

    metric: str
    base: float
    now: float
    delta: float  # now − base, in the metric's unit
    delta_pct: float | None  # 100·delta / max(|base|, floor); None for kl
    ci_low: float  # 95% interval of delta (NaN without per-item pairs)
    ci_high: float
    n: int  # paired units (items, or paraphrase groups for consistency)
    ci_low_pct: float | None = None  # the interval on the Δ% scale; None for kl
    ci_high_pct: float | None = None


@dataclass(frozen=True)
class CapabilityDrift:
    id: str
    group: str
    metric: str  # the headline metric ("mean" where the capability names its metrics)
    metrics: dict[str, MetricDrift]
    # items whose log-probabilities came out NaN/inf this round; they are left out of the
    # metrics, and the policy treats a count above 0 as a breach (Policy.nonfinite)
    nonfinite: int = 0
    # the capability's named metrics (manifest ``metrics``), whose mean Δ% is the headline
    parts: tuple[str, ...] = ()

    @property
    def headline(self) -> MetricDrift:
        return self.metrics[self.metric]

    @property
    def delta_pct(self) -> float | None:
        return self.headline.delta_pct

    @property
    def value(self) -> float:
        """The headline number: Δ% of the headline metric, or its value where it has no
        percentage (KL, whose base is 0 by definition)."""
        head = self.headline
        return head.now if head.delta_pct is None else head.delta_pct

    @property
    def unit(self) -> str:
        """``"%"`` for a Δ%, else the metric's own unit (``"nats"`` for KL)."""
        return "%" if self.headline.delta_pct is not None else "nats"


@dataclass(frozen=True)
class DriftReport:
    """Drift of every capability at one training step, plus unweighted group means."""

    step: int
    capabilities: dict[str, CapabilityDrift]
    groups: dict[str, float]  # group -> mean Δ% of its capabilities' headline metric
    seconds: float = 0.0  # wall time of the probe round
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN is written as null)."""
        out: dict[str, Any] = _nan_to_none(asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        caps = {}
        for cid, cap in data["capabilities"].items():
            metrics = {name: MetricDrift(**_restore_nan(m)) for name, m in cap["metrics"].items()}
            caps[cid] = CapabilityDrift(
                cap["id"],
                cap["group"],
                cap["metric"],
                metrics,
                int(cap.get("nonfinite", 0)),
                tuple(cap.get("parts", ())),
            )
        return cls(
            step=int(data["step"]),
            capabilities=caps,
            groups={k: float(v) for k, v in data["groups"].items()},
            seconds=float(data.get("seconds", 0.0)),
            extra={k: float(v) for k, v in data.get("extra", {}).items()},
        )


_OPTIONAL = ("delta_pct", "ci_low_pct", "ci_high_pct")


def _restore_nan(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of the NaN → null mapping of :meth:`DriftReport.to_dict` for one metric."""
    return {k: math.nan if v is None and k not in _OPTIONAL else v for k, v in fields.items()}


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value

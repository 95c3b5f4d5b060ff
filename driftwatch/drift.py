"""Per-item results → per-capability drift with paired confidence intervals (docs/architecture.md).

Drift is always measured against the base model's own value, never against a gold standard:
``Δ% = 100 · (now − base) / max(|base|, floor)``, as CapTrack reports it, plus the absolute
change. Because every item is scored by both the base and the current model, the change is a
*paired* difference: its standard error is that of the per-item differences, which is much
tighter than comparing two independent means. The interval is ``Δ ± z·se``.

Distribution drift (metric ``kl``) is the KL itself: its base value is 0 by definition, so it
has no percentage.

The arithmetic lives once: the sufficient statistics of the finite pairs (``_update``) and
their summary (``_compute``), with :func:`paired_drift` as the public form. Every rank holds
every item's values after a round (the runner gathers them), so nothing here needs reducing
across ranks. :func:`aggregate` does the capability / group bookkeeping for per-metric tables
produced by any evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.metrics import CONSISTENCY, METRICS, Z_95, item_metrics
from driftwatch.probes.group import consistency

if TYPE_CHECKING:
    from driftwatch.suite import ProbeSuite

__all__ = [
    "DEFAULT_FLOOR",
    "CapabilityDrift",
    "DriftReport",
    "MetricDrift",
    "aggregate",
    "compare",
    "paired_drift",
]

DEFAULT_FLOOR = 0.1  # Δ% denominator floor: a base score of 0.02 must not turn +0.01 into +50%


# ------------------------------------------------------------------------ paired statistics
def _update(now: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Sufficient statistics ``[n, Σbase, Σnow, Σd, Σd²]`` of the finite pairs (float64)."""
    now, base = now.double().flatten(), base.double().flatten()
    keep = torch.isfinite(now) & torch.isfinite(base)
    now, base = now[keep], base[keep]
    diff = now - base
    return torch.stack(
        [
            torch.tensor(float(now.numel()), dtype=torch.float64, device=now.device),
            base.sum(),
            now.sum(),
            diff.sum(),
            (diff * diff).sum(),
        ]
    )


def _compute(stats: torch.Tensor) -> dict[str, float]:
    n, s_base, s_now, s_diff, s_sq = (float(x) for x in stats)
    if n == 0:
        return {"n": 0, "base": math.nan, "now": math.nan, "delta": math.nan, "se": math.nan}
    mean = s_diff / n
    var = max(s_sq - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return {
        "n": int(n),
        "base": s_base / n,
        "now": s_now / n,
        "delta": mean,
        "se": math.sqrt(var / n),
    }


def paired_drift(now: torch.Tensor, base: torch.Tensor) -> dict[str, float]:
    """Mean base, mean now, mean paired difference and its standard error (finite pairs only).

    Example:
        >>> paired_drift(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0]))["delta"]
        -0.3333333333333333
    """
    return _compute(_update(now, base))


# ------------------------------------------------------------------------------ reports
@dataclass(frozen=True)
class MetricDrift:
    """One metric of one capability: base and current value, change and its 95% interval."""

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
    metric: str  # the headline metric
    metrics: dict[str, MetricDrift]
    # items whose log-probabilities came out NaN/inf this round; they are left out of the
    # metrics, and the policy treats a count above 0 as a breach (Policy.nonfinite)
    nonfinite: int = 0

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
                cap["id"], cap["group"], cap["metric"], metrics, int(cap.get("nonfinite", 0))
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


def _metric_drift(metric: str, stats: Mapping[str, float], floor: float) -> MetricDrift:
    base, delta, se = stats["base"], stats["delta"], stats["se"]
    low, high = delta - Z_95 * se, delta + Z_95 * se
    if not METRICS.get(metric, METRICS["score"]).percent:
        return MetricDrift(metric, base, stats["now"], delta, None, low, high, int(stats["n"]))
    scale = 100.0 / max(abs(base), floor)
    return MetricDrift(
        metric,
        base,
        stats["now"],
        delta,
        delta * scale,
        low,
        high,
        int(stats["n"]),
        low * scale,
        high * scale,
    )


def _group_means(
    caps: Mapping[str, CapabilityDrift], weights: Mapping[str, float]
) -> dict[str, float]:
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    for cap in caps.values():
        pct = cap.delta_pct
        if pct is None or not math.isfinite(pct):
            continue
        w = weights.get(cap.id, 1.0)
        sums[cap.group] = sums.get(cap.group, 0.0) + w * pct
        totals[cap.group] = totals.get(cap.group, 0.0) + w
    return {g: sums[g] / totals[g] for g in sums}


# ------------------------------------------------------------------------------ entry points
def compare(
    now: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    suite: ProbeSuite,
    *,
    step: int,
    floor: float = DEFAULT_FLOOR,
    seconds: float = 0.0,
    nonfinite: torch.Tensor | None = None,
) -> DriftReport:
    """Pair current per-item values with the reference's and summarise per capability.

    Args:
        now, base: metric name -> ``(N,)`` values over ``suite.items`` (NaN = not applicable),
            as in :attr:`driftwatch.runner.ProbeResult.values` and the reference.
        floor: smallest denominator of Δ%.
        nonfinite: ``(N,)`` bool, the items whose log-probabilities were NaN/inf this round
            (:attr:`driftwatch.runner.ProbeResult.nonfinite`); counted per capability.
    """
    if floor <= 0:
        raise ConfigError(f"floor: expected a positive number, found {floor}")
    caps: dict[str, CapabilityDrift] = {}
    for cap in suite.capabilities:
        index = torch.tensor(
            [i for i, item in enumerate(suite.items) if item.capability == cap.id], dtype=torch.long
        )
        metrics: dict[str, MetricDrift] = {}
        for name in item_metrics():
            if name not in now or name not in base:
                continue
            b, n = base[name][index], now[name][index]
            if bool(torch.isfinite(b).any()):
                metrics[name] = _metric_drift(name, paired_drift(n, b), floor)
        grouped = [
            (i, item.group)
            for i, item in enumerate(suite.items)
            if item.capability == cap.id and item.group is not None
        ]
        if grouped and "score" in now and "score" in base:
            labels = {g: k for k, g in enumerate(dict.fromkeys(g for _, g in grouped))}
            rows = torch.tensor([i for i, _ in grouped])
            gidx = torch.tensor([labels[g] for _, g in grouped])
            c_now = consistency(now["score"][rows], gidx, len(labels))
            c_base = consistency(base["score"][rows], gidx, len(labels))
            metrics[CONSISTENCY] = _metric_drift(CONSISTENCY, paired_drift(c_now, c_base), floor)
        if cap.metric not in metrics:
            raise DriftwatchError(
                f"capability {cap.id!r}: headline metric {cap.metric!r} has no "
                f"values (have {sorted(metrics)})"
            )
        bad = 0 if nonfinite is None or not len(index) else int(nonfinite[index].sum())
        caps[cap.id] = CapabilityDrift(cap.id, cap.group, cap.metric, metrics, bad)
    weights = {c.id: c.weight for c in suite.capabilities}
    return DriftReport(
        step=step, capabilities=caps, groups=_group_means(caps, weights), seconds=seconds
    )


MEAN = "mean"  # the metric entry holding a capability's mean Δ% over its metrics (aggregate)


def aggregate(
    now: Mapping[str, float],
    base: Mapping[str, float],
    capabilities: Mapping[str, Sequence[str]],
    *,
    groups: Mapping[str, str] | None = None,
    step: int = 0,
    floor: float = DEFAULT_FLOOR,
) -> DriftReport:
    """Drift from plain per-metric tables (e.g. another evaluator's results), by CapTrack's
    aggregation rule.

    Each metric's Δ% is ``100 · (now − base) / max(|base|, floor)``; ``floor`` only guards
    tiny bases, and ``floor=0`` is CapTrack's plain ``100 · (adapted − base) / base`` (a zero
    base then has no percentage: NaN). A capability's Δ% is the unweighted mean of its
    metrics' Δ% (CapTrack's capability table), so a metric on a large scale (a word count)
    weighs no more than a rate beside it; a group's is the unweighted mean of its
    capabilities'. The report keeps every metric's drift under its name and the capability's
    mean under ``"mean"``, its headline. There are no per-item pairs, so intervals are NaN.

    Args:
        now, base: metric name -> value.
        capabilities: capability id -> the metric names it averages.
        groups: capability id -> CAN / WILL / HOW / other (default "other").

    Example:
        >>> r = aggregate({"a": 0.5, "b": 10.0}, {"a": 0.6, "b": 8.0}, {"C1": ["a", "b"]},
        ...               groups={"C1": "CAN"}, floor=0)
        >>> {m: round(d.delta_pct, 2) for m, d in r.capabilities["C1"].metrics.items()}
        {'a': -16.67, 'b': 25.0, 'mean': 4.17}
        >>> round(r.capabilities["C1"].delta_pct, 2), round(r.groups["CAN"], 2)
        (4.17, 4.17)

    Raises:
        DriftwatchError: a capability names no metric, or one missing from a table.
        ConfigError: a negative floor.
    """
    if floor < 0:
        raise ConfigError(f"floor: expected a number >= 0, found {floor}")
    caps: dict[str, CapabilityDrift] = {}
    for cid, names in capabilities.items():
        missing = [m for m in names if m not in now or m not in base]
        if not names or missing:
            raise DriftwatchError(
                f"capability {cid!r}: metrics {missing or 'none'} missing from the "
                f"tables (now has {sorted(now)}, base has {sorted(base)})"
            )
        if MEAN in names:
            raise DriftwatchError(f"capability {cid!r}: a metric may not be called {MEAN!r}")
        nan = math.nan
        metrics: dict[str, MetricDrift] = {}
        for name in names:
            b, n = float(base[name]), float(now[name])
            denominator = max(abs(b), floor)
            pct = 100.0 * (n - b) / denominator if denominator > 0 else nan
            metrics[name] = MetricDrift(name, b, n, n - b, pct, nan, nan, 0)
        pcts = [m.delta_pct or 0.0 for m in metrics.values()]
        mean = math.fsum(pcts) / len(pcts)
        metrics[MEAN] = MetricDrift(MEAN, nan, nan, nan, mean, nan, nan, 0)
        group = (groups or {}).get(cid, "other")
        caps[cid] = CapabilityDrift(cid, group, MEAN, metrics)
    return DriftReport(step=step, capabilities=caps, groups=_group_means(caps, {}))

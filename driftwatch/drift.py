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
from dataclasses import replace
from statistics import NormalDist
from typing import TYPE_CHECKING

import torch

from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.metrics import CONSISTENCY, MEAN, METRICS, Z_95, item_metrics
from driftwatch.probes.group import consistency
from driftwatch.reports import CapabilityDrift, DriftReport, MetricDrift

if TYPE_CHECKING:
    from driftwatch.items import Capability
    from driftwatch.suite import ProbeSuite

__all__ = [
    "DEFAULT_FLOOR",
    "FAMILY",
    "CapabilityDrift",
    "DriftReport",
    "MetricDrift",
    "aggregate",
    "compare",
    "family_z",
    "mean_drift",
    "mean_se",
    "paired_drift",
    "pct_se",
    "spread_drift",
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


def spread_drift(now: torch.Tensor, base: torch.Tensor) -> dict[str, float]:
    """Standard deviation over items, base and now, their difference and its jackknife
    standard error (finite pairs only; at least 3 for an error, else NaN).

    The jackknife leaves one item out at a time: ``se² = (n−1)/n · Σ(dᵢ − d̄)²`` over the
    leave-one-out differences ``dᵢ`` of the two standard deviations. Leaving an item out of
    both sides keeps the estimate paired.

    Example:
        >>> r = spread_drift(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 2.0, 3.0, 3.0]))
        >>> round(r["base"], 3), round(r["now"], 3), round(r["delta"], 3)
        (0.577, 1.291, 0.714)
    """
    now, base = now.double().flatten(), base.double().flatten()
    keep = torch.isfinite(now) & torch.isfinite(base)
    now, base = now[keep], base[keep]
    n = int(now.numel())
    if n < 2:
        nan = math.nan
        return {"n": n, "base": nan, "now": nan, "delta": nan, "se": nan}
    s_now, s_base = float(now.std()), float(base.std())
    se = math.nan
    if n >= 3:
        d = _leave_one_out_std(now) - _leave_one_out_std(base)
        se = math.sqrt((n - 1) / n * float(((d - d.mean()) ** 2).sum()))
    return {"n": n, "base": s_base, "now": s_now, "delta": s_now - s_base, "se": se}


def _leave_one_out_std(x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` standard deviations (ddof 1) of ``x`` with each element left out in turn."""
    n = x.numel()
    centred = x - x.mean()  # centring first keeps the sums of squares well conditioned
    total, squares = centred.sum(), (centred * centred).sum()
    mean = (total - centred) / (n - 1)
    var = (squares - centred * centred - (n - 1) * mean * mean) / (n - 2)
    return var.clamp_min(0.0).sqrt()


def pct_se(drift: MetricDrift) -> float | None:
    """The standard error of a metric's Δ%, read off its 95% interval (None without one)."""
    if drift.ci_low_pct is None or drift.ci_high_pct is None:
        return None
    return (drift.ci_high_pct - drift.ci_low_pct) / (2 * Z_95)


# The CAN, WILL and HOW capabilities of CapTrack's taxonomy that driftwatch measures: all of
# them but W2 and H5, every one in `standard` (docs/suites.md).
FAMILY = 15


def family_z(report: DriftReport, alpha: float = 0.05, family: int = FAMILY) -> float:
    """The two-sided normal quantile that holds ``alpha`` over a family of capabilities
    together (Bonferroni): the round's CAN, WILL and HOW capabilities, and never fewer than
    ``family``. 2.94 for the default 15.

    A line per capability tests every capability every round. At 95% each, ``standard``'s 15
    found a capability past its line in 12 of 24 rounds of the base model with random noise
    added, nothing learned (docs/calibration.md, "On a GPU"); widened to this quantile, in
    none. The family is every capability driftwatch measures, not only those a live suite
    probes: a capability's line then means the same whichever suite read it, and a live
    round holding a change is never more easily alarmed than the offline evaluation that
    defines the harm (docs/calibration.md, "Recalibrated").
    """
    k = sum(1 for cap in report.capabilities.values() if cap.group in ("CAN", "WILL", "HOW"))
    return NormalDist().inv_cdf(1 - alpha / (2 * max(k, family, 1)))


def mean_se(ses: Sequence[float]) -> float:
    """The standard error of the unweighted mean of independent estimates: ``sqrt(Σ se²) / k``."""
    return math.sqrt(math.fsum(se * se for se in ses)) / len(ses)


def mean_drift(parts: Sequence[MetricDrift]) -> MetricDrift:
    """The unweighted mean of metrics' Δ% (CapTrack's capability Δ%), with the interval of a
    mean of independent estimates (:func:`mean_se`, each metric's error read off its Δ%
    interval; no interval where a metric has none). Only the percentages are defined; the
    rest is NaN.

    Example:
        >>> a = MetricDrift("a", 1.0, 0.9, -0.1, -10.0, -0.2, 0.0, 20, -20.0, 0.0)
        >>> b = MetricDrift("b", 1.0, 1.0, 0.0, 0.0, -0.1, 0.1, 20, -10.0, 10.0)
        >>> m = mean_drift([a, b])
        >>> m.delta_pct, round(m.ci_high_pct - m.delta_pct, 2)
        (-5.0, 7.07)
    """
    nan = math.nan
    mean = math.fsum(nan if p.delta_pct is None else p.delta_pct for p in parts) / len(parts)
    n = sum(p.n for p in parts)
    ses = [pct_se(p) for p in parts]
    if any(se is None for se in ses):
        return MetricDrift(MEAN, nan, nan, nan, mean, nan, nan, n)
    half = Z_95 * mean_se([se for se in ses if se is not None])
    return MetricDrift(MEAN, nan, nan, nan, mean, nan, nan, n, mean - half, mean + half)


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


def group_means(
    caps: Mapping[str, CapabilityDrift], weights: Mapping[str, float]
) -> dict[str, float]:
    """Each CapTrack group's mean Δ% over its capabilities with a finite Δ%, weighted by
    ``weights`` (capability id -> weight; 1.0 where absent: CapTrack's unweighted mean)."""
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
        parts = _named_metrics(cap, suite, index, now, base, floor)
        metrics.update(parts)
        if parts:
            metrics[MEAN] = mean_drift(list(parts.values()))
        if cap.metric not in metrics:
            raise DriftwatchError(
                f"capability {cap.id!r}: headline metric {cap.metric!r} has no "
                f"values (have {sorted(metrics)})"
            )
        bad = 0 if nonfinite is None or not len(index) else int(nonfinite[index].sum())
        caps[cap.id] = CapabilityDrift(cap.id, cap.group, cap.metric, metrics, bad, tuple(parts))
    weights = {c.id: c.weight for c in suite.capabilities}
    return DriftReport(
        step=step, capabilities=caps, groups=group_means(caps, weights), seconds=seconds
    )


def _named_metrics(
    cap: Capability,
    suite: ProbeSuite,
    index: torch.Tensor,
    now: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    floor: float,
) -> dict[str, MetricDrift]:
    """The drift of each of ``cap``'s named metrics, over the items it selects."""
    out: dict[str, MetricDrift] = {}
    for d in cap.metrics:
        if d.metric not in now or d.metric not in base:
            continue
        rows = torch.tensor(
            [int(i) for i in index if d.selects(suite.items[int(i)])], dtype=torch.long
        )
        values_now, values_base = now[d.metric][rows], base[d.metric][rows]
        stats = (spread_drift if d.stat == "std" else paired_drift)(values_now, values_base)
        out[d.name] = replace(_metric_drift(d.metric, stats, floor), metric=d.name)
    return out


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
        metrics[MEAN] = mean_drift(list(metrics.values()))
        group = (groups or {}).get(cid, "other")
        caps[cid] = CapabilityDrift(cid, group, MEAN, metrics, parts=tuple(names))
    return DriftReport(step=step, capabilities=caps, groups=group_means(caps, {}))

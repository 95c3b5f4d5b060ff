"""Drift reports as text: the one place a number becomes a string.

Every human-readable rendering of a :class:`~driftwatch.drift.DriftReport` comes from here:
the ``driftwatch probe`` table, the ``scan`` trajectory, the demo's live block per round and the
log line of every round. A capability's headline is its Δ% (``+1.2%``), or its value in its own
unit where it has no percentage (KL: ``0.0163 nats``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift
from driftwatch.policy import Decision

__all__ = [
    "comparison_table",
    "interval",
    "log_line",
    "parts",
    "round_block",
    "significant",
    "table",
    "trajectory",
    "value",
]


def _num(number: float | None, fmt: str) -> str:
    return "-" if number is None or not math.isfinite(number) else format(number, fmt)


def value(cap: CapabilityDrift) -> str:
    """The headline: ``+1.2%``, or ``0.0163 nats`` for a capability without a percentage."""
    return _value(cap.headline)


def interval(cap: CapabilityDrift) -> str:
    """The 95% interval of the headline, on its scale: ``[-3.1, +0.4]`` or ``[0.0101, 0.0225]
    nats`` (``[-, -]`` without per-item pairs)."""
    return _interval(cap.headline)


def _value(m: MetricDrift) -> str:
    if m.delta_pct is not None:
        return f"{_num(m.delta_pct, '+.1f')}%"
    return f"{_num(m.now, '.4f')} nats"


def _interval(m: MetricDrift) -> str:
    if m.delta_pct is not None:
        return f"[{_num(m.ci_low_pct, '+.1f')}, {_num(m.ci_high_pct, '+.1f')}]"
    low, high = m.base + m.ci_low, m.base + m.ci_high
    return f"[{_num(low, '.4f')}, {_num(high, '.4f')}] nats"


def significant(cap: CapabilityDrift | MetricDrift) -> bool:
    """Whether the whole 95% interval of a capability's headline (or of one metric) lies on
    one side of no change."""
    head = cap.headline if isinstance(cap, CapabilityDrift) else cap
    if head.delta_pct is not None and head.ci_low_pct is not None and head.ci_high_pct is not None:
        return head.ci_low_pct > 0 or head.ci_high_pct < 0
    return head.ci_low > 0 or head.ci_high < 0


def parts(cap: CapabilityDrift) -> list[MetricDrift]:
    """The capability's named metrics, whose mean Δ% is its headline (none for most)."""
    return [cap.metrics[name] for name in cap.parts if name in cap.metrics]


def _columns(
    rows: Sequence[Sequence[str]], *, right: bool = False, rule: bool = False
) -> list[str]:
    """Rows as aligned columns; ``rule`` draws a line of dashes under the first."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    pad = str.rjust if right else str.ljust
    lines = ["  ".join(pad(v, w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _means(report: DriftReport, crossed: Collection[str] = ()) -> str:
    return ", ".join(
        f"{g} {v:+.1f}%{'  ✗' if g in crossed else ''}" for g, v in report.groups.items()
    )


def table(report: DriftReport) -> str:
    """One row per capability (base, now, Δ, interval, n), then the group means."""
    rows = [("capability", "group", "metric", "base", "now", "Δ", "95% CI", "n")]
    for cap in report.capabilities.values():
        head = cap.headline
        rows.append(
            (
                cap.id,
                cap.group,
                head.metric,
                _num(head.base, ".3f"),
                _num(head.now, ".3f"),
                value(cap),
                interval(cap),
                str(head.n),
            )
        )
        for m in parts(cap):
            row = (f" └ {m.metric}", "", "", _num(m.base, ".3f"), _num(m.now, ".3f"))
            rows.append((*row, _value(m), _interval(m), str(m.n)))
    lines = _columns(rows, rule=True)
    lines.append(f"group means: {_means(report)}   (probe round {report.seconds:.1f}s)")
    return "\n".join(lines)


def round_block(report: DriftReport, decision: Decision) -> str:
    """The live block of one round: capability, Δ, interval, a mark where a line is crossed."""
    crossed = {b.target for b in decision.breaches}
    lines = [f"── probe round at step {report.step} ({report.seconds:.1f}s) " + "─" * 20]
    lines.append(f"  {'capability':<11} {'group':<6} {'Δ':>12}   {'95% interval':<22} ")
    for cap in report.capabilities.values():
        mark = "  ✗ breach" if cap.id in crossed else ""
        lines.append(f"  {cap.id:<11} {cap.group:<6} {value(cap):>12}   {interval(cap)}{mark}")
        for m in parts(cap):
            name = f"└ {m.metric}"
            lines.append(f"   {name:<17} {_value(m):>12}   {_interval(m)}")
    lines.append(f"  group means: {_means(report, crossed)}")
    if decision.action != "continue":
        lines.append(f"  → {decision.message}")
    return "\n".join(lines)


def log_line(report: DriftReport, decision: Decision) -> str:
    """One line per round: every capability's headline, the decision."""
    parts = []
    for cap in report.capabilities.values():
        if cap.nonfinite:
            parts.append(f"{cap.id} NaN/inf in {cap.nonfinite} items")
        else:
            parts.append(f"{cap.id} {value(cap)}")
    return (
        f"driftwatch step {report.step} ({report.seconds:.1f}s): {', '.join(parts)} -> "
        f"{decision.message}"
    )


def trajectory(history: Sequence[DriftReport], decisions: Sequence[Decision]) -> str:
    """A step × capability table of headlines; ``*`` marks a crossed line."""
    caps = list(history[0].capabilities) if history else []
    rows = [["step", *caps]]
    for report, decision in zip(history, decisions, strict=True):
        crossed = {b.target for b in decision.breaches}
        cells = [
            value(cap) + ("*" if cid in crossed or cap.group in crossed else "")
            for cid, cap in report.capabilities.items()
        ]
        rows.append([str(report.step), *cells])
    return "\n".join(_columns(rows, right=True))


def comparison_table(labels: Sequence[str], reports: Sequence[DriftReport]) -> str:
    """A Markdown table of several models against one base: a row per capability, a column
    per model, each cell the headline (Δ% or KL) with ``*`` where its 95% interval excludes no
    change. Capabilities missing from a model's report show ``-``."""
    caps: dict[str, CapabilityDrift] = {}
    for report in reports:
        for cid, cap in report.capabilities.items():
            caps.setdefault(cid, cap)
    head = ["capability", "group", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(labels)]
    for cid, first in caps.items():
        cells = []
        for report in reports:
            now = report.capabilities.get(cid)
            cells.append("-" if now is None else value(now) + ("*" if significant(now) else ""))
        lines.append("| " + " | ".join([cid, first.group, *cells]) + " |")
    return "\n".join(lines)

"""Pictures of a drift report (matplotlib, an optional extra: ``driftwatch-train[plots]``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from driftwatch.drift import DriftReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["radar"]


def radar(report: DriftReport, *, limit: float = 50.0) -> Figure:
    """A capability radar: the base model is the circle at 0%, the current model the polygon.

    Each spoke is one capability's headline Δ% (clipped to ±``limit``); distribution
    capabilities, which have no percentage, are left out. Capabilities are ordered by group.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "capability plots need matplotlib: pip install 'driftwatch-train[plots]'"
        ) from err
    caps = [c for c in report.capabilities.values() if c.delta_pct is not None]
    caps.sort(
        key=lambda c: (
            ("CAN", "WILL", "HOW", "other").index(c.group)
            if c.group in ("CAN", "WILL", "HOW", "other")
            else 4
        )
    )
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot(projection="polar")
    if not caps:
        axes.set_title(f"step {report.step}: no capability with a percentage")
        return figure
    angles = [2 * math.pi * k / len(caps) for k in range(len(caps))]
    values = [max(-limit, min(limit, c.delta_pct or 0.0)) for c in caps]
    closed = [*angles, angles[0]]
    axes.plot(closed, [0.0] * len(closed), color="grey", linewidth=1, label="base")
    axes.plot(closed, [*values, values[0]], color="tab:red", linewidth=2, label="now")
    axes.fill(closed, [*values, values[0]], color="tab:red", alpha=0.15)
    axes.set_xticks(angles)
    axes.set_xticklabels([f"{c.id}\n{c.group}" for c in caps], fontsize=8)
    axes.set_ylim(-limit, limit)
    axes.set_title(f"Δ% per capability, step {report.step}", fontsize=10)
    axes.legend(loc="lower right", fontsize=7)
    return figure

"""Pictures of a drift report (matplotlib, an optional extra: ``driftwatch-train[plots]``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftwatch.drift import DriftReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["radar", "trajectory"]


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "capability plots need matplotlib: pip install 'driftwatch-train[plots]'"
        ) from err
    return Figure


def trajectory(history: Sequence[DriftReport]) -> Figure:
    """Δ% of every capability against the training step (KL on a second axis), CapTrack-style.

    One panel per group (CAN, WILL, HOW) plus one for distribution capabilities in nats.
    """
    figure_class = _figure_class()
    caps = list(history[0].capabilities.values()) if history else []
    groups = [g for g in ("CAN", "WILL", "HOW") if any(c.group == g for c in caps)]
    dist = [c.id for c in caps if c.delta_pct is None]
    panels = [*groups, *(["KL"] if dist else [])] or ["none"]
    figure = figure_class(figsize=(4.2 * len(panels), 3.4))
    steps = [r.step for r in history]
    for n, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), n)
        for cap in caps:
            if (panel == "KL") != (cap.id in dist) or (panel != "KL" and cap.group != panel):
                continue
            ys = [r.capabilities[cap.id].value for r in history]
            axes.plot(steps, ys, marker="o", label=cap.id)
        axes.axhline(0.0, color="grey", linewidth=0.8)
        axes.set_title(panel if panel == "KL" else f"{panel}: Δ% vs base", fontsize=10)
        axes.set_xlabel("step")
        axes.set_ylabel("KL (nats/token)" if panel == "KL" else "Δ%")
        if axes.lines[1:]:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def radar(report: DriftReport, *, limit: float = 50.0) -> Figure:
    """A capability radar: the base model is the circle at 0%, the current model the polygon.

    Each spoke is one capability's headline Δ% (clipped to ±``limit``); distribution
    capabilities, which have no percentage, are left out. Capabilities are ordered by group.
    """
    figure_class = _figure_class()
    caps = [c for c in report.capabilities.values() if c.delta_pct is not None]
    caps.sort(
        key=lambda c: (
            ("CAN", "WILL", "HOW", "other").index(c.group)
            if c.group in ("CAN", "WILL", "HOW", "other")
            else 4
        )
    )
    figure = figure_class(figsize=(4.5, 4.5))
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

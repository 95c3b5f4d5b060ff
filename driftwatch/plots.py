"""Pictures of drift reports (matplotlib, an optional extra: ``driftwatch-train[plots]``): a run's
trajectory, one round's radar, and CapTrack's comparison of several models (heatmap, spider)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftwatch.drift import DriftReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["available", "heatmap", "png", "radar", "spider", "trajectory"]

_GROUPS = ("CAN", "WILL", "HOW", "other")


def available() -> bool:
    """Whether matplotlib is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


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
    """A capability radar of one round: :func:`spider` of the current model alone."""
    figure = spider(["now"], [report], limit=limit)
    axes = figure.axes[0]
    if axes.lines:
        axes.set_title(f"Δ% per capability, step {report.step}", fontsize=10)
    else:
        axes.set_title(f"step {report.step}: no capability with a percentage")
    return figure


def _ordered(report: DriftReport, *, percent: bool) -> list[str]:
    """Capability ids of ``report`` by group (CAN, WILL, HOW, other), with or without a Δ%."""
    caps = [c for c in report.capabilities.values() if (c.delta_pct is not None) == percent]
    caps.sort(key=lambda c: _GROUPS.index(c.group) if c.group in _GROUPS else len(_GROUPS))
    return [c.id for c in caps]


def spider(labels: Sequence[str], reports: Sequence[DriftReport], *, limit: float = 50.0) -> Figure:
    """CapTrack's spider plot: the base model is the circle at 0%, each model a polygon.

    Each spoke is one capability's headline Δ% (clipped to ±``limit``); distribution
    capabilities, which have no percentage, are left out. Capabilities are ordered by group.
    """
    figure_class = _figure_class()
    figure = figure_class(figsize=(5.2, 5.2) if len(reports) > 1 else (4.5, 4.5))
    axes = figure.add_subplot(projection="polar")
    ids = _ordered(reports[0], percent=True) if reports else []
    if not ids:
        axes.set_title("no capability with a percentage")
        return figure
    groups = {cid: reports[0].capabilities[cid].group for cid in ids}
    angles = [2 * math.pi * k / len(ids) for k in range(len(ids))]
    closed = [*angles, angles[0]]
    axes.plot(closed, [0.0] * len(closed), color="grey", linewidth=1, label="base")
    for n, (label, report) in enumerate(zip(labels, reports, strict=True)):
        values = [max(-limit, min(limit, report.capabilities[c].delta_pct or 0.0)) for c in ids]
        color = "tab:red" if len(reports) == 1 else f"C{n}"
        axes.plot(closed, [*values, values[0]], color=color, linewidth=2, label=label)
        axes.fill(closed, [*values, values[0]], color=color, alpha=0.12)
    axes.set_xticks(angles)
    axes.set_xticklabels([f"{c}\n{groups[c]}" for c in ids], fontsize=8)
    axes.set_ylim(-limit, limit)
    axes.set_title(f"Δ% per capability vs base (clipped at ±{limit:g}%)", fontsize=9)
    axes.legend(loc="upper right", bbox_to_anchor=(1.12, 1.12), fontsize=7)
    return figure


def heatmap(
    labels: Sequence[str],
    reports: Sequence[DriftReport],
    *,
    limit: float = 50.0,
    max_kl: float = 0.3,
    title: str = "Δ% vs base (* 95% interval excludes 0)",
) -> Figure:
    """CapTrack's comparison view: capabilities × models, each cell the headline Δ% on a
    diverging scale (red a drop, blue a gain, clipped at ±``limit``), ``*`` where its 95%
    interval excludes no change. Distribution capabilities show their KL in nats, shaded
    from white to purple at ``max_kl``."""
    from matplotlib import colormaps

    from driftwatch.formatting import significant

    figure_class = _figure_class()
    pct = _ordered(reports[0], percent=True) if reports else []
    kl = _ordered(reports[0], percent=False) if reports else []
    rows = [*pct, *kl]
    figure = figure_class(figsize=(1.6 + 1.25 * max(1, len(reports)), 0.9 + 0.36 * len(rows)))
    axes = figure.add_subplot()
    diverging, shade = colormaps["RdBu"], colormaps["Purples"]
    cells = []
    for r, cid in enumerate(rows):
        line = []
        for c, report in enumerate(reports):
            cap = report.capabilities.get(cid)
            if cap is None or not math.isfinite(cap.value):
                color, text = (0.9, 0.9, 0.9, 1.0), "-"
            elif cap.delta_pct is not None:
                color = diverging(0.5 + 0.5 * max(-1.0, min(1.0, cap.delta_pct / limit)))
                text = f"{cap.delta_pct:+.1f}"
            else:
                color = shade(0.6 * max(0.0, min(1.0, cap.value / max_kl)))
                text = f"{cap.value:.3f}"
            mark = "*" if cap is not None and math.isfinite(cap.value) and significant(cap) else ""
            line.append(color)
            axes.text(c, r, text + mark, ha="center", va="center", fontsize=8)
        cells.append(line)
    if rows and reports:
        axes.imshow(cells, aspect="auto")
    group = {cid: reports[0].capabilities[cid].group for cid in rows}
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([f"{cid} {group[cid]}" + (" (KL)" if cid in kl else "") for cid in rows])
    axes.set_xticks(range(len(reports)))
    axes.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    axes.tick_params(length=0)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def png(figure: Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (to write atomically, or to embed in a page)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()

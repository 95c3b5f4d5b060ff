"""Pictures of drift reports (matplotlib, an optional extra: ``driftwatch-train[plots]``): a run's
trajectory, one round's radar, and CapTrack's comparison of several models (heatmap, spider)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from driftwatch.drift import CapabilityDrift, DriftReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.projections.polar import PolarAxes

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
    from matplotlib.ticker import MaxNLocator

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
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
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


def _ordered(reports: Sequence[DriftReport], *, percent: bool) -> list[str]:
    """Capability ids of any of ``reports`` by group (CAN, WILL, HOW, other), first seen
    first within a group, with or without a Δ%."""
    caps: dict[str, CapabilityDrift] = {}
    for report in reports:
        for cap in report.capabilities.values():
            if (cap.delta_pct is not None) == percent:
                caps.setdefault(cap.id, cap)
    order = sorted(
        caps.values(), key=lambda c: _GROUPS.index(c.group) if c.group in _GROUPS else len(_GROUPS)
    )
    return [c.id for c in order]


def _group(reports: Sequence[DriftReport], cid: str) -> str:
    return next(r.capabilities[cid].group for r in reports if cid in r.capabilities)


def spider(labels: Sequence[str], reports: Sequence[DriftReport], *, limit: float = 50.0) -> Figure:
    """CapTrack's spider plot: the base model is the circle at 0%, each model a polygon.

    Each spoke is one capability's headline Δ% (clipped to ±``limit``); distribution
    capabilities, which have no percentage, are left out. Capabilities are ordered by group.
    """
    figure_class = _figure_class()
    figure = figure_class(figsize=(5.2, 5.6) if len(reports) > 1 else (4.5, 4.9))
    axes = figure.add_subplot(projection="polar")
    ids = _ordered(reports, percent=True)
    if not ids:
        axes.set_title("no capability with a percentage")
        return figure
    angles = [2 * math.pi * k / len(ids) for k in range(len(ids))]
    closed = [*angles, angles[0]]
    axes.plot(closed, [0.0] * len(closed), color="grey", linewidth=1, label="base")
    for n, (label, report) in enumerate(zip(labels, reports, strict=True)):
        values = [_clipped(report.capabilities.get(c), limit) for c in ids]
        color = "tab:red" if len(reports) == 1 else f"C{n}"
        axes.plot(closed, [*values, values[0]], color=color, linewidth=2, label=label)
        axes.fill(closed, [*values, values[0]], color=color, alpha=0.12)
    axes.set_xticks(angles)
    axes.set_xticklabels([f"{c}\n{_group(reports, c)}" for c in ids], fontsize=8)
    axes.set_ylim(-limit, limit)
    axes.set_yticks([-limit, -limit / 2, 0.0, limit / 2, limit])
    axes.set_yticklabels(
        [f"{v:+g}%" if v else "0%" for v in (-limit, -limit / 2, 0.0, limit / 2, limit)]
    )
    axes.tick_params(axis="y", labelsize=7, labelcolor="grey")
    # the scale between the first two spokes, off the polygons' corners
    cast("PolarAxes", axes).set_rlabel_position(math.degrees(math.pi / len(ids)))
    axes.set_title(f"Δ% per capability vs base (clipped at ±{limit:g}%)", fontsize=9)
    # below the plot, clear of the title and the spokes' labels
    axes.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(4, len(reports) + 1), fontsize=7
    )
    figure.subplots_adjust(bottom=0.16, top=0.88)
    return figure


def _clipped(cap: CapabilityDrift | None, limit: float) -> float:
    """A spoke's value: Δ% clipped to ±limit; NaN (a gap) where a model lacks it."""
    if cap is None or cap.delta_pct is None or not math.isfinite(cap.delta_pct):
        return math.nan
    return max(-limit, min(limit, cap.delta_pct))


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
    pct = _ordered(reports, percent=True)
    kl = _ordered(reports, percent=False)
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
            luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
            ink = "white" if luminance < 0.5 else "black"
            axes.text(c, r, text + mark, ha="center", va="center", fontsize=8, color=ink)
        cells.append(line)
    if rows and reports:
        axes.imshow(cells, aspect="auto")
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels(
        [f"{cid} {_group(reports, cid)}" + (" (KL)" if cid in kl else "") for cid in rows]
    )
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

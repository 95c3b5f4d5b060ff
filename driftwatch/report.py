"""``driftwatch report RUN_DIR``: one self-contained HTML page of a run, viewable offline.

It reads what a run's monitor wrote in its logdir — ``driftwatch_history.jsonl`` (every round
and decision) and ``driftwatch_config.json`` (its settings) — and writes ``report.html``
beside them: the last round's drift table, the trajectory plot, a heatmap of the last rounds,
every decision with its reason, and the settings. Pictures are embedded as PNG data, the
style sheet is inline: the file opens in a browser with no network and no other file.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from driftwatch.drift import DriftReport
from driftwatch.errors import DriftwatchError
from driftwatch.files import write_atomic
from driftwatch.formatting import interval, significant, value
from driftwatch.plots import available as plots_available
from driftwatch.sinks import CONFIG_FILE as CONFIG
from driftwatch.sinks import HISTORY_FILE as HISTORY
from driftwatch.sinks import read_history

__all__ = ["CONFIG", "build_report", "write_report"]

HEATMAP_ROUNDS = 8  # the heatmap's columns: the last rounds, the last one at the right

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1.5rem;
       max-width: 70rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.act td { background: #fde8e8; } tr.warn td { background: #fff6dd; }
.sig { font-weight: bold; } img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
"""


def _reason(decision: dict[str, Any]) -> str:
    """The decision's message; histories written before it was recorded get it rebuilt."""
    if decision.get("message"):
        return str(decision["message"])
    from driftwatch.policy import Breach, Decision

    breaches = tuple(Breach(**b) for b in decision.get("breaches", ()))
    return Decision(decision["action"], int(decision["step"]), breaches).message


def _image(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _last_round(report: DriftReport) -> str:
    rows = [
        "<tr><th>capability</th><th>group</th><th>metric</th><th>Δ% (KL)</th>"
        "<th>95% interval</th><th>n</th></tr>"
    ]
    for cap in report.capabilities.values():
        mark = ' class="num sig"' if significant(cap) else ' class="num"'
        rows.append(
            f"<tr><td>{html.escape(cap.id)}</td><td>{html.escape(cap.group)}</td>"
            f"<td>{html.escape(cap.metric)}</td><td{mark}>{html.escape(value(cap))}</td>"
            f'<td class="num">{html.escape(interval(cap))}</td>'
            f'<td class="num">{cap.headline.n}</td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def _decisions(rounds: list[tuple[DriftReport, dict[str, Any]]]) -> str:
    rows = ["<tr><th>step</th><th>action</th><th>reason</th><th>probe s</th></tr>"]
    for report, decision in rounds:
        action = str(decision.get("action", "?"))
        css = {"continue": "", "warn": ' class="warn"'}.get(action, ' class="act"')
        rows.append(
            f'<tr{css}><td class="num">{report.step}</td><td>{html.escape(action)}</td>'
            f"<td>{html.escape(_reason(decision))}</td>"
            f'<td class="num">{report.seconds:.1f}</td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def build_report(run_dir: str | os.PathLike[str]) -> str:
    """The HTML page of the run whose logdir is ``run_dir``.

    Raises:
        DriftwatchError: no history in ``run_dir``, or a history without a round.
    """
    root = Path(run_dir)
    history = root / HISTORY
    if not history.is_file():
        raise DriftwatchError(f"{root}: no {HISTORY} (the logdir of a run with driftwatch)")
    rounds = read_history(history)
    if not rounds:
        raise DriftwatchError(f"{history}: the history has no probe round yet")
    settings_path = root / CONFIG
    try:
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        settings_text = json.dumps(settings, indent=2, sort_keys=True)
    except FileNotFoundError:
        settings_text = f"({CONFIG} not found: the run was made before driftwatch wrote it)"
    except ValueError as err:
        raise DriftwatchError(f"{settings_path}: not JSON ({err})") from err
    reports = [r for r, _ in rounds]
    last, last_decision = rounds[-1]
    acted = [d for _, d in rounds if d.get("action") not in ("continue", None)]
    summary = (
        f"{len(rounds)} probe rounds, steps {reports[0].step}–{last.step}; "
        f"{len(acted)} {'decision' if len(acted) == 1 else 'decisions'} other than continue; "
        f"last: {_reason(last_decision)}"
    )
    pictures = ""
    if plots_available():
        from driftwatch.plots import heatmap, png, trajectory

        recent = reports[-HEATMAP_ROUNDS:]
        pictures = (
            "<h2>Trajectory</h2>"
            + _image(png(trajectory(reports)), "Δ% per capability against the step")
            + "<h2>Heatmap of the last rounds</h2>"
            + _image(
                png(
                    heatmap(
                        [f"step {r.step}" for r in recent],
                        recent,
                        title=f"Δ% vs base, last round (step {last.step}) at the right",
                    )
                ),
                "capabilities × rounds heatmap",
            )
        )
    body = (
        f"<h1>driftwatch run report: {html.escape(root.name)}</h1>"
        f"<p>{html.escape(summary)}</p>"
        f"<h2>Last round (step {last.step})</h2>{_last_round(last)}"
        "<p>Bold: the 95% interval excludes no change.</p>"
        f"{pictures}<h2>Decisions</h2>{_decisions(rounds)}"
        f"<h2>Settings</h2><pre>{html.escape(settings_text)}</pre>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>driftwatch report: {html.escape(root.name)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write :func:`build_report` of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``)."""
    page = build_report(run_dir)
    return write_atomic(Path(out) if out is not None else Path(run_dir) / "report.html", page)

"""``signal_study.py analyse``: calibrate the default policy on the study's recorded rounds.

Reads every finished run under ``studies/results/signal/``, then:

1. **Offline drop**: the first ``standard`` round where some capability's headline Δ% is
   ≤ −5% with its 95% interval below 0 (a real drop, not noise).
2. **Grid search** over the default policy's shape — CAN and HOW group mean drops, the WILL
   group's two-sided change, the KL of D and whether D's line also needs its interval past it,
   patience, significance — applied to the live ``quick`` rounds of every run. A candidate is
   admissible when it raises nothing (no warn, no action) on any benign run and triggers its
   action on every damaging run. It is *guarded* when each of its lines is at least
   ``MARGIN`` (1.5) times the highest line any benign round crossed under its rules (the
   noise floor; :meth:`Policy.level`). The choice: guarded first, then the smallest median
   detection step, then the smallest worst one, then the tightest lines (they catch more of
   the damage the study did not try), significance preferred where it costs nothing.
3. **Tables and plots** for docs/calibration.md, ``analysis.json``, and the trimmed
   trajectories ``tests/data/calibration_trajectories.json`` that the test suite replays.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from driftwatch.drift import DriftReport
from driftwatch.policy import Policy, Threshold
from driftwatch.sinks import read_history

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data" / "calibration_trajectories.json"
PLOT = ROOT / "docs" / "images" / "calibration_quick.png"
PLOT_STANDARD = ROOT / "docs" / "images" / "calibration_standard.png"
DROP_PCT = 5.0
MARGIN = 1.5  # a chosen line sits at least this far beyond the benign runs' largest value

GRID = {
    "CAN": (5.0, 10.0, 15.0, 20.0),
    "HOW": (10.0, 20.0, 30.0, 50.0),
    "WILL": (15.0, 25.0, 50.0, 75.0),
    "D": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5),
    "patience": (1, 2),
    "significance": (True,),  # on: what bounds false alarms on runs the study did not see
    # whether D's line also needs its interval past it: the KL interval over the few texts of
    # a quick suite is wide, while the KL's noise floor is what the benign runs measure
    "D_significance": (True, False),
}


def _runs(results: Path) -> list[dict[str, Any]]:
    runs = []
    for folder in sorted(p for p in results.iterdir() if (p / "run.json").is_file()):
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        rounds = {}
        for suite in ("quick", "standard"):
            path = folder / suite / "driftwatch_history.jsonl"
            rounds[suite] = [r for r, _ in read_history(path)] if path.is_file() else []
        runs.append({**meta, "rounds": rounds})
    return runs


def offline_drop(reports: list[DriftReport]) -> tuple[int | None, str | None]:
    """The first step (and capability) where ``standard`` shows a significant ≥5% drop."""
    for report in reports:
        for cap in report.capabilities.values():
            h = cap.headline
            if h.delta_pct is None or h.ci_high_pct is None:
                continue
            if h.delta_pct <= -DROP_PCT and h.ci_high_pct < 0:
                return report.step, cap.id
    return None, None


def thresholds(
    can: float, how: float, will: float, kl: float, kl_significance: bool = True
) -> tuple[Threshold, ...]:
    return (
        Threshold("CAN", max_drop=can),
        Threshold("HOW", max_drop=how),
        Threshold("WILL", max_change=will),
        Threshold("D", max_kl=kl, significance=None if kl_significance else False),
    )


def _applicable(policy: Policy, report: DriftReport) -> Policy:
    """The policy restricted to the targets a report has (standard has them all)."""
    have = set(report.capabilities) | set(report.groups)
    kept = tuple(t for t in policy.thresholds if t.target in have)
    return Policy(
        kept, action=policy.action, patience=policy.patience, significance=policy.significance
    )


def replay(policy: Policy, reports: list[DriftReport]) -> dict[str, Any]:
    """First warn/breach step and first triggered step of ``policy`` over ``reports``."""
    first_breach = first_action = None
    breached: list[str] = []
    for k in range(len(reports)):
        decision = _applicable(policy, reports[k]).decide(reports[: k + 1])
        if decision.breaches and first_breach is None:
            first_breach = decision.step
            breached = [str(b) for b in decision.breaches]
        if decision.action not in ("continue", "warn") and first_action is None:
            first_action = decision.step
    return {"first_breach": first_breach, "first_action": first_action, "breaches": breached}


def benign_floors(benign: list[dict[str, Any]], candidate: dict[str, Any]) -> dict[str, float]:
    """Per target, the highest line any benign quick round crosses under ``candidate``'s rules
    (significance included, see :meth:`Policy.level`): the noise floor its line must clear."""
    policy = candidate_policy(candidate)
    floors = {t.target: 0.0 for t in policy.thresholds}
    for run in benign:
        for report in run["rounds"]["quick"]:
            for t in policy.thresholds:
                if t.target in report.capabilities or t.target in report.groups:
                    floors[t.target] = max(floors[t.target], policy.level(t, report)[2])
    return floors


def candidate_policy(c: dict[str, Any]) -> Policy:
    return Policy(
        thresholds(c["CAN"], c["HOW"], c["WILL"], c["D"], c["D_significance"]),
        action="stop",
        patience=c["patience"],
        significance=c["significance"],
    )


def search(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    benign = [r for r in runs if r["run"]["kind"] == "benign"]
    damaging = [r for r in runs if r["run"]["kind"] == "damaging"]
    admissible = []
    for values in itertools.product(*GRID.values()):
        candidate = dict(zip(GRID, values, strict=True))
        policy = candidate_policy(candidate)
        if any(replay(policy, r["rounds"]["quick"])["first_breach"] for r in benign):
            continue
        steps = [replay(policy, r["rounds"]["quick"])["first_action"] for r in damaging]
        if any(s is None for s in steps):
            continue
        floors = benign_floors(benign, candidate)
        admissible.append(
            {
                **candidate,
                "median_step": statistics.median(steps),
                "worst_step": max(steps),
                # every line at least MARGIN times the highest line a benign round crossed
                "guarded": all(candidate[t] >= MARGIN * f for t, f in floors.items()),
                "floors": floors,
            }
        )
    if not admissible:
        raise SystemExit(
            "no candidate policy is silent on every benign run and catches every "
            "damaging one: widen the grid or look at the runs"
        )
    # guarded policies first (each line clear of the benign noise floor by MARGIN), then the
    # earliest detection, then the tightest lines (they catch more of what the study did not
    # try), preferring significance where it costs nothing
    best = min(
        admissible,
        key=lambda c: (
            not c["guarded"],
            c["median_step"],
            c["worst_step"],
            sum(c[t] / max(GRID[t]) for t in ("CAN", "HOW", "WILL", "D")),
            -c["significance"],
            -c["D_significance"],
            -c["patience"],
        ),
    )
    return best, admissible


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.1f}%" if pct else f"{value:.3f}"


def trajectory_table(run: dict[str, Any], suite: str) -> str:
    reports = run["rounds"][suite]
    if not reports:
        return ""
    caps = list(reports[0].capabilities)
    head = "| step | " + " | ".join(caps) + " |\n|---|" + "---|" * len(caps)
    rows = []
    for r in reports:
        cells = []
        for c in caps:
            h = r.capabilities[c].headline
            cells.append(_fmt(h.delta_pct) if h.delta_pct is not None else _fmt(h.now, False))
        rows.append(f"| {r.step} | " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows)


def plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = list(runs[0]["rounds"]["quick"][0].capabilities)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    colours = {"benign": "tab:green", "damaging": "tab:red", "dpo": "tab:blue"}
    for ax, cap in zip(axes.flat, caps, strict=False):
        for run in runs:
            reports = run["rounds"]["quick"]
            xs = [0] + [r.step for r in reports]
            h0 = reports[0].capabilities[cap].headline
            ys = [0.0] + [
                r.capabilities[cap].headline.delta_pct
                if h0.delta_pct is not None
                else r.capabilities[cap].headline.now
                for r in reports
            ]
            kind = run["run"]["kind"]
            ax.plot(
                xs,
                ys,
                marker="o",
                ms=3,
                color=colours[kind],
                alpha=0.8,
                label=f"{run['run']['name']}",
            )
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{cap} ({'KL, nats/token' if h0.delta_pct is None else 'Δ%'})")
        ax.set_xlabel("step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle("quick suite, live, every 4 steps: benign (green), SFT (red), DPO (blue)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")


def plot_standard(runs: list[dict[str, Any]]) -> None:
    """Group means and KL of the offline ``standard`` rounds of the non-benign runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in runs if r["run"]["kind"] != "benign" and r["rounds"]["standard"]]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), sharex=True)
    for ax, target in zip(axes, ("CAN", "WILL", "HOW", "D"), strict=True):
        for run in shown:
            reports = run["rounds"]["standard"]
            ys = [
                r.capabilities["D"].metrics["kl"].now if target == "D" else r.groups[target]
                for r in reports
            ]
            style = "--" if run["run"]["method"] == "dpo" else "-"
            ax.plot(
                [0] + [r.step for r in reports],
                [0.0, *ys],
                style,
                marker="o",
                ms=3,
                label=run["run"]["name"],
            )
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{target} ({'KL, nats/token' if target == 'D' else 'group mean Δ%'})")
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "standard suite (offline evaluation, all 1,221 items): SFT (solid) vs DPO (dashed)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(PLOT_STANDARD, dpi=110)
    print(f"wrote {PLOT_STANDARD}")


def _trim(report: DriftReport) -> dict[str, Any]:
    """The report with each capability's headline metric and named metrics only (what the
    policy reads)."""
    data = report.to_dict()
    for cap in data["capabilities"].values():
        keep = [cap["metric"], *cap.get("parts", ())]
        cap["metrics"] = {name: cap["metrics"][name] for name in keep}
    data.pop("extra", None)
    return data


def analyse(results: Path) -> int:
    runs = _runs(results)
    print(f"{len(runs)} finished runs: {[r['run']['name'] for r in runs]}")
    best, admissible = search(runs)
    print(f"{len(admissible)} admissible candidates; chosen: {best}")
    policy = candidate_policy(best)
    rows = []
    for run in runs:
        drop_step, drop_cap = offline_drop(run["rounds"]["standard"])
        live = {s: replay(policy, run["rounds"][s]) for s in ("quick", "standard")}
        rows.append(
            {
                "run": run["run"],
                "offline_drop_step": drop_step,
                "offline_drop_capability": drop_cap,
                "standard_steps": [r.step for r in run["rounds"]["standard"]],
                "quick_steps": [r.step for r in run["rounds"]["quick"]],
                "quick": live["quick"],
                "standard": live["standard"],
                "quick_groups": [{"step": r.step, **r.groups} for r in run["rounds"]["quick"]],
                "standard_groups": [
                    {"step": r.step, **r.groups} for r in run["rounds"]["standard"]
                ],
                "seconds": run["seconds"],
            }
        )
    print(
        "\n| run | kind | offline ≥5% drop (step, capability) | quick: first breach | "
        "quick: stop | delay (rounds) | standard: first breach | standard: stop | "
        "delay (rounds) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    every = runs[0]["every"] if runs else 1
    for row in rows:
        cells = []
        for suite in ("quick", "standard"):
            live = row[suite]
            delay = (
                (live["first_action"] - row["offline_drop_step"]) / every
                if live["first_action"] is not None and row["offline_drop_step"] is not None
                else None
            )
            row[f"{suite}_delay_rounds"] = delay
            cells += [
                str(live["first_breach"] or "–"),
                str(live["first_action"] or "–"),
                "–" if delay is None else f"{delay:g}",
            ]
        print(
            f"| {row['run']['name']} | {row['run']['kind']} | "
            f"{row['offline_drop_step'] or '–'} {row['offline_drop_capability'] or ''} | "
            + " | ".join(cells)
            + " |"
        )
    for suite in ("quick", "standard"):
        delays = [
            r[f"{suite}_delay_rounds"]
            for r in rows
            if r["run"]["kind"] == "damaging" and r[f"{suite}_delay_rounds"] is not None
        ]
        benign = [r for r in rows if r["run"]["kind"] == "benign" and r[f"{suite}_steps"]]
        alarms = [r for r in benign if r[suite]["first_breach"]]
        # an alarm at or after the step where the offline evaluation shows a real drop is
        # not false, even on a run meant to be benign
        false = [
            r["run"]["name"]
            for r in alarms
            if r["offline_drop_step"] is None or r[suite]["first_breach"] < r["offline_drop_step"]
        ]
        true = sorted({r["run"]["name"] for r in alarms} - set(false))
        print(
            f"{suite}: false alarms on {len(false)} of {len(benign)} benign runs {false or ''}"
            f"{f'; alarms confirmed by the offline evaluation on {true}' if true else ''}; "
            f"median detection delay {statistics.median(delays) if delays else '–'} rounds "
            f"(damaging runs: {delays})"
        )
    for run in runs:
        for suite in ("quick", "standard"):
            table = trajectory_table(run, suite)
            if table:
                print(f"\n{run['run']['name']} — {suite}\n{table}")
    (results / "analysis.json").write_text(
        json.dumps({"chosen": best, "admissible": admissible, "runs": rows}, indent=1),
        encoding="utf-8",
    )
    TEST_DATA.parent.mkdir(parents=True, exist_ok=True)
    TEST_DATA.write_text(
        json.dumps(
            {
                "about": "live quick-suite rounds of studies/signal_study.py (see "
                "docs/calibration.md); each capability keeps its headline and named metrics",
                "chosen": {
                    k: best[k]
                    for k in (
                        "CAN",
                        "HOW",
                        "WILL",
                        "D",
                        "D_significance",
                        "patience",
                        "significance",
                    )
                },
                "runs": [
                    {"run": asdict_run(r), "quick": [_trim(x) for x in r["rounds"]["quick"]]}
                    for r in runs
                ],
            },
            indent=None,
            separators=(",", ":"),
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {TEST_DATA} ({TEST_DATA.stat().st_size} bytes)")
    plot(runs)
    plot_standard(runs)
    return 0


def asdict_run(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run["run"][k] for k in ("name", "kind", "data", "method", "lr", "seed")}


__all__ = ["analyse", "offline_drop", "replay", "search"]

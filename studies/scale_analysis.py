"""``scale_study.py analyse``: what the defaults do on the realistic-scale runs.

Reads every finished run under ``studies/results/scale/`` and writes
``studies/results/scale/analysis.md`` (the tables of docs/calibration.md, "At realistic
scale"), ``analysis.json`` and the plot ``docs/images/calibration_scale.png``.

**The criteria, fixed before any run was analysed** (issue 20):

* A run is **benign** if and only if its offline ``standard`` evaluation never shows a
  significant drop of at least 5% in a CAN or HOW capability, nor a significant change of at
  least 15% in a WILL one. Significant: the capability headline's 95% interval lies wholly on
  that side of 0. D (the output distribution) is not in the criterion: a KL is a change, not a
  loss of capability. A run whose checkpoints were not all evaluated offline is *unclassified*
  at the steps not evaluated; the tables say which steps were.
* A **false alarm** is a stop or rollback (an action, not a warning) of the live ``quick``
  policy on a benign run. Its rate is given per run and per round, each with the exact
  one-sided 95% upper bound (Clopper–Pearson).
* **Detection delay** is the live stop's step minus the first step at which the offline
  evaluation shows the drop, in live rounds.

**The corrected criteria** (2026-12-04, written down in docs/calibration.md before they were
computed on any run; see "On a GPU" there). The criteria above fail their null control:
noisy copies of the base weights, nothing learned, are harmful by them in up to 7 of 8
single rounds. The corrected criteria are the same lines with two changes:

* each capability's interval is widened for the capabilities tested in the round
  (Bonferroni over the round's CAN, WILL and HOW capabilities: z = 2.94 for ``standard``'s
  15, :func:`corrected_findings`);
* a finding counts once it holds in two consecutive offline rounds, for the same capability
  in the same direction (:func:`persistent_finding`); it dates from the first of the two.

They do not need ``standard`` at every round: about every other round settles a clean run
(:func:`steps_to_settle`; ``scale_study.py offline --offline-steps settle`` evaluates just
those, half the CPU time of every checkpoint).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from driftwatch.drift import DriftReport, family_z, group_means, pct_se
from driftwatch.policy import Policy
from driftwatch.sinks import read_history

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "images" / "calibration_scale.png"
PLOT_GPU = ROOT / "docs" / "images" / "calibration_gpu.png"
RECORDED = ROOT / "studies" / "recorded" / "scale_runs.json"
# ``scale_study.py progress``: task progress of SFT and DPO retrained without a monitor
PROGRESS = ROOT / "studies" / "recorded" / "scale_progress.json"
# SFT against DPO on the same atlas data: (earlier harness, run) of each
SFT = ("scale-gpu", "atlas-full2e-5")
DPO = (None, "atlas-dpo-full2e-5")
# two rounds are at equal progress when their shares of preferred replies are at most one of
# the 36 atlas facts apart
SAME_PROGRESS = 1.5 / 36
# runs of earlier harnesses, kept apart from the current matrix: folder -> what differed
EARLIER = {
    "scale-pilot": "pilot, harness 2a9fc8c: the task mixed with replay was atlas",
    "scale-replay1": "first replay, harness 9e6a74e: replies cut at 200 tokens were dropped "
    "(115 of 158 kept replies plain prose), and quick had no W3b",
    "scale-replay2": "second replay, harness 5f7de67: sampled at temperature 0.7 and top-p 0.9; "
    "a reply cut at 256 tokens was cut back to its last whole line and ended there",
    "scale-quick171": "the third replay on the CPU (2026-12-04), live with the 171-item `quick` "
    "(W3b 24 items of its own, W3a 24 cut at 32 tokens); the current matrix has the same "
    "runs again, on the same weights, with the 211-item `quick` live",
    "scale-gpu": "the third replay's harness on one H200 (2026-12-04, `studies/scale_gpu.py`), "
    "`standard` attached live at every round; a run the device-time limit stopped is "
    "*partial* and its verdict covers the steps it reached",
}
CAN_HOW_DROP = 5.0
WILL_CHANGE = 15.0


def upper_bound(failures: int, trials: int, alpha: float = 0.05) -> float:
    """Exact one-sided (1 − alpha) upper bound of a binomial rate (Clopper–Pearson)."""
    if trials == 0:
        return 1.0
    if failures >= trials:
        return 1.0

    def cdf(p: float) -> float:
        return sum(
            math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(failures + 1)
        )

    lo, hi = failures / trials, 1.0
    for _ in range(60):  # cdf falls as p rises: find cdf(p) = alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def _findings(report: DriftReport, z: float | None) -> list[tuple[str, float]]:
    """(capability, Δ%) of each CAN/HOW drop or WILL change past its line whose interval lies
    wholly on that side of 0: the recorded 95% interval (``z`` None) or one of ``z`` normal
    quantiles (the recorded intervals are normal: ``pct_se`` reads the error off them)."""
    found = []
    for cap in report.capabilities.values():
        h = cap.headline
        if h.delta_pct is None or h.ci_low_pct is None or h.ci_high_pct is None:
            continue
        low, high = h.ci_low_pct, h.ci_high_pct
        if z is not None:
            half = z * (pct_se(h) or 0.0)
            low, high = h.delta_pct - half, h.delta_pct + half
        if cap.group in ("CAN", "HOW") and h.delta_pct <= -CAN_HOW_DROP and high < 0:
            found.append((cap.id, h.delta_pct))
        if cap.group == "WILL" and abs(h.delta_pct) >= WILL_CHANGE and (high < 0 or low > 0):
            found.append((cap.id, h.delta_pct))
    return found


def offline_findings(report: DriftReport) -> list[str]:
    """The capabilities a standard round finds dropped (CAN, HOW) or changed (WILL)."""
    return [f"{cap} {delta:+.1f}%" for cap, delta in _findings(report, None)]


def corrected_findings(report: DriftReport) -> list[tuple[str, float]]:
    """:func:`offline_findings` with each interval widened to :func:`family_z`."""
    return _findings(report, family_z(report))


def persistent_finding(reports: list[DriftReport], every: int) -> tuple[int, list[str]] | None:
    """The first corrected finding that the next round (``every`` steps on) repeats, for the
    same capability in the same direction: its step and what was found there."""
    by_step = {r.step: r for r in reports}
    for report in sorted(reports, key=lambda r: r.step):
        following = by_step.get(report.step + every)
        if following is None:
            continue
        later = {(cap, delta > 0) for cap, delta in corrected_findings(following)}
        held = [(c, d) for c, d in corrected_findings(report) if (c, d > 0) in later]
        if held:
            return report.step, [f"{c} {d:+.1f}%" for c, d in held]
    return None


def steps_to_settle(rounds: list[int], reports: list[DriftReport], every: int) -> list[int]:
    """The rounds still to evaluate offline before the corrected verdict is settled, given
    the live rounds' steps and the ``standard`` rounds evaluated so far.

    A finding counts once two consecutive rounds hold it (:func:`persistent_finding`), so a
    run is cleared without ``standard`` at every round when (a) every pair of consecutive
    rounds has one evaluated, and (b) every evaluated round with a corrected finding has both
    neighbours evaluated: a held finding then always shows in an evaluated pair. About every
    other round suffices for a clean run, half the CPU time. Empty once a held finding is
    found (the run is harmful) or nothing is left to evaluate."""
    by_step = {r.step: r for r in reports}
    if persistent_finding(reports, every) is not None:
        return []
    rounds = sorted(rounds)
    need: set[int] = set()
    for a, b in pairwise(rounds):  # (a): one of each pair
        if not {a, b} & (set(by_step) | need):
            need.add(b)
    for step, report in by_step.items():  # (b): around each finding
        if corrected_findings(report):
            need |= {s for s in (step - every, step + every) if s in rounds}
    return sorted(need - set(by_step))


# The capabilities quick reads from standard's items at standard's new tokens (build.py):
# W3b since 2026-12-04 (evening), W3a since 2026-12-05
REBUILT_FROM_STANDARD = ("W3a", "W3b")


def as_rebuilt_quick(run: dict[str, Any]) -> list[DriftReport]:
    """A run's live rounds as the rebuilt ``quick`` reads them: its W3a and W3b are now
    ``standard``'s items at ``standard``'s new tokens, so ``standard``'s W3a and W3b on the same
    weights are what the live round's read (in another batch layout: float noise). The rounds
    at which ``standard`` ran; the other capabilities as recorded, the group means recomputed
    (``quick``'s capabilities are unweighted)."""
    offline = {r.step: r for r in run["rounds"]["standard"]}
    out = []
    for r in run["rounds"]["quick"]:
        if r.step not in offline or any(
            c not in offline[r.step].capabilities for c in REBUILT_FROM_STANDARD
        ):
            continue
        caps = r.capabilities | {c: offline[r.step].capabilities[c] for c in REBUILT_FROM_STANDARD}
        out.append(replace(r, capabilities=caps, groups=group_means(caps, {})))
    return out


def group_lines_only(policy: Policy) -> Policy:
    """The defaults before the realistic-scale recalibration: the group means and KL only."""
    return replace(policy, thresholds=tuple(t for t in policy.lines if t.significance != "family"))


def recalibration_table(runs: list[dict[str, Any]], policy: Policy) -> str:
    """The defaults before and after the per-capability lines, on each run's recorded live
    rounds and (where ``standard`` ran at every round) as the rebuilt ``quick`` reads them,
    against the corrected offline finding: the action's step and its delay in rounds."""
    before = group_lines_only(policy)
    out = [
        "| run | corrected verdict | corrected: first finding | group lines only: act | "
        "defaults: act | defaults, quick as rebuilt: act |",
        "|---" * 6 + "|",
    ]
    for run in runs:
        row = summarise(run, policy)
        found = row["corrected_first"]

        def cell(
            reports: list[DriftReport], pol: Policy, found: Any = found, every: int = run["every"]
        ) -> str:
            acted = replay(pol, reports)["first_action"]
            if acted is None:
                return f"– (to {reports[-1].step})" if reports else "–"
            if found is None:
                return str(acted)
            delay = (acted - found[0]) / every
            return f"{acted} ({_rounds(delay)} round{'s' * (delay != 1)})"

        quick = run["rounds"]["quick"]
        rebuilt = as_rebuilt_quick(run)
        every_round = len(rebuilt) == len(quick)
        out.append(
            f"| `{run.get('earlier') or 'scale'}/{row['name']}`"
            f"{' (partial)' if row['partial'] else ''} | {row['corrected_verdict']} | "
            f"{_finding(found)} | {cell(quick, before)} | {cell(quick, policy)} | "
            f"{cell(rebuilt, policy) if every_round else 'standard not at every round'} |"
        )
    return "\n".join(out)


def load_runs(results: Path) -> list[dict[str, Any]]:
    from scale_study import MATRIX, PARTS  # type: ignore[import-not-found]

    runs: list[dict[str, Any]] = []
    if not results.is_dir():
        return runs
    for folder in sorted(p for p in results.iterdir() if (p / "task.jsonl").is_file()):
        if (folder / PARTS).is_file() and not (folder / "run.json").is_file():
            print(f"{folder.name}: still training or cut off, not analysed (`run` resumes it)")
            continue
        if (folder / "run.json").is_file():
            meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        else:  # stopped before its end by the GPU's time limit: the rounds it reached
            row = next(r for r in MATRIX if r.name == folder.name)
            meta = {"run": asdict(row), "every": 4, "seconds": None, "round_seconds": []}
            meta["partial"] = True
        rounds = {}
        for suite in ("quick", "standard"):
            path = folder / suite / "driftwatch_history.jsonl"
            reports = [r for r, _ in read_history(path)] if path.is_file() else []
            rounds[suite] = sorted(reports, key=lambda r: r.step)
        task = [json.loads(x) for x in (folder / "task.jsonl").read_text().splitlines() if x]
        runs.append(
            {
                **meta,
                "rounds": rounds,
                "task": {t["step"]: t["accuracy"] for t in task},
                "task_logprob": {t["step"]: t["logprob"] for t in task if "logprob" in t},
            }
        )
    return runs


def replay(policy: Policy, reports: list[DriftReport]) -> dict[str, Any]:
    """The live policy over the recorded rounds: first warning, first action, counts, and
    the step a rollback there returns to (the last ``continue`` round before it, as
    ``driftwatch.rollback`` snapshots; 0, the starting weights, if there was none)."""
    first_breach = first_action = None
    actions = breaches = healthy = 0
    for k in range(len(reports)):
        decision = policy.decide(reports[: k + 1])
        if decision.breaches:
            breaches += 1
            first_breach = decision.step if first_breach is None else first_breach
        if decision.action == "continue" and first_action is None:
            healthy = decision.step
        if decision.action not in ("continue", "warn"):
            actions += 1
            if first_action is None:
                first_action, kind = decision.step, decision.action
                first_message = decision.message
    return {
        "first_breach": first_breach,
        "first_action": first_action,
        "rounds_breached": breaches,
        "rounds_acting": actions,
        "message": first_message if first_action is not None else None,
        "action": kind if first_action is not None else None,
        "rollback_to": healthy if first_action is not None else None,
    }


def summarise(run: dict[str, Any], policy: Policy) -> dict[str, Any]:
    quick, standard = run["rounds"]["quick"], run["rounds"]["standard"]
    offline = [(r.step, offline_findings(r)) for r in standard]
    dropped = [(s, f) for s, f in offline if f]
    evaluated = [s for s, _ in offline]
    every_round = {r.step for r in quick} <= set(evaluated) and not run.get("partial")
    verdict = "harmful" if dropped else ("benign" if every_round else "unclassified")
    live = replay(policy, quick)
    # the criteria's own per-capability rule read on the live rounds: what a policy with a
    # line per capability at the criteria's values (patience 1) would have acted on
    on_quick = next(((r.step, f) for r in quick if (f := offline_findings(r))), None)
    delay = None
    if dropped and live["first_action"] is not None:
        delay = (live["first_action"] - dropped[0][0]) / run["every"]
    # a finding held over two consecutive evaluated rounds counts wherever they were run; a
    # run is cleared once the evaluated rounds settle it (every round, or enough of them)
    every = run["every"]
    held = persistent_finding(standard, every)
    to_settle = steps_to_settle([r.step for r in quick], standard, every)
    settled = not run.get("partial") and not to_settle
    corrected = "harmful" if held else ("benign" if settled else "unclassified")
    corrected_delay = None
    if held and live["first_action"] is not None:
        corrected_delay = (live["first_action"] - held[0]) / every

    def kl(r: DriftReport) -> float:
        return r.capabilities["D"].headline.now or 0.0

    return {
        "name": run["run"]["name"],
        "intent": run["run"]["kind"],
        "method": run["run"]["method"],
        "lr": run["run"]["lr"],
        "rounds": len(quick),
        "task": run["task"],
        "task_logprob": run["task_logprob"],
        "verdict": verdict,
        "offline_evaluated": evaluated,
        "offline_first_drop": dropped[0] if dropped else None,
        "live": live,
        "criteria_on_quick": on_quick,
        "delay_rounds": delay,
        "max_kl": max((kl(r) for r in quick), default=None),
        "worst": {
            "CAN": min((r.groups["CAN"] for r in quick if "CAN" in r.groups), default=None),
            "HOW": min((r.groups["HOW"] for r in quick if "HOW" in r.groups), default=None),
            "WILL": max(
                (r.groups["WILL"] for r in quick if "WILL" in r.groups), default=None, key=abs
            ),
        },
        "seconds": run["seconds"],
        "round_seconds": run["round_seconds"],
        "partial": bool(run.get("partial")),
        "corrected_first": held,
        "corrected_verdict": corrected,
        "corrected_delay_rounds": corrected_delay,
    }


def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.1f}%"


def _logprob(by_step: dict[int, float]) -> str:
    if not by_step:
        return ""
    steps = sorted(by_step)
    return f" ({by_step[steps[0]]:.2f} → {by_step[steps[-1]]:.2f} nats/token)"


def _rounds(delay: float | None) -> str:
    return "–" if delay is None else format(delay, "g")


def _finding(found: tuple[int, list[str]] | None) -> str:
    return f"{found[0]}: {', '.join(found[1])}" if found else "–"


def tables(rows: list[dict[str, Any]]) -> str:
    out = [
        "| run | intent | lr | task accuracy 0 → end (log-prob) | rounds | worst CAN | worst HOW | "
        "largest WILL | largest KL | defaults: first warning | defaults: action | "
        "criteria read on quick: first finding | "
        "offline evaluated at | offline: first finding | verdict | delay (rounds) | "
        "corrected: first finding, held 2 rounds | corrected verdict | corrected delay |",
        "|---" * 19 + "|",
    ]
    for r in rows:
        task = r["task"]
        steps = sorted(task)
        live = r["live"]
        drop = r["offline_first_drop"]
        out.append(
            f"| `{r['name']}`{' (partial)' if r['partial'] else ''} | "
            f"{r['intent']} ({r['method']}) | {r['lr']:g} | "
            f"{task[steps[0]]:.2f} → {task[steps[-1]]:.2f}{_logprob(r['task_logprob'])} | "
            f"{r['rounds']} | "
            f"{_pct(r['worst']['CAN'])} | {_pct(r['worst']['HOW'])} | {_pct(r['worst']['WILL'])} | "
            f"{r['max_kl']:.3f} | {live['first_breach'] or '–'} | "
            f"{'stop at ' + str(live['first_action']) if live['first_action'] else '–'} | "
            f"{_finding(r['criteria_on_quick'])} | "
            f"{','.join(map(str, r['offline_evaluated'])) or 'not yet'} | "
            f"{_finding(drop)} | {r['verdict']} | "
            f"{_rounds(r['delay_rounds'])} | "
            f"{_finding(r['corrected_first'])} | {r['corrected_verdict']} | "
            f"{_rounds(r['corrected_delay_rounds'])} |"
        )
    benign = [r for r in rows if r["verdict"] == "benign"]
    corrected = [r for r in rows if r["corrected_verdict"] == "benign"]
    useful = [r for r in rows if r["intent"] == "useful"]
    for label, group in (
        ("benign (offline verdict)", benign),
        ("benign (corrected verdict)", corrected),
        ("useful (intent)", useful),
    ):
        n_runs = len(group)
        alarmed = sum(1 for r in group if r["live"]["first_action"] is not None)
        n_rounds = sum(r["rounds"] for r in group)
        acting = sum(r["live"]["rounds_acting"] for r in group)
        out.append(
            f"\nFalse alarms on {label} runs: {alarmed} of {n_runs} runs "
            f"(95% upper bound {upper_bound(alarmed, n_runs):.1%}), {acting} of {n_rounds} rounds "
            f"(95% upper bound {upper_bound(acting, n_rounds):.1%})."
        )
    return "\n".join(out)


def _setting(run: dict[str, Any]) -> tuple[str, str]:
    spec = run["run"]
    data = f"`{spec['data']}`" if spec["data"] != "task" else f"{spec['task']} alone"
    method = {"lora": "LoRA", "full": "full", "dpo": "DPO"}[spec["method"]]
    return data, f"{method} {spec['lr']:.0e}".replace("e-0", "e-")


def result_table(runs: list[dict[str, Any]], policy: Policy) -> str:
    """The matrix as docs/calibration.md sums it up: for each run, what ``standard`` found by
    the corrected criteria, what the defaults did on the live rounds, how many rounds after
    the finding, and the step (and task accuracy) a rollback returned to."""
    out = [
        "| run | data | method, lr | task at the end | `standard`, corrected criteria | "
        "the defaults, live | delay | rolled back to (task there) |",
        "|---" * 8 + "|",
    ]
    order = {"useful": 0, "harmful": 1, "dpo": 2}
    for run in sorted(runs, key=lambda r: (order[r["run"]["kind"]], r["run"]["name"])):
        row = summarise(run, policy)
        live, found, task = row["live"], row["corrected_first"], row["task"]
        verdict = row["corrected_verdict"]
        if found:
            verdict += f": {', '.join(found[1])} at {found[0]}"
        warned, acted = live["first_breach"], live["first_action"]
        did = [f"a warning at {warned}"] if warned is not None and warned != acted else []
        back = "–"
        if acted is not None:
            did.append(f"{live['action']} at {acted}")
            back = f"{live['rollback_to']} ({task[live['rollback_to']]:.2f})"
        delay = row["corrected_delay_rounds"]
        rounds = "–" if delay is None else f"{delay:g} round{'s' * (delay != 1)}"
        data, method = _setting(run)
        out.append(
            f"| `{row['name']}` | {data} | {method} | {task[max(task)]:.2f} | {verdict} | "
            f"{', '.join(did) or 'nothing'} | {rounds} | {back} |"
        )
    return "\n".join(out)


def plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"useful": "tab:green", "harmful": "tab:red", "dpo": "tab:blue"}
    # the legend below the panels grows a row per seven runs: the figure grows with it, so
    # the legend never covers the panels' step axes
    legend_rows = math.ceil(len(runs) / 7)
    legend_inches = 0.3 + 0.16 * legend_rows
    height = 3.4 + legend_inches
    fig, axes = plt.subplots(1, 5, figsize=(18, height), sharex=True)
    for run in runs:
        quick = run["rounds"]["quick"]
        xs = [0] + [r.step for r in quick]
        style = {"lora": "--", "full": "-", "dpo": ":"}[run["run"]["method"]]
        c = "tab:olive" if run.get("earlier") else colours[run["run"]["kind"]]
        for ax, g in zip(axes[:3], ("CAN", "WILL", "HOW"), strict=True):
            ax.plot(
                xs, [0.0] + [r.groups.get(g, math.nan) for r in quick], style, color=c, alpha=0.7
            )
        axes[3].plot(
            xs, [0.0] + [r.capabilities["D"].headline.now for r in quick], style, color=c, alpha=0.7
        )
        task = sorted(run["task"].items())
        axes[4].plot(
            [s for s, _ in task],
            [a for _, a in task],
            style,
            color=c,
            alpha=0.7,
            label=f"{run['earlier']}/{run['run']['name']}"
            if run.get("earlier")
            else run["run"]["name"],
        )
    for ax, title in zip(
        axes,
        ("CAN mean Δ%", "WILL mean Δ%", "HOW mean Δ%", "D: KL, nats/token", "task accuracy"),
        strict=True,
    ):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.axhline(0, color="grey", lw=0.5)
    axes[3].axhline(0.15, color="black", lw=0.8, ls="--")
    fig.legend(*axes[4].get_legend_handles_labels(), loc="lower center", ncol=7, fontsize=7)
    fig.suptitle(
        "quick suite, live every 4 steps: useful (green), harmful (red), DPO (blue), "
        "earlier harnesses (olive); LoRA dashed, full solid"
    )
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1 - 0.35 / height))
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=100)
    print(f"wrote {PLOT}")


def plot_gpu(runs: list[dict[str, Any]], nulls: list[dict[str, Any]]) -> None:
    """The GPU runs' offline W3b and W3a and live WILL mean against the step, with the band
    the null draws spanned (their largest change either way) behind them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"useful": "tab:green", "harmful": "tab:red", "dpo": "tab:blue"}
    panels = (("standard", "W3b"), ("standard", "W3a"), ("quick", None))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    for ax, (suite, cap) in zip(axes, panels, strict=True):
        if cap is not None and nulls:
            values = [
                r.capabilities[cap].headline.delta_pct or 0.0
                for n in nulls
                for r in n["rounds"]["standard"]
            ]
            ax.axhspan(min(values), max(values), color="grey", alpha=0.25, label="null draws")
        for run in runs:
            reports = run["rounds"][suite]
            ys = [
                r.groups.get("WILL", math.nan)
                if cap is None
                else (r.capabilities[cap].headline.delta_pct or 0.0)
                for r in reports
            ]
            style = {"lora": "--", "full": "-", "dpo": ":"}[run["run"]["method"]]
            ax.plot(
                [0] + [r.step for r in reports],
                [0.0, *ys],
                style,
                color=colours[run["run"]["kind"]],
                alpha=0.8,
                label=run["run"]["name"],
            )
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("step")
    axes[0].set_title("W3b formatting, standard (offline) Δ%")
    axes[1].set_title("W3a verbosity, standard (offline) Δ%")
    axes[2].set_title("WILL group mean, quick (live) Δ%; line ±15%")
    for y in (15, -15):
        axes[2].axhline(y, color="black", lw=0.8, ls="--")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8)
    fig.suptitle("One H200, 2026-12-04: useful (green), harmful (red); LoRA dashed, full solid")
    fig.tight_layout(rect=(0, 0.12, 1, 0.93))
    fig.savefig(PLOT_GPU, dpi=100)
    print(f"wrote {PLOT_GPU}")


def load_progress() -> dict[str, dict[int, dict[str, float]]]:
    """Each retrained run's task progress by step (:data:`PROGRESS`)."""
    if not PROGRESS.is_file():
        return {}
    record = json.loads(PROGRESS.read_text(encoding="utf-8"))
    return {name: {r["step"]: r for r in run["rows"]} for name, run in record.items()}


def matched_rounds(
    sft: dict[int, float], dpo: dict[int, float]
) -> list[tuple[int, int, float, float]]:
    """SFT against DPO at equal task progress: for each DPO step, the SFT step whose progress
    (by step: the share of facts whose right reply the model prefers) is nearest, the earlier
    on a tie; as (DPO step, SFT step, DPO's progress, SFT's)."""
    if not sft:
        return []
    pairs = []
    for step, value in sorted(dpo.items()):
        nearest = min(sorted(sft), key=lambda s: abs(sft[s] - value))
        pairs.append((step, nearest, value, sft[nearest]))
    return pairs


def evaluated_pairs(
    sft: dict[str, Any], dpo: dict[str, Any], progress: dict[str, Any]
) -> list[tuple[int, int, float, float]]:
    """:func:`matched_rounds` over the rounds ``standard`` evaluated in both runs, by the share
    of facts whose right reply each prefers (``progress``: :func:`load_progress`)."""

    def shares(run: dict[str, Any]) -> dict[int, float]:
        ps = progress.get(run["run"]["name"], {})
        return {r.step: ps[r.step]["preferred"] for r in run["rounds"]["standard"] if r.step in ps}

    return matched_rounds(shares(sft), shares(dpo))


def _round_text(report: DriftReport) -> str:
    found = ", ".join(f"{c} {d:+.1f}%" for c, d in corrected_findings(report)) or "none"
    groups = " / ".join(_pct(report.groups.get(g)) for g in ("CAN", "WILL", "HOW"))
    return f"{groups} | {report.capabilities['D'].headline.now or 0.0:.3f} | {found}"


def sft_dpo_tables(sft: dict[str, Any], dpo: dict[str, Any], progress: dict[str, Any]) -> str:
    """The two runs' task progress by step, then their ``standard`` rounds at equal progress:
    each DPO round evaluated offline against the SFT round evaluated offline whose share of
    preferred replies is nearest (DPO's own objective, which SFT's greedy answers and target
    log-prob do not measure for DPO: its target log-prob falls as it learns)."""
    name_s, name_d = sft["run"]["name"], dpo["run"]["name"]
    ps, pd = progress.get(name_s, {}), progress.get(name_d, {})
    if not ps or not pd:
        return f"(no retrained progress for {name_s} and {name_d}: `scale_study.py progress`)"

    def cells(row: dict[str, float] | None) -> str:
        if row is None:
            return "– | – | – | –"
        return (
            f"{row['accuracy']:.2f} | {row['logprob']:.2f} | {row['preferred']:.2f} | "
            f"{row['margin']:+.2f}"
        )

    out = [
        f"| step | {name_s}: greedy exact | log-prob/token | prefers right | margin (nats) | "
        f"{name_d}: greedy exact | log-prob/token | prefers right | margin (nats) |",
        "|---" * 9 + "|",
    ]
    for step in sorted(set(ps) | set(pd)):
        out.append(f"| {step} | {cells(ps.get(step))} | {cells(pd.get(step))} |")
    std_s = {r.step: r for r in sft["rounds"]["standard"]}
    std_d = {r.step: r for r in dpo["rounds"]["standard"]}
    pairs = evaluated_pairs(sft, dpo, progress)
    out += [
        "",
        "At equal progress, the share of facts whose right reply is preferred (`standard`, "
        "offline; groups are the CAN / WILL / HOW means, findings the corrected criteria's, "
        "one round each; * the nearest SFT round evaluated is more than one fact away):",
        "",
        f"| {name_d} step | prefers right | groups | KL | findings | {name_s} step | prefers "
        "right | groups | KL | findings |",
        "|---" * 10 + "|",
    ]
    for d_step, s_step, d_share, s_share in pairs:
        far = "*" if abs(d_share - s_share) > SAME_PROGRESS else ""
        out.append(
            f"| {d_step} | {d_share:.2f} | {_round_text(std_d[d_step])} | {s_step}{far} | "
            f"{s_share:.2f} | {_round_text(std_s[s_step])} |"
        )
    return "\n".join(out)


def _trim(report: DriftReport) -> dict[str, Any]:
    """The report with each capability's headline and named metrics (what the policy reads)."""
    data = report.to_dict()
    for cap in data["capabilities"].values():
        keep = [cap["metric"], *cap.get("parts", ())]
        cap["metrics"] = {name: cap["metrics"][name] for name in keep}
    data.pop("extra", None)
    return data


def load_null(results: Path) -> list[dict[str, Any]]:
    """The null draws (``scale_gpu.py null``): noisy copies of the base weights, one round of
    each suite per draw; from the folder, or from the record where the folder is gone."""
    nulls = []
    for folder in sorted(results.glob("null-*")) if results.is_dir() else []:
        if not (folder / "run.json").is_file():
            continue
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        meta["rounds"] = {
            suite: [r for r, _ in read_history(folder / suite / "driftwatch_history.jsonl")]
            for suite in ("quick", "standard")
        }
        nulls.append(meta)
    if nulls or not RECORDED.is_file():
        return nulls
    for null in json.loads(RECORDED.read_text(encoding="utf-8")).get("null", []):
        null["rounds"] = {
            s: [DriftReport.from_dict(r) for r in reports] for s, reports in null["rounds"].items()
        }
        nulls.append(null)
    return nulls


def null_table(nulls: list[dict[str, Any]], policy: Policy) -> str:
    """What the criteria and the live policies find on draws where nothing was learned."""
    out = [
        "| noise scale | draws | KL (standard) | draws harmful by the criteria | their findings | "
        "largest W3b (standard) | defaults on quick: actions | criteria read on quick: draws | "
        "draws with a corrected finding |",
        "|---" * 9 + "|",
    ]
    for null in nulls:
        std, quick = null["rounds"]["standard"], null["rounds"]["quick"]
        found = [offline_findings(r) for r in std]
        kls = [r.capabilities["D"].headline.now or 0.0 for r in std]
        w3b = max((r.capabilities["W3b"].headline.delta_pct or 0.0 for r in std), key=abs)
        acts = sum(policy.decide([r]).action not in ("continue", "warn") for r in quick)
        on_quick = sum(bool(offline_findings(r)) for r in quick)
        out.append(
            f"| {null['run']['scale']:g} | {len(std)} | {min(kls):.4f}–{max(kls):.4f} | "
            f"{sum(map(bool, found))} | {'; '.join(', '.join(f) for f in found if f) or '–'} | "
            f"{w3b:+.1f}% | {acts} | {on_quick} | "
            f"{sum(bool(corrected_findings(r)) for r in std)} |"
        )
    return "\n".join(out)


def export(runs: list[dict[str, Any]], nulls: list[dict[str, Any]] | None = None) -> None:
    """Every run's rounds, task progress and losses, trimmed, in a committed file: the
    results folder is not committed, and the analysis must survive it. A run of an earlier
    harness names its folder in ``earlier`` (None for the current matrix)."""
    out = []
    for run in runs:
        kept = {k: v for k, v in run.items() if k != "rounds"} | {"earlier": run.get("earlier")}
        kept["rounds"] = {s: [_trim(r) for r in reports] for s, reports in run["rounds"].items()}
        out.append(kept)
    null_out = [
        {k: v for k, v in n.items() if k != "rounds"}
        | {"rounds": {s: [_trim(r) for r in reports] for s, reports in n["rounds"].items()}}
        for n in nulls or []
    ]
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    tmp = RECORDED.with_suffix(".tmp")
    record = {"runs": out, "null": null_out}
    tmp.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
    tmp.replace(RECORDED)
    print(f"wrote {RECORDED}")


def load_recorded(earlier: str | None) -> list[dict[str, Any]]:
    """The runs of one harness (``None``: the current matrix) as :func:`export` recorded them."""
    if not RECORDED.is_file():
        return []
    runs = []
    for run in json.loads(RECORDED.read_text(encoding="utf-8"))["runs"]:
        if run.get("earlier") != earlier:
            continue
        run["rounds"] = {
            s: [DriftReport.from_dict(r) for r in reports] for s, reports in run["rounds"].items()
        }
        run["task"] = {int(k): v for k, v in run["task"].items()}
        run["task_logprob"] = {int(k): v for k, v in run["task_logprob"].items()}
        runs.append(run)
    return runs


def merged(folder: Path, earlier: str | None) -> list[dict[str, Any]]:
    """A harness's runs: those in its results folder, and the recorded ones whose folder is
    gone (the results are not committed; a fresh checkout has only the record)."""
    on_disk = load_runs(folder)
    names = {r["run"]["name"] for r in on_disk}
    runs = on_disk + [r for r in load_recorded(earlier) if r["run"]["name"] not in names]
    for run in runs:
        run["earlier"] = earlier
    return sorted(runs, key=lambda r: r["run"]["name"])


def analyse(results: Path) -> int:
    from driftwatch.monitor import DriftMonitor

    runs = merged(results, None)
    policy = DriftMonitor("quick", action="rollback").policy  # the defaults a user gets
    rows = [summarise(run, policy) for run in runs]
    text = 'The matrix (docs/calibration.md, "The result"):\n\n' + result_table(runs, policy)
    text += "\n\nEvery run in full:\n\n" + tables(rows)
    earlier = []
    for folder, what in EARLIER.items():
        older = merged(results.parent / folder, folder)
        if not older:
            continue
        earlier += older
        text += f"\n\nEarlier: {what} (`{folder}/`):\n\n"
        text += tables([summarise(run, policy) for run in older])
    nulls = load_null(results.parent / "scale-gpu")
    current = runs + [r for r in earlier if r["earlier"] == "scale-gpu"]
    text += "\n\nThe recalibration on the current harness's runs (CPU and GPU):\n\n"
    text += recalibration_table(current, policy)
    if nulls:
        text += "\n\nThe null (`scale-gpu/null-*`): base weights plus noise, nothing learned:\n\n"
        text += null_table(nulls, policy)
    both = {
        key: next((r for r in runs + earlier if (r["earlier"], r["run"]["name"]) == key), None)
        for key in (SFT, DPO)
    }
    if all(both.values()):
        text += "\n\nSFT against DPO on the same atlas data, at equal task progress:\n\n"
        text += sft_dpo_tables(both[SFT], both[DPO], load_progress())  # type: ignore[arg-type]
    print(text)
    results.mkdir(parents=True, exist_ok=True)
    (results / "analysis.md").write_text(text + "\n", encoding="utf-8")
    (results / "analysis.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    export(runs + earlier, nulls)
    if runs:
        plot([r for r in runs + earlier if r["earlier"] != "scale-gpu"])
    gpu = [r for r in earlier if r["earlier"] == "scale-gpu"]
    if gpu:
        plot_gpu(gpu, nulls)
    return 0

"""The realistic-scale study's criteria (studies/scale_analysis.py) mean what
docs/calibration.md says: the offline verdict, and the false-alarm bound."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from driftwatch.drift import DriftReport
from driftwatch.suite import ProbeSuite

ROOT = Path(__file__).resolve().parents[1]


def _load_study(name: str):
    """``studies/<name>.py`` as a module (registered first: its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "studies" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


scale = _load_study("scale_analysis")

# a real quick round (the replay fixture's first), all capabilities unchanged below
_ROUND = json.loads((ROOT / "tests/data/calibration_trajectories.json").read_text("utf-8"))["runs"][
    0
]["quick"][0]


def _report(step: int = 4, **headlines: tuple[float, float, float]) -> DriftReport:
    """The fixture round with chosen capabilities' headline Δ% and interval, the rest at 0."""
    data = copy.deepcopy(_ROUND)
    data["step"] = step
    for cap in data["capabilities"].values():
        head = cap["metrics"][cap["metric"]]
        delta, low, high = headlines.get(cap["id"], (0.0, 0.0, 0.0))
        if cap["group"] in ("CAN", "WILL", "HOW"):
            head.update(delta_pct=delta, ci_low_pct=low, ci_high_pct=high)
    return DriftReport.from_dict(data)


@pytest.mark.parametrize(
    ("headlines", "found"),
    [
        ({}, []),
        # CAN / HOW: a drop of at least 5% whose interval lies wholly below 0
        ({"C1": (-6.0, -11.0, -1.0)}, ["C1 -6.0%"]),
        ({"C1": (-6.0, -13.0, 1.0)}, []),  # not significant
        ({"H2": (-4.0, -7.0, -1.0)}, []),  # significant, but under 5%
        ({"C4": (8.0, 2.0, 14.0)}, []),  # a gain is not a drop
        # WILL: a change of at least 15% either way, interval wholly on that side
        ({"W3a": (16.0, 2.0, 30.0)}, ["W3a +16.0%"]),
        ({"W1": (-20.0, -35.0, -5.0)}, ["W1 -20.0%"]),
        ({"W3a": (14.0, 2.0, 26.0)}, []),
        ({"W3a": (40.0, -5.0, 85.0)}, []),
    ],
)
def test_offline_findings_follow_the_written_criteria(headlines, found):
    assert scale.offline_findings(_report(**headlines)) == found


@pytest.mark.parametrize(
    ("headline", "found"),
    [
        # the family is the 15 capabilities driftwatch measures: z = 2.94 instead of 1.96
        ((20.0, 2.0, 38.0), False),  # significant at 95%, not for the family
        ((60.0, 30.0, 90.0), True),
        ((-60.0, -90.0, -30.0), True),
    ],
)
def test_corrected_findings_widen_the_interval_for_the_rounds_capabilities(headline, found):
    report = _report(W3a=headline)
    assert scale.offline_findings(report) == [f"W3a {headline[0]:+.1f}%"]
    assert bool(scale.corrected_findings(report)) is found


def test_a_corrected_finding_counts_once_the_next_round_repeats_it():
    up, down = (60.0, 30.0, 90.0), (-60.0, -90.0, -30.0)
    swing = [_report(4, W3a=up), _report(8, W3a=down), _report(12, W3a=down)]
    assert scale.persistent_finding(swing, 4) == (8, ["W3a -60.0%"])
    flips = [_report(4, W3a=up), _report(8, W3a=down), _report(12, W3a=up)]
    assert scale.persistent_finding(flips, 4) is None
    gap = [_report(4, W3a=down), _report(12, W3a=down)]  # not consecutive rounds
    assert scale.persistent_finding(gap, 4) is None


ROUNDS = list(range(4, 61, 4))  # a 60-step run's live rounds
CLEAN, FOUND = (0.0, 0.0, 0.0), (-60.0, -90.0, -30.0)  # corrected-significant at z = 2.94


def test_about_every_other_round_settles_a_clean_run():
    """A finding needs two consecutive rounds, so one of each pair, evaluated clean, clears
    the run: 7 checkpoints of 15, and the ones already evaluated count."""
    assert scale.steps_to_settle(ROUNDS, [], 4) == [8, 16, 24, 32, 40, 48, 56]
    late = [_report(56), _report(60)]
    assert scale.steps_to_settle(ROUNDS, late, 4) == [8, 16, 24, 32, 40, 48]
    clean = [_report(s) for s in range(8, 57, 8)]
    assert scale.steps_to_settle(ROUNDS, clean, 4) == []
    gap = [_report(s) for s in range(8, 57, 8) if s != 32]
    assert scale.steps_to_settle(ROUNDS, gap, 4) == [32]  # (28, 32) and (32, 36) uncovered


def test_a_finding_asks_for_its_neighbours_until_it_is_settled():
    rounds = [_report(s) for s in range(8, 57, 8) if s != 16] + [_report(16, W3a=FOUND)]
    assert scale.steps_to_settle(ROUNDS, rounds, 4) == [12, 20]
    alone = [*rounds, _report(12), _report(20)]  # not repeated: a clean run after all
    assert scale.steps_to_settle(ROUNDS, alone, 4) == []
    held = [*rounds, _report(12), _report(20, W3a=FOUND)]  # repeated: harmful, nothing to add
    assert scale.steps_to_settle(ROUNDS, held, 4) == []
    assert scale.persistent_finding(held, 4) == (16, ["W3a -60.0%"])


@pytest.mark.parametrize(
    ("failures", "trials", "bound"),
    [
        (0, 9, 1 - 0.05 ** (1 / 9)),  # the rule of three's exact form: 28.3%
        (0, 135, 1 - 0.05 ** (1 / 135)),
        (1, 20, 0.2161),  # Clopper–Pearson tables
        (3, 3, 1.0),
    ],
)
def test_false_alarm_bound_is_the_exact_one_sided_upper_bound(failures, trials, bound):
    assert math.isclose(scale.upper_bound(failures, trials), bound, abs_tol=1e-4)


def test_sft_and_dpo_rounds_are_matched_by_task_progress_not_by_step():
    sft = {4: 0.25, 8: 0.75, 12: 2.0, 16: 2.9}  # progress by step
    dpo = {4: 1.9, 8: 3.5, 12: 0.5}
    assert scale.matched_rounds(sft, dpo) == [
        (4, 12, 1.9, 2.0),
        (8, 16, 3.5, 2.9),  # beyond what SFT reached: its furthest round
        (12, 4, 0.5, 0.25),  # a tie (0.25 either way) goes to the earlier round
    ]
    assert scale.matched_rounds({}, dpo) == []


def test_at_equal_task_progress_dpo_moved_far_less_than_sft():
    """docs/calibration.md, "SFT against DPO at equal task progress": where the two prefer
    the right capital for the same share of the 36 facts, SFT had lost verbosity, formatting
    and structured output and DPO nothing the corrected criteria find, at 1/110 to 1/18 of
    SFT's KL. Progress is retrained without a monitor, on the monitored runs' steps."""
    record = json.loads((ROOT / "studies/recorded/scale_progress.json").read_text("utf-8"))
    for name in (scale.SFT[1], scale.DPO[1]):
        assert record[name]["logprob_vs_run"] < 1e-3  # the same steps as the monitored run
    progress = scale.load_progress()
    dpo_steps = progress[scale.DPO[1]]
    # why not the target's log-prob: DPO's falls while it learns the preference
    assert dpo_steps[60]["logprob"] < dpo_steps[0]["logprob"] < -5
    assert dpo_steps[60]["preferred"] == 1.0
    sft, dpo = (_recorded(*key) for key in (scale.SFT, scale.DPO))
    std = {
        key: {r.step: r for r in run["rounds"]["standard"]} for key, run in (("s", sft), ("d", dpo))
    }
    pairs = scale.evaluated_pairs(sft, dpo, progress)
    close = [(d, s) for d, s, dv, sv in pairs if abs(dv - sv) <= scale.SAME_PROGRESS]
    assert close == [(4, 36), (8, 32), (12, 28), (16, 40)]
    for d, s in close:
        kl = {k: std[k][step].capabilities["D"].headline.now for k, step in (("d", d), ("s", s))}
        assert kl["d"] < kl["s"] / 10
        assert not scale.corrected_findings(std["d"][d])
        assert {c for c, _ in scale.corrected_findings(std["s"][s])} >= {"W3a", "W3b", "H2"}


# ---- the defaults replayed on the recorded 60-step runs ------------------------------------
# studies/recorded/scale_runs.json holds every run's live quick rounds (written by
# ``scale_study.py analyse``). Each run's decision under the defaults is pinned, so that a
# moved default line, a changed significance rule or a new Δ% floor shows up as a changed
# decision on a real run. Replaying them needs no model.
RECORDED = {
    (r["earlier"], r["run"]["name"]): r
    for r in json.loads((ROOT / "studies/recorded/scale_runs.json").read_text("utf-8"))["runs"]
}


def _defaults():
    from driftwatch import DriftMonitor

    return DriftMonitor("quick", action="rollback").policy  # the defaults a user gets


# (earlier harness folder or None, run) -> the step of the defaults' first stop or rollback
# (None: nothing but warnings), as docs/calibration.md reports it
EXPECTED: dict[tuple[str | None, str], int | None] = {
    # the useful full fine-tune that loses formatting (W3b -62.5% at 36, -75.0% at 40), run
    # again with today's quick: rollback at 40 to 32, one round after the finding
    (None, "mix-full1e-5-s0"): 40,
    # its second and third seeds: W3b -68.8% at 56, -75.0% at 60, rollback at 60 to 52; W3b
    # -62.5% at 36, -75.0% at 40, rollback at 40 to 32
    (None, "mix-full1e-5-s1"): 60,
    (None, "mix-full1e-5-s2"): 40,
    # LoRA at 2e-4 on the same data (W3b -68.8% at 40, -75.0% at 44): rollback at 44 to 36
    (None, "mix-lora2e-4-s0"): 44,
    # its second and third seeds: W3b -62.5% at 56, -68.8% at 60, rollback at 60 to 52; W3b
    # -75.0% at 44 and 48, rollback at 48 to 40
    (None, "mix-lora2e-4-s1"): 60,
    (None, "mix-lora2e-4-s2"): 48,
    # one task row in four: W3b -43.8% and -50% at 56 and 60, significant only uncorrected
    (None, "mix3-lora2e-4-s0"): None,
    # the first run with the rebuilt quick live (W3b 40 items): a warning at 16, no action
    (None, "mix-lora1e-4-s0"): None,
    (None, "mix-lora1e-4-s1"): None,  # its second seed: not even a warning
    (None, "mix-lora1e-4-s2"): None,  # its third seed, the 211-item quick live: no warning
    # the first with quick's W3a and W3b as standard's live: W3b -56.2% at 40, -68.8% at 44
    (None, "mix3-lora2e-4-s1"): 44,
    # its third seed, resumed twice (from 4, from 24): W3b -87.5% at 32 and 36; rollback to 28
    (None, "mix3-lora2e-4-s2"): 36,
    # full fine-tune, one task row in four: W3b -62.5% at 28, -68.8% at 32; rollback to 24
    (None, "mix3-full1e-5-s0"): 32,
    # its second seed: W3b -62.5% at 32, -75.0% at 36; rollback to 28 (task 0.69)
    (None, "mix3-full1e-5-s1"): 36,
    # its third seed: W3b -75.0% at 28, -93.8% at 32; rollback to 24 (task 0.98)
    (None, "mix3-full1e-5-s2"): 32,
    # a fourth seed of LoRA 1e-4: W3b -56.2% at 56, -62.5% at 60; rollback to 52
    (None, "mix-lora1e-4-s3"): 60,
    # LoRA 1e-4, one task row in four: W3b -62.5% at 56, real only uncorrected: no breach
    (None, "mix3-lora1e-4-s0"): None,
    (None, "mix3-lora1e-4-s1"): None,  # its second seed: the same W3b at 56, no breach
    # its third seed: W3b -56.2% at 52, -62.5% at 56; rollback to 48
    (None, "mix3-lora1e-4-s2"): 56,
    (None, "mix-lora1e-4-s4"): None,  # a fifth seed of LoRA 1e-4: W3b -31.2% at 56, no breach
    # replay on the list prompts: W3b -62.5% live at 36 alone (-56.2% at 32): a warning
    (None, "mixlist-lora1e-4-s0"): None,
    # its second seed: W3b -62.5% at 32 and 36 (a finding at both); rollback to 28
    (None, "mixlist-lora1e-4-s1"): 36,
    # its third seed: W3b -75.0% at 36 and 40 (a finding at both); rollback to 32
    (None, "mixlist-lora1e-4-s2"): 40,
    # a sixth seed of LoRA 1e-4: W3b -43.8% at 48-56, -56.2% live at 60 alone: a warning
    (None, "mix-lora1e-4-s5"): None,
    # a seventh seed of LoRA 1e-4 that keeps its formatting (W3b 0.0% from 32 to 56, -12.5%
    # live at 60; W3a up to +60.1% live): not even a warning
    (None, "mix-lora1e-4-s6"): None,
    (None, "mix-lora1e-4-s7"): None,  # its eighth: W3a +63.8% at 24, W3b -43.8% at 52-56
    # narrow SFT on the labels, to step 60 on the CPU: W3b +56.2% at 4 (a warning), W3a
    # +77.8% and W3b +62.5% at 8: rollback at 8, to step 0
    (None, "labels-full2e-5"): 8,
    # narrow LoRA at 2e-4: W3a +95.6% at 4 (WILL mean +58.3%): rollback at once, to step 0
    (None, "atlas-lora2e-4"): 4,
    # narrow SFT on one-line JSON, to step 60 on the CPU: W3a +99.5% at 4 (a warning), +128.9%
    # at 8: rollback at 8, to step 0; then W3b -100% from 16 and W3a -75.9% by 60
    (None, "json-full2e-5"): 8,
    # narrow SFT on the atlas facts, to step 60 on the CPU: W3a +124.8% at 4 and W3b -93.8%
    # at 8 (warnings), then W3a -99.3% and W3b -100% (the WILL and HOW means with them) at 12:
    # rollback at 12, to step 0
    (None, "atlas-full2e-5"): 12,
    # DPO on the atlas pairs: W3b falls over ten rounds, -68.8% at 40, -75.0% at 44; rollback
    # to 36
    (None, "atlas-dpo-full2e-5"): 44,
    # narrow SFT at lr 2e-6: W3a +62.2% at 12 (+30.4% at 8); rollback at once, to step 8
    (None, "atlas-full2e-6-slow"): 12,
    # the third replay on the CPU with the 171-item quick (W3b 24 items of its own): harmful
    # offline, nothing raised: the misses the same runs with today's quick replace above
    ("scale-quick171", "mix-lora2e-4-s0"): None,  # W3b from 40, held at 44 and 48
    ("scale-quick171", "mix-full1e-5-s0"): None,  # W3b from 36, held at 40
    # harmful offline (W3b, H1): a miss, docs/calibration.md
    ("scale-replay2", "mix-lora2e-4-s0"): None,
    ("scale-replay2", "mix-full1e-5-s0"): None,  # harmful offline (W3b, H4): a miss
    ("scale-replay1", "mix-lora2e-4-s0"): None,
    ("scale-replay1", "atlas-full2e-5"): 8,  # W3a +131% two rounds (the group lines: 12)
    ("scale-pilot", "mix-lora2e-4-s0"): 32,
    ("scale-pilot", "mix-lora1e-4-s0"): 60,
    ("scale-pilot", "mix-full1e-5-s0"): None,
    # one H200, standard live at every round; "partial": stopped by the device-time limit
    ("scale-gpu", "mix-full1e-5-s0"): None,  # harmful offline (W3b at 8, 32-60): a miss
    ("scale-gpu", "mix-lora2e-4-s0"): None,  # partial (32 steps); harmful offline from 4
    ("scale-gpu", "mix-lora1e-4-s0"): None,  # partial (36 steps); harmful offline from 8
    # corrected finding at 8: on time (the group lines alone: 12)
    ("scale-gpu", "atlas-full2e-5"): 8,
    # corrected finding at 4: one round late (the group lines alone: 20)
    ("scale-gpu", "labels-full2e-5"): 8,
    ("scale-gpu", "json-full2e-5"): None,  # partial (8 steps); offline W3a at 4
    ("scale-gpu", "atlas-full2e-6-slow"): None,  # partial (8 steps); nothing offline yet
}


# the corrected verdict of every run of the current harness (CPU and GPU), as
# docs/calibration.md reports it: benign runs are those the defaults must leave alone
CORRECTED: dict[tuple[str | None, str], str] = {
    (None, "mix3-lora2e-4-s0"): "benign",  # settled: standard at 8, 16, ..., 48, 56, 60
    (None, "mix-lora1e-4-s0"): "benign",  # settled: W3b +56.2% at 16 alone; 12 and 20 clean
    (None, "mix-lora1e-4-s1"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mix3-lora2e-4-s1"): "harmful",  # W3b from 40, held at 44 (settled: 8, 16, ..., 44)
    (None, "mix3-lora2e-4-s2"): "harmful",  # W3b from 32, held at 36 (settled: 8, ..., 36)
    (None, "mix-full1e-5-s0"): "harmful",  # W3b from 36, held at 40 (settled: 8, ..., 40)
    (None, "mix-lora2e-4-s0"): "harmful",  # W3b from 40, held at 44 (settled: 8, ..., 44)
    (None, "mix-lora2e-4-s1"): "harmful",  # W3b from 56, held at 60 (settled: 8, ..., 60)
    (None, "mix-lora2e-4-s2"): "harmful",  # W3b from 44, held at 48 (settled: 8, ..., 48, 44)
    (None, "mix-full1e-5-s1"): "harmful",  # W3b from 56, held at 60 (settled: 8, ..., 60)
    (None, "mix-full1e-5-s2"): "harmful",  # W3b from 36, held at 40 (settled: 8, ..., 40)
    (None, "mix-lora1e-4-s2"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mix3-full1e-5-s0"): "harmful",  # W3b from 28, held at 32 (settled: 8, ..., 32)
    (None, "mix3-full1e-5-s1"): "harmful",  # W3b from 32, held at 36 (settled: 8, ..., 36)
    (None, "mix3-full1e-5-s2"): "harmful",  # W3b from 28, held at 32 (settled: 8, ..., 32, 28)
    (None, "mix-lora1e-4-s3"): "harmful",  # W3b from 56, held at 60 (settled: 8, ..., 60)
    (None, "mix3-lora1e-4-s0"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mix3-lora1e-4-s1"): "benign",  # settled: W3b -62.5% at 56 holds 0 by 0.5 points
    (None, "mix3-lora1e-4-s2"): "harmful",  # W3b from 52, held at 56 (settled: 8, ..., 56)
    (None, "mix-lora1e-4-s4"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mixlist-lora1e-4-s0"): "benign",  # settled: 32 and 40 clean around the live 36
    (None, "mixlist-lora1e-4-s1"): "harmful",  # W3b from 32, held at 36 (settled: 8, ..., 36)
    (None, "mixlist-lora1e-4-s2"): "harmful",  # W3b from 36, held at 40 (settled: 8, ..., 40)
    (None, "mix-lora1e-4-s5"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mix-lora1e-4-s6"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "mix-lora1e-4-s7"): "benign",  # settled: standard at 8, 16, ..., 56, no finding
    (None, "atlas-lora2e-4"): "harmful",  # W3a from 4, held at 8 (settled: 8, 4)
    (None, "labels-full2e-5"): "harmful",  # W3b from 4, held at 8 (settled: 8, 4)
    (None, "json-full2e-5"): "harmful",  # W3a from 4, held at 8 (settled: 8, 4)
    (None, "atlas-full2e-5"): "harmful",  # W3b from 8, held at 12 (settled: 8, 4, 12)
    (None, "atlas-dpo-full2e-5"): "harmful",  # W3b from 40, held at 44 (settled: 8, ..., 44)
    (None, "atlas-full2e-6-slow"): "harmful",  # W3a from 12, held at 16 (settled: 8, 16, 12)
    ("scale-quick171", "mix-lora2e-4-s0"): "harmful",  # W3b from 40, held at 44 and 48
    ("scale-quick171", "mix-full1e-5-s0"): "harmful",  # W3b from 36, held at 40
    ("scale-gpu", "mix-full1e-5-s0"): "harmful",  # W3b from 36
    ("scale-gpu", "atlas-full2e-5"): "harmful",
    ("scale-gpu", "labels-full2e-5"): "harmful",
    ("scale-gpu", "json-full2e-5"): "harmful",
    ("scale-gpu", "mix-lora1e-4-s0"): "unclassified",  # partial: clean to 36
    ("scale-gpu", "mix-lora2e-4-s0"): "unclassified",  # partial: clean to 36
    ("scale-gpu", "atlas-full2e-6-slow"): "unclassified",  # partial: 8 steps
}


def _recorded(earlier: str | None, name: str) -> dict:
    """A recorded run as the analysis reads it (reports, not their JSON)."""
    (run,) = (r for r in scale.load_recorded(earlier) if r["run"]["name"] == name)
    return run


@pytest.mark.parametrize("key", sorted(CORRECTED, key=str), ids=lambda k: f"{k[0]}/{k[1]}")
def test_the_corrected_verdicts(key):
    run = _recorded(*key)
    row = scale.summarise(run, _defaults())
    assert row["corrected_verdict"] == CORRECTED[key]
    if row["corrected_verdict"] == "benign":  # 0 stops and 0 rollbacks; warnings pinned
        assert row["live"]["first_action"] is None
        warned = {  # a lone live round past a line: W3b +56.2%; -62.5%; -56.2% at the end
            (None, "mix-lora1e-4-s0"): 16,
            (None, "mixlist-lora1e-4-s0"): 36,
            (None, "mix-lora1e-4-s5"): 60,
        }
        assert row["live"]["first_breach"] == warned.get(key)
    if row["corrected_verdict"] == "harmful" and _reads_w3_as_standard(run):
        # issue 20: stopped within one live round of the offline finding (the runs recorded
        # with an earlier quick are read as the rebuilt one reads them below)
        delay = row["corrected_delay_rounds"]  # None: no action at all
        assert delay is not None and 0 <= delay <= 1


def _reads_w3_as_standard(run: dict) -> bool:
    """Recorded with quick as it is built now: its live W3a and W3b count standard's items."""
    live, offline = run["rounds"]["quick"][0], run["rounds"]["standard"][0]

    def counts(report, cid):
        return {k: m.n for k, m in report.capabilities[cid].metrics.items()}

    return all(counts(live, c) == counts(offline, c) for c in scale.REBUILT_FROM_STANDARD)


def test_nine_benign_runs_of_60_steps_get_no_stop_and_no_rollback():
    """Issue 20's first 'done when', read from the recorded rounds rather than the pins: at
    least nine runs of the current harness are benign by the corrected criteria, each 60
    steps (15 live rounds), and the defaults act in none of their rounds."""
    rows = [scale.summarise(_recorded(*k), _defaults()) for k in RECORDED if k[0] is None]
    benign = [row for row in rows if row["corrected_verdict"] == "benign"]
    assert len(benign) >= 9
    assert [row["rounds"] for row in benign] == [15] * len(benign)
    assert sum(row["live"]["rounds_acting"] for row in benign) == 0


def test_the_docs_sum_up_the_recorded_matrix():
    """docs/calibration.md's "The result" table is what ``analyse`` makes of the recorded
    runs: a run added, or a verdict, action or rollback target that changes, fails here
    until the docs say it too."""
    runs = scale.load_recorded(None)
    table = scale.result_table(runs, _defaults())
    assert table in (ROOT / "docs/calibration.md").read_text("utf-8")
    rows = table.splitlines()[2:]
    assert len(rows) == len(runs)
    # a rollback returns to the last round the defaults let pass, with the task learned
    # there: step 24 of mix3-full1e-5-s0, where its task read 0.58
    (row,) = (r for r in rows if r.startswith("| `mix3-full1e-5-s0`"))
    assert row.endswith("| a warning at 28, rollback at 32 | 1 round | 24 (0.58) |")


def test_one_cpu_run_has_quick_as_built_now():
    """The delay check above is not vacuous: a harmful run recorded with today's quick."""
    assert _reads_w3_as_standard(_recorded(None, "mix3-lora2e-4-s1"))
    assert not _reads_w3_as_standard(_recorded("scale-quick171", "mix-lora2e-4-s0"))


@pytest.mark.parametrize("name", ["mix-full1e-5-s0", "mix-lora2e-4-s0"])
def test_the_misses_were_recorded_again_on_the_same_weights(name):
    """The two CPU runs the 171-item quick missed were run again with today's quick: the
    same training (losses within float noise of another machine), so the same offline
    verdict, now with live rounds that count standard's W3a and W3b items."""
    old, new = _recorded("scale-quick171", name), _recorded(None, name)
    losses = [[row["loss"] for row in run["losses"]] for run in (old, new)]
    assert len(losses[0]) == len(losses[1]) == 60
    assert max(abs(a - b) for a, b in zip(*losses, strict=True)) < 1e-4
    assert old["task"] == new["task"]  # the same greedy answers to the 48 task items
    assert not _reads_w3_as_standard(old) and _reads_w3_as_standard(new)
    w3b = [
        {r.step: r.capabilities["W3b"].value for r in run["rounds"]["standard"]}
        for run in (old, new)
    ]
    shared = sorted(set(w3b[0]) & set(w3b[1]))  # the same formatted replies of 40 at each
    assert len(shared) >= 2
    assert all(math.isclose(w3b[0][s], w3b[1][s], abs_tol=1e-6) for s in shared)


def test_every_recorded_run_is_pinned():
    assert set(RECORDED) == set(EXPECTED)
    for run in RECORDED.values():  # 60 steps, a round every 4, unless the run was cut short
        assert len(run["rounds"]["quick"]) == 15 or run.get("partial"), run["run"]["name"]


@pytest.mark.parametrize("key", sorted(EXPECTED, key=str), ids=lambda k: f"{k[0]}/{k[1]}")
def test_the_defaults_take_the_recorded_decision(key):
    reports = [DriftReport.from_dict(r) for r in RECORDED[key]["rounds"]["quick"]]
    assert scale.replay(_defaults(), reports)["first_action"] == EXPECTED[key]


# ---- the live rounds as the rebuilt quick reads them ---------------------------------------
# quick's W3b (since 2026-12-04, evening) and W3a (since 2026-12-05) are standard's items at
# standard's new tokens, so on the GPU runs (standard at every round, on the same weights)
# standard's W3a and W3b are what the live round reads: scale_analysis.as_rebuilt_quick.
# -> (first action, corrected finding's step)
REBUILT: dict[str, tuple[int | None, int | None]] = {
    "atlas-full2e-5": (12, 8),  # W3b at 8 and 12 (W3a: +125% at 4, +45% at 8, -99% from 12)
    "labels-full2e-5": (8, 4),
    "mix-full1e-5-s0": (40, 36),  # the useful run that loses formatting: the old quick missed it
    "json-full2e-5": (8, 4),  # partial (8 steps); with W3a's 24 items at 32 tokens: not by 8
    "mix-lora1e-4-s0": (None, None),  # partial (36 steps)
    "mix-lora2e-4-s0": (None, None),  # partial (32 steps)
    "atlas-full2e-6-slow": (None, None),  # partial (8 steps)
}


def _gpu_run(name: str) -> dict:
    return _recorded("scale-gpu", name)


@pytest.mark.parametrize("cid", scale.REBUILT_FROM_STANDARD)
def test_the_rebuilt_quick_reads_w3a_and_w3b_as_standard_does(cid):
    """The substitution is sound only while quick's items (and their new tokens) are
    standard's, and both suites score them with the same metrics."""
    quick, standard = (ProbeSuite.load(s) for s in ("quick", "standard"))
    assert quick.capability(cid) == standard.capability(cid)
    items = [[i for i in s.items if i.capability == cid] for s in (quick, standard)]
    assert items[0] == items[1] and len(items[0]) >= 40


@pytest.mark.parametrize("name", sorted(REBUILT))
def test_the_defaults_on_the_rebuilt_quick(name):
    run = _gpu_run(name)
    acted = scale.replay(_defaults(), scale.as_rebuilt_quick(run))["first_action"]
    found = scale.persistent_finding(run["rounds"]["standard"], run["every"])
    assert (acted, found and found[0]) == REBUILT[name]
    if acted is not None:  # issue 20: within one live round of the offline finding
        assert 0 <= (acted - found[0]) / run["every"] <= 1


def _moved(policy, pick, **change):
    return replace(
        policy, thresholds=tuple(replace(t, **change) if pick(t) else t for t in policy.lines)
    )


def _decisions(policy) -> dict:
    live = {
        k: scale.replay(policy, [DriftReport.from_dict(r) for r in run["rounds"]["quick"]])
        for k, run in RECORDED.items()
    }
    rebuilt = {n: scale.replay(policy, scale.as_rebuilt_quick(_gpu_run(n))) for n in REBUILT}
    return {k: v["first_action"] for k, v in (live | rebuilt).items()}


@pytest.mark.parametrize(
    "change",
    [
        {"patience": 1},  # acts on LoRA 1e-4's lone W3b +75% at 16, a finding that did not hold
        {"patience": 3},  # a round later on atlas, labels and the useful full fine-tune
        {"max_change": 60.0},  # the WILL lines: labels stopped a round later (3-30%: no change)
    ],
    ids=str,
)
def test_moving_the_per_capability_lines_changes_a_pinned_decision(change):
    policy = _defaults()
    if "max_change" in change:
        moved = _moved(policy, lambda t: t.significance == "family" and t.max_change, **change)
    else:
        moved = _moved(policy, lambda t: t.significance == "family", **change)
    assert _decisions(moved) != _decisions(policy)


def test_the_per_capability_lines_are_the_criteria_read_live():
    """No recorded run drops a CAN or HOW capability for real, so no replayed decision pins
    those capabilities' lines (moving them changes none). What pins them is what they are
    meant to be: the study's written criteria (a 5% drop, a 15% change), on the interval
    widened for the family, held for two rounds, as the corrected criteria judge a finding.
    Moving any per-capability line, CAN and HOW included, fails here."""
    policy = _defaults()
    quick = ProbeSuite.load("quick")
    measured = {c.id: c.group for c in quick.capabilities if c.group in ("CAN", "WILL", "HOW")}
    lines = {t.target: t for t in policy.lines if t.significance == "family"}
    assert set(lines) == set(measured)
    for cid, line in lines.items():
        if measured[cid] == "WILL":
            assert (line.max_change, line.max_drop) == (scale.WILL_CHANGE, None)
        else:
            assert (line.max_drop, line.max_change) == (scale.CAN_HOW_DROP, None)
        assert line.patience == 2


def test_the_family_interval_is_what_spares_a_benign_run():
    """mix3-lora1e-4-s0 is benign by the corrected criteria (W3b -62.5% at 56, -56.2% at 60,
    real at 95% but not for the family of 15). Judged on the plain 95% interval, the
    per-capability lines would roll it back at 60: a false alarm."""
    reports = _recorded(None, "mix3-lora1e-4-s0")["rounds"]["quick"]
    plain = _moved(_defaults(), lambda t: t.significance == "family", significance=True)
    assert scale.replay(_defaults(), reports)["first_action"] is None
    assert scale.replay(plain, reports)["first_action"] == 60


# ---- the null: noisy copies of the base weights (studies/scale_gpu.py null) -----------------
NULL = json.loads((ROOT / "studies/recorded/scale_runs.json").read_text("utf-8"))["null"]


def test_the_defaults_never_act_on_the_null():
    """24 draws at a KL of 0.001-0.007 nats/token, nothing learned: no stop, no rollback."""
    policy = _defaults()
    rounds = [DriftReport.from_dict(r) for n in NULL for r in n["rounds"]["quick"]]
    assert len(rounds) == 24
    assert all(policy.decide([r]).action in ("continue", "warn") for r in rounds)
    # not even a warning, nor with W3a and W3b read as the rebuilt quick reads them
    assert not any(policy.decide([r]).breaches for r in rounds)
    draws = [
        {"rounds": {s: [DriftReport.from_dict(r) for r in rs] for s, rs in n["rounds"].items()}}
        for n in NULL
    ]
    rebuilt = [r for draw in draws for r in scale.as_rebuilt_quick(draw)]
    assert len(rebuilt) == 24
    assert not any(policy.decide([r]).breaches for r in rebuilt)


def test_the_criteria_call_most_larger_null_draws_harmful():
    """docs/calibration.md: the criteria, one round at a time, find a significant drop or
    change in 1, 4 and 7 of 8 draws as the noise grows. They have no multiplicity control."""
    harmful = {
        n["run"]["scale"]: sum(
            bool(scale.offline_findings(DriftReport.from_dict(r))) for r in n["rounds"]["standard"]
        )
        for n in NULL
    }
    assert harmful == {0.004: 1, 0.006: 4, 0.009: 7}


def test_the_corrected_criteria_find_nothing_on_the_null():
    """Widened for the 15 capabilities of a standard round, no draw has a finding."""
    rounds = [DriftReport.from_dict(r) for n in NULL for r in n["rounds"]["standard"]]
    assert [r for r in rounds if scale.corrected_findings(r)] == []


def test_the_study_trains_on_the_committed_replay():
    """Every run of the study, on any machine, trains on the replay in
    studies/recorded/replay.json: one reply per replay prompt, sampled as the study says, and
    read without loading a model (a fresh checkout does not sample it again)."""
    study = _load_study("scale_study")
    assert study.REPLAY == ROOT / "studies/recorded/replay.json"
    replies = study.make_replay("no-such-model")  # a model would be loaded only to sample
    assert sorted(r["prompt"] for r in replies) == sorted(study.replay_prompts())
    assert all(isinstance(r["reply"], str) and r["reply"].strip() for r in replies)
    # the third replay as docs/calibration.md describes it: 68 of 228 cut at 256 tokens
    assert sum(not r["ended"] for r in replies) == 68
    recorded = json.loads(study.REPLAY.read_text("utf-8"))
    assert recorded["sampling"] == study.REPLAY_SAMPLING
    assert recorded["tokens"] == study.REPLAY_TOKENS


def test_the_list_replay_is_chosen_by_prompt_and_keeps_every_reply_to_it():
    """``mixlist`` rows: one task row in four, the other three the base model's replies to the
    96 replay prompts that ask for a list, the plain replies among them included (choosing by
    the reply would train formatting up instead of holding it where the base has it)."""
    from driftwatch.testing import tiny_tokenizer

    study = _load_study("scale_study")
    lists = study.list_prompts()
    assert len(lists) == 96 and lists <= set(study.replay_prompts())
    run = next(r for r in study.MATRIX if r.name == "mixlist-lora1e-4-s0")
    tok = tiny_tokenizer()
    rows = study.training_rows(run, 40, tok)
    replies = {r["reply"]: r for r in study.make_replay("no-such-model")}
    replayed = []
    for k, row in enumerate(rows):
        pairs = zip(row["input_ids"], row["labels"], strict=True)
        text = tok.decode([t for t, lab in pairs if lab != -100])
        if k % 4 == 0:
            assert text not in replies and len(text.split()) <= 3  # a one-word label
        else:
            replayed.append(next(r for t, r in replies.items() if t.strip() in text))
    assert len(replayed) == 30 and all(r["prompt"] in lists for r in replayed)
    assert len({r["prompt"] for r in replayed}) == 30  # each reply once before any repeats
    formatted = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|#+\s)|\*\*", re.M)  # docs/calibration.md
    assert 0 < sum(not formatted.search(r["reply"]) for r in replayed) < 15


def test_an_interrupted_run_resumes_where_its_last_checkpoint_left_it(
    tmp_path, monkeypatch, model_dir, cache
):
    """A run cut off after its round at step 8, before checkpoint-8 is saved, resumes from
    checkpoint-4 and ends with the record, the task rows and the live rounds of one
    uninterrupted run (on the tiny model, ``smoke`` live, a round every 4 steps)."""
    from driftwatch.settings import ProbeBudget
    from driftwatch.sinks import HISTORY_FILE, read_history

    study = _load_study("scale_study")
    monkeypatch.setattr(study, "SUITES", ("smoke", "standard"))
    # no memory cap: a tenth of the tiny model's weights would decode one row at a time
    monkeypatch.setattr(study, "budget", lambda args: ProbeBudget(memory_share=None))
    keep_latest = study._latest_state_only

    class Cut(type(keep_latest())):
        """Dies after step 8 is logged, before it is saved, as a crash would."""

        def on_log(self, args, state, control, **kwargs):
            if state.global_step == 8:
                raise RuntimeError("cut off")

    def run(results: Path) -> dict:
        args = ["--model", str(model_dir), "--steps", "8", "--every", "4"]
        study.main(
            ["run", "--only", "json-full2e-5", *args, "--device", "cpu", "--results", str(results)]
        )
        return json.loads((results / "json-full2e-5" / "run.json").read_text("utf-8"))

    whole = run(tmp_path / "whole")
    monkeypatch.setattr(study, "_latest_state_only", Cut)
    with pytest.raises(RuntimeError, match="cut off"):
        run(tmp_path / "cut")
    folder = tmp_path / "cut" / "json-full2e-5"
    assert study.resume_point(folder) == folder / "trainer" / "checkpoint-4"
    assert [r.step for r, _ in read_history(folder / "smoke" / HISTORY_FILE)] == [4, 8]
    assert '"step": 8' in (folder / "task.jsonl").read_text("utf-8")
    assert scale.load_runs(tmp_path / "cut") == []  # analysed once finished, not before
    monkeypatch.setattr(study, "_latest_state_only", keep_latest)
    resumed = run(tmp_path / "cut")

    assert resumed["resumed_from"] == [4] and whole["resumed_from"] == []
    assert [r["run"]["name"] for r in scale.load_runs(tmp_path / "cut")] == ["json-full2e-5"]
    assert resumed["losses"] == whole["losses"]  # same machine, same layout: exact
    rows = {}
    for name in ("whole", "cut"):
        base = tmp_path / name / "json-full2e-5"
        task = [json.loads(x) for x in (base / "task.jsonl").read_text("utf-8").splitlines()]
        rounds = read_history(base / "smoke" / HISTORY_FILE)
        rows[name] = task, [r for r, _ in rounds]
        saved = sorted((base / "trainer").glob("checkpoint-*/optimizer.pt"))
        assert [p.parent.name for p in saved] == ["checkpoint-8"]  # the newest only
    (task_w, rounds_w), (task_c, rounds_c) = rows["whole"], rows["cut"]
    assert [t["step"] for t in task_c] == [t["step"] for t in task_w] == [0, 4, 8]
    assert [t["logprob"] for t in task_c] == [t["logprob"] for t in task_w]
    assert [r.step for r in rounds_c] == [r.step for r in rounds_w] == [4, 8]
    for a, b in zip(rounds_w, rounds_c, strict=True):
        assert b.capabilities["D"].value == pytest.approx(a.capabilities["D"].value, abs=1e-6)

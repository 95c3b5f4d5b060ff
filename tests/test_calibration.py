"""The default policy replayed on the signal-quality study's recorded rounds.

``tests/data/calibration_trajectories.json`` holds the live ``quick`` rounds of every run of
``studies/signal_study.py`` (docs/calibration.md): benign fine-tunes that must raise
nothing, and damaging ones that must be stopped. Replaying them needs no model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftwatch import DriftMonitor
from driftwatch.drift import DriftReport

DATA = json.loads(
    (Path(__file__).with_name("data") / "calibration_trajectories.json").read_text("utf-8")
)
RUNS = {r["run"]["name"]: r for r in DATA["runs"]}
BENIGN = sorted(n for n, r in RUNS.items() if r["run"]["kind"] == "benign")
DAMAGING = sorted(n for n, r in RUNS.items() if r["run"]["kind"] == "damaging")


def _decisions(name: str):
    policy = DriftMonitor("quick", action="stop").policy  # the defaults a user gets
    reports = [DriftReport.from_dict(r) for r in RUNS[name]["quick"]]
    return [policy.decide(reports[: k + 1]) for k in range(len(reports))]


def test_the_study_has_enough_runs():
    assert len(BENIGN) >= 5 and len(DAMAGING) >= 2


def test_the_defaults_are_the_calibrated_ones():
    chosen = DATA["chosen"]
    policy = DriftMonitor("quick").policy
    # the group and KL lines; the per-capability ones came later (tests/test_scale_study.py)
    lines = {t.target: t.limit for t in policy.thresholds if t.significance != "family"}
    assert lines == {g: chosen[g] for g in ("CAN", "HOW", "WILL", "D")}
    assert (policy.patience, policy.significance) == (chosen["patience"], chosen["significance"])
    (kl,) = (t for t in policy.thresholds if t.max_kl is not None)
    assert kl.significance in ((None, True) if chosen["D_significance"] else (False,))


@pytest.mark.parametrize("name", BENIGN)
def test_no_alarm_on_a_benign_run(name):
    decisions = _decisions(name)
    assert decisions and all(not d.breaches for d in decisions), [d.message for d in decisions]


@pytest.mark.parametrize("name", DAMAGING)
def test_a_damaging_run_is_stopped(name):
    assert any(d.stop for d in _decisions(name))

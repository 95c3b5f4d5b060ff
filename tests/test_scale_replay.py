"""The default policy replayed on the realistic-scale study's recorded rounds.

``studies/recorded/scale_runs.json`` holds the live ``quick`` rounds (and the offline
``standard`` ones) of every 60-step run of ``studies/scale_study.py`` (docs/calibration.md,
"At realistic scale"), written by ``scale_study.py analyse``. Replaying them needs no model.
Each run's decision under the defaults is pinned here, so that a moved default line, a
changed significance rule or a new Δ% floor shows up as a changed decision on a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftwatch import DriftMonitor
from driftwatch.drift import DriftReport

RECORDED = Path(__file__).resolve().parents[1] / "studies" / "recorded" / "scale_runs.json"
RUNS = {
    (r["earlier"], r["run"]["name"]): r for r in json.loads(RECORDED.read_text("utf-8"))["runs"]
}

# (earlier harness folder or None, run) -> the step of the defaults' first stop or rollback
# (None: nothing but warnings), as docs/calibration.md reports it
EXPECTED: dict[tuple[str | None, str], int | None] = {
    (None, "mix-lora2e-4-s0"): None,  # harmful offline (W3b, H1): a miss, docs/calibration.md
    (None, "mix-full1e-5-s0"): None,  # harmful offline (W3b, H4): a miss
    ("scale-replay1", "mix-lora2e-4-s0"): None,
    ("scale-replay1", "atlas-full2e-5"): 12,
    ("scale-pilot", "mix-lora2e-4-s0"): 32,
    ("scale-pilot", "mix-lora1e-4-s0"): 60,
    ("scale-pilot", "mix-full1e-5-s0"): None,
}


def _first_action(key: tuple[str | None, str]) -> int | None:
    policy = DriftMonitor("quick", action="rollback").policy  # the defaults a user gets
    reports = [DriftReport.from_dict(r) for r in RUNS[key]["rounds"]["quick"]]
    for k in range(len(reports)):
        decision = policy.decide(reports[: k + 1])
        if decision.action in ("stop", "rollback"):
            return decision.step
    return None


def test_every_recorded_run_is_pinned():
    assert set(RUNS) == set(EXPECTED)
    assert all(len(r["rounds"]["quick"]) == 15 for r in RUNS.values())  # 60 steps, every 4


@pytest.mark.parametrize("key", sorted(EXPECTED, key=str), ids=lambda k: f"{k[0]}/{k[1]}")
def test_the_defaults_take_the_recorded_decision(key):
    assert _first_action(key) == EXPECTED[key]

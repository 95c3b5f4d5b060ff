"""Grouped settings check themselves and round-trip through JSON; a whole monitor's
configuration too, driftwatch 0.1's flat form included (driftwatch/settings.py, config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftwatch import (
    Cadence,
    DriftMonitor,
    Policy,
    ProbeBudget,
    ReferenceSpec,
    RollbackPlan,
    Threshold,
)
from driftwatch.config import MonitorConfig
from driftwatch.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Cadence(0), "Cadence.every_n_steps: expected an integer >= 1, found 0"),
        (lambda: Cadence(True), "Cadence.every_n_steps"),
        (lambda: Cadence(5, max_overhead_pct=-1), "Cadence.max_overhead_pct"),
        (lambda: ProbeBudget(0), "ProbeBudget.token_budget"),
        (lambda: ProbeBudget(512, min_token_budget=1024), r"1\.\.token_budget \(512\)"),
        (lambda: ProbeBudget(memory_share=float("inf")), "ProbeBudget.memory_share"),
        (lambda: ReferenceSpec(topk=2048), r"ReferenceSpec.topk: expected 1\.\.1024"),
        (lambda: ReferenceSpec(build_from="adapter"), "'model' or 'base'"),
        (lambda: RollbackPlan(lr_scale=2), "RollbackPlan.lr_scale"),
        (lambda: RollbackPlan(max_rollbacks=-1), "RollbackPlan.max_rollbacks"),
        (lambda: Policy(floor=0), "floor: expected a positive number"),
        (lambda: Policy(thresholds=["C1"]), "expected Threshold objects"),
    ],
)
def test_a_bad_value_fails_where_it_is_written_naming_group_and_field(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_defaults_that_depend_on_other_fields_are_resolved():
    assert ProbeBudget().min_token_budget == 256
    assert ProbeBudget(100).min_token_budget == 100
    assert ReferenceSpec(path=Path("/r/x.safetensors")).path == "/r/x.safetensors"  # JSON


@pytest.mark.parametrize(
    ("share", "every", "expected"),
    [(5.0, 10, 10), (10.0, 10, 10), (10.5, 10, 20), (35.0, 10, 40), (35.0, 40, 160)],
)
def test_the_cadence_stretches_by_the_factor_that_fits_the_budget(share, every, expected):
    assert Cadence(10, max_overhead_pct=10.0, adapt=True).stretched(every, share) == expected
    assert Cadence(10, max_overhead_pct=10.0).stretched(every, share) == every  # report only


@pytest.mark.parametrize(
    "settings",
    [
        Cadence(7, max_overhead_pct=5.0, adapt=True),
        ProbeBudget(512, memory_share=None, min_token_budget=64),
        ReferenceSpec(path="/refs/r.safetensors", cache_dir="/refs", topk=8, build_from="base"),
        RollbackPlan("continue", 0.25, 2, "disk", "/snaps"),
        Policy((Threshold("C1", max_drop=3.0, min_abs=0.01),), "stop", 2, 5, False, floor=0.2),
        Policy(action="rollback"),  # thresholds left to the suite's defaults
    ],
    ids=lambda s: type(s).__name__,
)
def test_every_group_round_trips_through_json(settings):
    data = json.loads(json.dumps(settings.to_dict()))
    assert type(settings).from_dict(data) == settings


def test_unknown_names_are_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown setting 'evry_n_steps' \(did you mean"):
        Cadence.from_dict({"evry_n_steps": 5})


def test_a_monitor_config_round_trips(tmp_path):
    monitor = DriftMonitor(
        "smoke",
        policy=Policy([Threshold("C1", max_drop=4.0)], action="rollback", patience=2),
        cadence=Cadence(25, max_overhead_pct=8.0, adapt=True),
        budget=ProbeBudget(1024, memory_share=0.2),
        reference=ReferenceSpec(cache_dir=tmp_path, topk=16),
        rollback=RollbackPlan(after="continue", max_rollbacks=1),
        logdir=tmp_path / "tb",
        strict=True,
    )
    config = json.loads(json.dumps(monitor.config()))
    assert config["version"] == 2 and set(config) >= {"policy", "cadence", "budget"}
    again = DriftMonitor.from_config(config)
    assert again.config() == config
    assert (again.policy, again.cadence, again.budget) == (
        monitor.policy,
        monitor.cadence,
        monitor.budget,
    )


# what DriftMonitor.config() wrote in driftwatch 0.1 (flat keyword arguments), as checkpoints
# saved by the HF adapter hold it
FLAT = {
    "suite": "smoke",
    "every_n_steps": 7,
    "thresholds": [
        {
            "target": "C1",
            "max_drop": 3.0,
            "max_change": None,
            "max_kl": None,
            "min_abs": 0.0,
            "metric": None,
            "significance": None,
        }
    ],
    "action": "stop",
    "patience": 2,
    "warmup_steps": 0,
    "significance": True,
    "floor": 0.1,
    "logdir": None,
    "reference": None,
    "cache_dir": None,
    "token_budget": 2048,
    "memory_share": 0.1,
    "topk": 32,
    "after_rollback": "stop",
    "lr_scale": 0.5,
    "max_rollbacks": 3,
    "reference_from": "model",
    "strict": False,
    "nonfinite": "breach",
    "min_token_budget": 256,
    "max_overhead_pct": None,
    "adapt_cadence": False,
    "snapshot": "memory",
    "snapshot_dir": None,
}


def test_a_flat_configuration_from_driftwatch_0_1_is_migrated():
    monitor = DriftMonitor.from_config(FLAT)
    assert monitor.every_n_steps == 7 and monitor.budget.token_budget == 2048
    assert monitor.policy.action == "stop" and monitor.policy.patience == 2
    assert monitor.policy.thresholds == (Threshold("C1", max_drop=3.0),)
    assert MonitorConfig.from_dict(FLAT) == MonitorConfig.from_dict(monitor.config())


def test_an_unknown_version_or_flat_key_is_refused():
    with pytest.raises(ConfigError, match="expected version 2, found 3"):
        MonitorConfig.from_dict({**FLAT, "version": 3})
    with pytest.raises(ConfigError, match="unknown setting 'patients'"):
        MonitorConfig.from_dict({**FLAT, "patients": 2})

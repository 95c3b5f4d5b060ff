"""Faults a long run throws at the monitor: NaN weights, out of memory, a slow round.

Each test injects the fault and checks what a user would see: the decision, the log, the
files, and that training could go on (docs/reliability.md lists them).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import driftwatch.session as session_module
from driftwatch import Cadence, DriftMonitor, Policy, ProbeBudget, Threshold
from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift
from driftwatch.errors import DriftwatchError
from driftwatch.memory import weight_bytes
from tests.conftest import LAYOUT_NOISE, build_model, largest_change


# ---------------------------------------------------------------------- non-finite output
def _poison(model: torch.nn.Module) -> None:
    """NaN in one output-head row: every next-token distribution becomes NaN."""
    with torch.no_grad():
        model.lm_head.weight[7, 0] = float("nan")


def test_nan_logits_mark_every_capability_and_stop_at_once(tokenizer, cache, tmp_path):
    model = build_model(tokenizer)
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=1,
        policy=Policy(action="stop", patience=3, warmup_steps=100),
        logdir=tmp_path,
    )
    monitor.start(model, tokenizer)
    assert monitor.step(model, 1).action == "continue"
    _poison(model)
    decision = monitor.step(model, 2)
    monitor.close()
    # patience 3 and warm-up 100 hold back drift, not broken weights
    assert decision.stop
    report = monitor.history[-1]
    caps = report.capabilities
    assert all(cap.nonfinite > 0 for cap in caps.values()), {
        c.id: c.nonfinite for c in caps.values()
    }
    # the generation-scored capabilities are caught while decoding
    assert caps["W1"].nonfinite == len(monitor.suite.items_of("W1"))
    assert {b.metric for b in decision.breaches} == {"nonfinite"}
    assert "items with NaN/inf log-probabilities" in decision.message
    # no NaN drift is logged: the JSON history is strict JSON, the Δ are absent, not NaN
    records = [json.loads(line) for line in (tmp_path / "driftwatch_history.jsonl").open()]
    assert records[-1]["report"]["capabilities"]["C1"]["nonfinite"] > 0
    assert DriftReport.from_dict(records[-1]["report"]).capabilities["C1"].nonfinite > 0


def test_nonfinite_ignore_decides_on_the_finite_items_only(tokenizer, cache):
    model = build_model(tokenizer)
    monitor = DriftMonitor(
        "smoke", every_n_steps=1, policy=Policy(action="stop", nonfinite="ignore")
    )
    monitor.start(model, tokenizer)
    _poison(model)
    decision = monitor.step(model, 1)
    assert decision.action == "continue"
    assert all(math.isnan(c.headline.now) for c in monitor.history[-1].capabilities.values())
    assert DriftMonitor.from_config(monitor.config()).policy.nonfinite == "ignore"


def _report(step: int, *, delta_pct: float, nonfinite: int = 0) -> DriftReport:
    drift = MetricDrift("score", 0.5, 0.5, delta_pct / 200, delta_pct, -1.0, 1.0, 50, -1.0, 1.0)
    cap = CapabilityDrift("C1", "CAN", "score", {"score": drift}, nonfinite)
    return DriftReport(step=step, capabilities={"C1": cap}, groups={"CAN": delta_pct})


def test_policy_nonfinite_setting():
    policy = Policy((Threshold("C1", max_drop=5.0),), action="rollback", patience=2)
    clean = policy.decide([_report(1, delta_pct=0.0)])
    broken = policy.decide([_report(1, delta_pct=0.0, nonfinite=3)])
    assert clean.action == "continue" and broken.action == "rollback"
    assert str(broken.breaches[0]) == "C1: 3 items with NaN/inf log-probabilities"
    relaxed = Policy((Threshold("C1", max_drop=5.0),), nonfinite="ignore")
    assert relaxed.decide([_report(1, delta_pct=0.0, nonfinite=3)]).action == "continue"
    with pytest.raises(DriftwatchError, match="nonfinite"):
        Policy((), nonfinite="crash")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ out of memory
def _oom_above(
    limit: int | None, budgets: list[int], monkeypatch, memory: list[int | None] | None = None
):
    """Make run_probes raise CUDA's out-of-memory error while the budget is above ``limit``;
    the token budgets (and byte budgets, into ``memory``) of the attempts are recorded."""
    memory = [] if memory is None else memory
    real = session_module.run_probes

    def run(model, compiled, tokenizer, **kwargs):
        budgets.append(compiled.token_budget)
        memory.append(compiled.budget.bytes)
        if limit is None or compiled.token_budget > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(model, compiled, tokenizer, **kwargs)

    monkeypatch.setattr(session_module, "run_probes", run)


def test_out_of_memory_halves_the_budget_and_keeps_it(model, tokenizer, cache, monkeypatch, caplog):
    monitor = DriftMonitor("smoke", every_n_steps=1, budget=ProbeBudget(4096), strict=True)
    monitor.start(model, tokenizer)
    budgets: list[int] = []
    memory: list[int | None] = []
    _oom_above(1024, budgets, monkeypatch, memory)
    with caplog.at_level("WARNING"):
        decision = monitor.step(model, 1)
    assert decision.probed and monitor.failures == 0
    assert budgets == [4096, 2048, 1024]
    # the byte budget (a tenth of the weights by default) is halved with the token budget
    weights = weight_bytes(model)
    assert memory == [int(share * weights) for share in (0.1, 0.05, 0.025)]
    assert caplog.text.count("out of memory in the probe round at step 1") == 2
    # the smaller layout measures the same thing: an unchanged model shows no drift at all
    report = monitor.history[-1]
    assert largest_change(report) <= LAYOUT_NOISE
    assert monitor.step(model, 2).probed and budgets[-1] == 1024  # later rounds keep it
    # the adapted budget is run-time state (saved with the history); the configuration keeps
    # what the user asked for
    state = monitor.state_dict()
    assert state["token_budget"] == 1024
    assert state["memory_share"] == pytest.approx(0.025)
    assert monitor.config()["budget"]["token_budget"] == 4096
    resumed = DriftMonitor("smoke", every_n_steps=1, budget=ProbeBudget(4096))
    resumed.load_state_dict(json.loads(json.dumps(state)))
    resumed.start(model, tokenizer)
    assert resumed.session.token_budget == 1024  # a resumed run starts from the smaller one


def test_out_of_memory_at_the_floor_skips_the_round_even_when_strict(
    model, tokenizer, cache, monkeypatch, caplog
):
    monitor = DriftMonitor(
        "smoke", every_n_steps=1, budget=ProbeBudget(1024, min_token_budget=256), strict=True
    )
    monitor.start(model, tokenizer)
    budgets: list[int] = []
    _oom_above(None, budgets, monkeypatch)
    with caplog.at_level("WARNING"):
        decision = monitor.step(model, 1)  # no exception: the run goes on
    assert budgets == [1024, 512, 256]
    assert decision.action == "continue" and not decision.probed
    assert monitor.failures == 1 and monitor.history == []
    assert "out of memory even with a token budget of 256" in caplog.text
    assert "round at step 1 is skipped" in caplog.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ProbeBudget(min_token_budget=0), "min_token_budget"),
        (lambda: ProbeBudget(min_token_budget=8192), "min_token_budget"),
        (lambda: Cadence(2, max_overhead_pct=0), "max_overhead_pct"),
        (lambda: Cadence(2, adapt=True), "adapt=True needs max_overhead_pct"),
        (lambda: Policy(nonfinite="skip"), "nonfinite"),
    ],
)
def test_bad_fault_settings_fail_at_construction(make, message):
    with pytest.raises(DriftwatchError, match=message):
        make()


# --------------------------------------------------------------------------- time budget
def _clock(ticks: list[float]):
    it = iter(ticks)
    return lambda: next(it)


def test_a_round_over_the_time_budget_is_reported(model, tokenizer, cache, caplog):
    # start ends at 0; the round at step 2 begins at 20 and ends at 30: 10 s of probing for
    # 20 s of training is 50%, over the 10% budget
    monitor = DriftMonitor("smoke", cadence=Cadence(2, max_overhead_pct=10.0))
    monitor.clock = _clock([0.0, 20.0, 30.0, 30.0])
    monitor.start(model, tokenizer)
    with caplog.at_level("WARNING"):
        monitor.step(model, 2)
    extra = monitor.history[-1].extra
    assert extra["overhead_pct"] == pytest.approx(50.0) and extra["overhead_over_budget"] == 1
    assert "took 50.0% of the training time since the previous round (budget 10%)" in caplog.text
    assert monitor.every_n_steps == 2  # reported only: the cadence is the user's


def test_adapt_cadence_stretches_the_interval_to_fit_the_budget(model, tokenizer, cache, caplog):
    # round at step 2: 10 s probe / 20 s training = 50% → every 2 × ceil(50/10) = 10 steps;
    # round at step 10: 10 s probe / 100 s training = 10% → within budget, unchanged
    monitor = DriftMonitor("smoke", cadence=Cadence(2, max_overhead_pct=10.0, adapt=True))
    monitor.clock = _clock([0.0, 20.0, 30.0, 30.0, 130.0, 140.0, 140.0])
    monitor.start(model, tokenizer)
    with caplog.at_level("WARNING"):
        monitor.step(model, 2)
    assert "probing every 10 steps from now on (was 2)" in caplog.text
    assert monitor.history[-1].extra["every_n_steps"] == 10
    assert [s for s in range(3, 21) if monitor.due(s)] == [10, 20]
    monitor.step(model, 10)
    assert monitor.every_n_steps == 10 and "overhead_over_budget" not in monitor.history[-1].extra
    resumed = DriftMonitor("smoke", cadence=Cadence(2, max_overhead_pct=10.0, adapt=True))
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    assert resumed.every_n_steps == 10  # a resumed run keeps the adapted cadence

"""Drift arithmetic against plain reference computations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from driftwatch.drift import DriftReport, aggregate, compare, paired_drift
from driftwatch.errors import DriftwatchError
from driftwatch.suite import Capability, ProbeItem, ProbeSuite


def test_paired_drift_matches_a_plain_computation():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(40, generator=gen, dtype=torch.float64)
    now = base - 0.1 * torch.rand(40, generator=gen, dtype=torch.float64)
    got = paired_drift(now, base)
    diffs = (now - base).tolist()
    assert got["n"] == 40
    assert got["base"] == pytest.approx(statistics.fmean(base.tolist()))
    assert got["now"] == pytest.approx(statistics.fmean(now.tolist()))
    assert got["delta"] == pytest.approx(statistics.fmean(diffs))
    assert got["se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(40))


def test_paired_drift_ignores_non_applicable_items():
    now = torch.tensor([1.0, float("nan"), 0.0, 1.0])
    base = torch.tensor([1.0, 1.0, 1.0, float("nan")])
    assert paired_drift(now, base) == {"n": 2, "base": 1.0, "now": 0.5, "delta": -0.5, "se": 0.5}


def _suite() -> ProbeSuite:
    items = []
    for k in range(4):
        items.append(
            ProbeItem(
                id=f"a{k}",
                capability="A",
                kind="choice",
                prompt="q",
                choices=("x", "y"),
                answer=0,
                group=f"g{k // 2}",
            )
        )
        items.append(
            ProbeItem(
                id=f"w{k}", capability="W", kind="generate", prompt="q", check={"type": "json"}
            )
        )
    items.append(ProbeItem(id="d0", capability="D", kind="distribution", text="t t t"))
    caps = [
        Capability("A", "a", "CAN"),
        Capability("W", "w", "WILL"),
        Capability("D", "d", "other", "kl"),
    ]
    return ProbeSuite.from_items(items, caps)


def _values(suite, scores, kl=0.0):
    nan = float("nan")
    v = {
        m: torch.full((len(suite),), nan, dtype=torch.float64)
        for m in ("score", "gold_logprob", "logprob", "kl", "top1_agreement")
    }
    for k, item in enumerate(suite.items):
        if item.kind != "distribution":
            v["score"][k] = scores[item.id]
        else:
            v["kl"][k] = kl
            v["top1_agreement"][k] = 1.0 if kl == 0 else 0.5
    return v


def test_compare_reports_delta_percent_interval_groups_and_consistency():
    suite = _suite()
    base = _values(suite, {"a0": 1, "a1": 1, "a2": 1, "a3": 1, "w0": 1, "w1": 0, "w2": 0, "w3": 0})
    now = _values(
        suite, {"a0": 1, "a1": 0, "a2": 0, "a3": 0, "w0": 1, "w1": 1, "w2": 0, "w3": 0}, kl=0.25
    )
    report = compare(now, base, suite, step=10)
    a = report.capabilities["A"].headline
    assert (a.base, a.now, a.delta) == (1.0, 0.25, -0.75)
    assert a.delta_pct == pytest.approx(-75.0)
    assert a.ci_low_pct < a.delta_pct < a.ci_high_pct
    w = report.capabilities["W"].headline
    assert w.delta_pct == pytest.approx(100.0 * 0.25 / 0.25)
    d = report.capabilities["D"].headline
    assert d.metric == "kl" and d.delta_pct is None and d.now == pytest.approx(0.25)
    # groups g0 = {a0, a1}: consistent in base, split now; g1 = {a2, a3}: consistent in both
    cons = report.capabilities["A"].metrics["consistency"]
    assert (cons.base, cons.now, cons.n) == (1.0, 0.5, 2)
    assert report.groups == {"CAN": pytest.approx(-75.0), "WILL": pytest.approx(100.0)}
    assert DriftReport.from_dict(report.to_dict()) == report


def test_floor_keeps_small_bases_from_exploding():
    suite = _suite()
    zeros = {f"a{k}": 0 for k in range(4)} | {f"w{k}": 0 for k in range(4)}
    base = _values(suite, zeros)
    now = _values(suite, zeros | {"w0": 1})
    report = compare(now, base, suite, step=1, floor=0.5)
    assert report.capabilities["W"].delta_pct == pytest.approx(100 * 0.25 / 0.5)


def test_aggregate_follows_captracks_rule_the_mean_of_metric_deltas():
    now = {"mmlu": 0.50, "arc": 0.70, "ifeval": 0.40, "words": 180.0}
    base = {"mmlu": 0.60, "arc": 0.70, "ifeval": 0.50, "words": 120.0}
    caps = {"C1": ["mmlu", "arc"], "H1": ["ifeval"], "W3a": ["words", "ifeval"]}
    report = aggregate(now, base, caps, groups={"C1": "CAN", "H1": "HOW", "W3a": "WILL"})

    def pct(m):  # CapTrack: 100 · (adapted − base) / base, per metric
        return 100 * (now[m] - base[m]) / base[m]

    for cid, names in caps.items():  # a capability: the unweighted mean of its metrics' Δ%
        cap = report.capabilities[cid]
        assert cap.delta_pct == pytest.approx(sum(pct(m) for m in names) / len(names))
        assert {m: cap.metrics[m].delta_pct for m in names} == pytest.approx(
            {m: pct(m) for m in names}
        )
    # the word count (+50%) weighs as much as the rate beside it (-20%): +15%, where the Δ%
    # of the mean raw value would be +49.2%
    assert report.capabilities["W3a"].delta_pct == pytest.approx(15.0)
    assert report.groups == pytest.approx({"CAN": -8.3333333, "HOW": -20.0, "WILL": 15.0})
    with pytest.raises(DriftwatchError, match="gsm8k"):
        aggregate({"a": 1.0}, {"a": 1.0}, {"C2": ["gsm8k"]})


def test_the_floor_only_guards_tiny_bases_and_zero_is_plain_division():
    now, base = {"rare": 0.04, "big": 0.9}, {"rare": 0.02, "big": 0.6}
    guarded = aggregate(now, base, {"X": ["rare", "big"]}).capabilities["X"]
    assert guarded.metrics["rare"].delta_pct == pytest.approx(100 * 0.02 / 0.1)  # floored
    assert guarded.metrics["big"].delta_pct == pytest.approx(50.0)  # untouched
    plain = aggregate(now, base, {"X": ["rare", "big"]}, floor=0).capabilities["X"]
    assert plain.metrics["rare"].delta_pct == pytest.approx(100.0)
    assert plain.delta_pct == pytest.approx(75.0)
    zero = aggregate({"z": 0.1}, {"z": 0.0}, {"X": ["z"]}, floor=0).capabilities["X"]
    assert math.isnan(zero.delta_pct)  # no percentage of a zero base


def test_group_mean_is_unweighted_over_capabilities():
    report = aggregate(
        {"a": 0.5, "b": 0.9},
        {"a": 1.0, "b": 1.0},
        {"X": ["a"], "Y": ["b"]},
        groups={"X": "CAN", "Y": "CAN"},
    )
    assert report.groups["CAN"] == pytest.approx((-50.0 + -10.0) / 2)

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


def _tagged_suite() -> ProbeSuite:
    """W: 3 "harm" items (refusal rate) and 3 "ok" items (compliance); L: reply lengths."""
    from driftwatch.items import MetricDef

    items = [
        ProbeItem(f"w{k}", "W", "generate", prompt="q", check={"type": "json"}, tags=(tag,))
        for k, tag in enumerate(["harm", "harm", "harm", "ok", "ok", "ok"])
    ]
    items += [ProbeItem(f"l{k}", "L", "generate", prompt="q") for k in range(5)]
    w = Capability(
        "W",
        "w",
        "WILL",
        "mean",
        metrics=(
            MetricDef("refusal", "score", ("harm",)),
            MetricDef("compliance", "score", ("ok",)),
        ),
    )
    lengths = (MetricDef("length", "words"), MetricDef("spread", "words", stat="std"))
    return ProbeSuite.from_items(items, [w, Capability("L", "l", "WILL", "mean", metrics=lengths)])


def _generated(suite, scores, words):
    nan = float("nan")
    v = {m: torch.full((len(suite),), nan, dtype=torch.float64) for m in ("score", "words")}
    for k, item in enumerate(suite.items):
        if item.capability == "W":
            v["score"][k] = scores[k]
        else:
            v["words"][k] = words[k - 6]
    return v


def test_named_metrics_are_reported_separately_and_the_headline_is_their_mean():
    suite = _tagged_suite()
    base = _generated(suite, [1, 1, 1, 1, 1, 0], [10, 20, 30, 40, 50])
    # refuses one harmful request fewer (−33.3%), answers one benign request more (+50%)
    now = _generated(suite, [1, 1, 0, 1, 1, 1], [20, 20, 20, 20, 20])
    report = compare(now, base, suite, step=1, floor=0.1)
    w = report.capabilities["W"]
    assert w.parts == ("refusal", "compliance") and w.metric == "mean"
    refusal, compliance = w.metrics["refusal"], w.metrics["compliance"]
    assert (refusal.base, refusal.now, refusal.n) == (1.0, pytest.approx(2 / 3), 3)
    assert refusal.delta_pct == pytest.approx(-100 / 3)
    assert compliance.delta_pct == pytest.approx(50.0)
    # the pooled score moved by 0: a refusal swapped for a compliance cancels out
    assert w.metrics["score"].delta == pytest.approx(0.0)
    assert w.value == pytest.approx((-100 / 3 + 50) / 2)
    # the interval of a mean of independent estimates: se = sqrt(se_a² + se_b²) / 2
    se = [(m.ci_high_pct - m.ci_low_pct) / (2 * 1.959963984540054) for m in (refusal, compliance)]
    half = 1.959963984540054 * math.hypot(*se) / 2
    assert w.headline.ci_low_pct == pytest.approx(w.value - half)
    assert w.headline.ci_high_pct == pytest.approx(w.value + half)
    assert report.groups["WILL"] == pytest.approx((w.value + report.capabilities["L"].value) / 2)
    # L: every reply now has 20 words: the mean drops from 30, the spread collapses to 0
    length, spread = (report.capabilities["L"].metrics[n] for n in ("length", "spread"))
    assert (length.base, length.now) == (30.0, 20.0)
    assert spread.base == pytest.approx(statistics.stdev([10, 20, 30, 40, 50]))
    assert spread.now == pytest.approx(0.0, abs=1e-12) and spread.delta_pct == pytest.approx(-100.0)
    assert math.isfinite(spread.ci_low_pct)  # jackknife interval over 5 items
    assert DriftReport.from_dict(report.to_dict()) == report


def test_spread_interval_is_the_jackknife_of_the_paired_difference():
    from driftwatch.drift import spread_drift

    gen = torch.Generator().manual_seed(1)
    base = 60 + 10 * torch.randn(25, generator=gen, dtype=torch.float64)
    now = base * 0.5 + 5 * torch.randn(25, generator=gen, dtype=torch.float64)
    got = spread_drift(now, base)
    loo = [
        statistics.stdev(now[torch.arange(25) != i].tolist())
        - statistics.stdev(base[torch.arange(25) != i].tolist())
        for i in range(25)
    ]
    mean = statistics.fmean(loo)
    se = math.sqrt(24 / 25 * sum((d - mean) ** 2 for d in loo))
    assert got["delta"] == pytest.approx(
        statistics.stdev(now.tolist()) - statistics.stdev(base.tolist())
    )
    assert got["se"] == pytest.approx(se, rel=1e-9)

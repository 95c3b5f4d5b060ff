"""Policy decisions as a pure function of the report history: parametrized tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift
from driftwatch.errors import DriftwatchError
from driftwatch.policy import Policy, Threshold, default_thresholds
from driftwatch.suite import ProbeSuite


def report(
    step: int,
    c1: float,
    *,
    half_width: float = 1.0,
    kl: float = 0.0,
    will: float = 0.0,
    kl_half_width: float = 0.01,
) -> DriftReport:
    """A report whose C1 headline Δ% is ``c1`` with an interval of ± half_width percent."""

    def pct(metric: str, value: float) -> MetricDrift:
        return MetricDrift(
            metric,
            0.8,
            0.8 * (1 + value / 100),
            0.8 * value / 100,
            value,
            0.8 * (value - half_width) / 100,
            0.8 * (value + half_width) / 100,
            50,
            value - half_width,
            value + half_width,
        )

    caps = {
        "C1": CapabilityDrift("C1", "CAN", "score", {"score": pct("score", c1)}),
        "W1": CapabilityDrift("W1", "WILL", "score", {"score": pct("score", will)}),
        "D": CapabilityDrift(
            "D",
            "other",
            "kl",
            {
                "kl": MetricDrift(
                    "kl", 0.0, kl, kl, None, kl - kl_half_width, kl + kl_half_width, 20
                )
            },
        ),
    }
    return DriftReport(step=step, capabilities=caps, groups={"CAN": c1, "WILL": will})


def first(policy: Policy, deltas: list[float], action: str, every: int = 10) -> int | None:
    """The step of the first decision with ``action`` over a sequence of C1 Δ% values."""
    history = []
    for n, delta in enumerate(deltas, start=1):
        history.append(report(n * every, delta))
        if policy.decide(history).action == action:
            return n * every
    return None


C1_DROP5 = (Threshold("C1", max_drop=5.0),)

# (deltas per round, patience, warm-up, expected first warn step, expected first stop step)
TABLE = [
    ([0, -1, -2, -3], 1, 0, None, None),  # within the line: nothing
    ([0, -6, -7, -8], 1, 0, None, 20),  # patience 1: the first breach stops
    ([0, -6, -7, -8], 2, 0, 20, 30),  # patience 2: warn, then stop
    ([0, -6, 0, -6, 0], 2, 0, 20, None),  # breaches that do not persist never stop
    ([-6, -6, -6, -6], 3, 0, 10, 30),
    ([-9, -9, -9, -9], 1, 25, None, 30),  # warm-up: rounds before step 25 never breach
    ([-9, -9, -9, -9], 2, 25, 30, 40),  # the streak starts after warm-up
    ([0, -5, 0], 1, 0, None, 20),  # exactly on the line counts (Δ% <= -max_drop)
]


@pytest.mark.parametrize(("deltas", "patience", "warmup", "warn_at", "stop_at"), TABLE)
def test_patience_and_warmup_table(deltas, patience, warmup, warn_at, stop_at):
    policy = Policy(
        C1_DROP5, action="stop", patience=patience, warmup_steps=warmup, significance=False
    )
    assert first(policy, deltas, "warn") == warn_at
    assert first(policy, deltas, "stop") == stop_at


def test_warn_action_never_stops():
    policy = Policy(C1_DROP5, action="warn", patience=1)
    assert first(policy, [0, -50, -60], "stop") is None
    assert first(policy, [0, -50, -60], "warn") == 20


@pytest.mark.parametrize(
    ("delta", "half_width", "significance", "breach"),
    [
        (-6.0, 0.5, True, True),  # whole interval past -5
        (-6.0, 2.0, True, False),  # interval reaches -4: could be noise
        (-6.0, 2.0, False, True),  # without the significance rule the value alone decides
    ],
)
def test_significance_rule(delta, half_width, significance, breach):
    policy = Policy(C1_DROP5, action="stop", significance=significance)
    decision = policy.decide([report(10, delta, half_width=half_width)])
    assert decision.stop is breach


def test_min_abs_guards_small_bases():
    policy = Policy(
        (Threshold("C1", max_drop=5.0, min_abs=0.1),), action="stop", significance=False
    )
    # -20% of a 0.8 base is an absolute change of 0.16 (breach); -10% is 0.08 (no breach)
    assert policy.decide([report(10, -20.0)]).stop
    assert not policy.decide([report(10, -10.0)]).stop


def test_two_sided_will_threshold_and_group_threshold():
    policy = Policy((Threshold("WILL", max_change=15.0),), action="stop", significance=False)
    assert policy.decide([report(10, 0.0, will=20.0)]).stop
    assert policy.decide([report(10, 0.0, will=-20.0)]).stop
    assert not policy.decide([report(10, 0.0, will=10.0)]).stop


def test_kl_threshold():
    policy = Policy((Threshold("D", max_kl=0.2),), action="stop")
    assert not policy.decide([report(10, 0.0, kl=0.1)]).stop
    decision = policy.decide([report(10, 0.0, kl=0.5)])
    assert decision.stop and decision.breaches[0].metric == "kl"
    assert "D/kl +0.50 past 0.2" in decision.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"max_drop": 5.0, "max_kl": 1.0}, "exactly one of"),
        ({"max_drop": -5.0}, "positive"),
        ({"max_drop": float("nan")}, "positive"),
        ({"max_drop": 5.0, "metric": ""}, "metric must be a metric name"),
        ({"max_drop": 5.0, "significance": "yes"}, "significance must be"),
        ({"max_kl": 0.1, "significance": "family"}, "a max_kl line takes"),
        ({"max_drop": 5.0, "patience": 0}, "patience must be an integer >= 1"),
        ({"max_drop": 5.0, "patience": True}, "patience must be an integer >= 1"),
    ],
)
def test_threshold_validation(kwargs, message):
    with pytest.raises(DriftwatchError, match=message):
        Threshold("C1", **kwargs)


def test_policy_checks_targets_against_the_suite():
    suite = ProbeSuite.load("smoke")
    with pytest.raises(DriftwatchError, match="did you mean 'C1'"):
        Policy((Threshold("C1x", max_drop=5.0),)).check_suite(suite)
    with pytest.raises(DriftwatchError, match="takes max_kl"):
        Policy((Threshold("D", max_drop=5.0),)).check_suite(suite)
    with pytest.raises(DriftwatchError, match="patience"):
        Policy(C1_DROP5, patience=0)
    with pytest.raises(DriftwatchError, match="action"):
        Policy(C1_DROP5, action="explode")  # type: ignore[arg-type]
    Policy(default_thresholds(suite)).check_suite(suite)
    with pytest.raises(
        DriftwatchError,
        match=r"unknown metric .acuracy.",
    ):
        Policy((Threshold("C1", max_drop=5.0, metric="acuracy"),)).check_suite(suite)
    # smoke's W1 names its metrics: a line may watch one of them, or their mean
    with pytest.raises(DriftwatchError, match="did you mean 'unsafe_refusal'"):
        Policy((Threshold("W1", max_drop=5.0, metric="unsafe_refusel"),)).check_suite(suite)
    Policy((Threshold("W1", max_drop=5.0, metric="unsafe_refusal"),)).check_suite(suite)
    Policy((Threshold("W1", max_change=5.0, metric="mean"),)).check_suite(suite)


def mean_report(refusal: float, compliance: float, half_width: float) -> DriftReport:
    """W1 with named metrics: its headline is the mean of their Δ%."""
    from driftwatch.drift import mean_drift

    def part(name: str, value: float) -> MetricDrift:
        nan = float("nan")
        return MetricDrift(
            name, 1.0, 1.0, 0.0, value, nan, nan, 10, value - half_width, value + half_width
        )

    parts = {
        "unsafe_refusal": part("unsafe_refusal", refusal),
        "benign_compliance": part("benign_compliance", compliance),
    }
    metrics = {**parts, "mean": mean_drift(list(parts.values()))}
    cap = CapabilityDrift("W1", "WILL", "mean", metrics, parts=tuple(parts))
    return DriftReport(step=10, capabilities={"W1": cap}, groups={"WILL": cap.value})


def test_a_named_metric_breaches_where_the_pooled_mean_does_not():
    # refusals of harmful requests drop 40% while benign compliance rises 40%: the mean is 0
    r = mean_report(-40.0, 40.0, half_width=5.0)
    assert r.capabilities["W1"].value == pytest.approx(0.0)
    assert not Policy((Threshold("W1", max_change=10.0),)).decide([r]).breaches
    line = Threshold("W1", max_drop=10.0, metric="unsafe_refusal")
    (breach,) = Policy((line,)).decide([r]).breaches
    assert (breach.metric, breach.value) == ("unsafe_refusal", -40.0)


def test_significance_on_a_mean_headline_uses_its_combined_interval():
    # each part -12% +- 20: the mean's interval is +- 20*sqrt(2)/2 = +-14.1, so [-26.1, +2.1]
    wide = mean_report(-12.0, -12.0, half_width=20.0)
    assert Policy((Threshold("W1", max_drop=10.0),)).level(Threshold("W1", max_drop=10.0), wide)[
        2
    ] == pytest.approx(-2.142, abs=1e-3)
    assert not Policy((Threshold("W1", max_drop=10.0),)).decide([wide]).breaches
    tight = mean_report(-12.0, -12.0, half_width=1.0)
    assert Policy((Threshold("W1", max_drop=10.0),)).decide([tight]).breaches


@pytest.mark.parametrize(
    ("half_width", "significance", "breaches"),
    [
        (1.0, True, True),  # CAN mean -20%, interval ±1%: past the 10% line
        (15.0, True, False),  # interval ±15%: [-35, -5] reaches back over the line
        (15.0, False, True),  # without the rule the value alone decides
    ],
)
def test_group_thresholds_use_the_interval_of_the_mean(half_width, significance, breaches):
    policy = Policy((Threshold("CAN", max_drop=10.0),), significance=significance)
    decision = policy.decide([report(10, -20.0, half_width=half_width)])
    assert bool(decision.breaches) is breaches


def test_a_threshold_can_override_the_significance_rule():
    wide = [report(10, -6.0, half_width=2.0, kl=0.2, kl_half_width=0.15)]  # KL in [0.05, 0.35]
    assert not Policy((Threshold("D", max_kl=0.15),), action="stop").decide(wide).stop
    judged_on_value = Threshold("D", max_kl=0.15, significance=False)
    assert Policy((judged_on_value,), action="stop").decide(wide).stop
    # and the other way: a line that insists on significance under a policy that does not
    strict = Threshold("C1", max_drop=5.0, significance=True)
    assert not Policy((strict,), action="stop", significance=False).decide(wide).stop
    assert Policy(C1_DROP5, action="stop", significance=False).decide(wide).stop


@pytest.mark.parametrize(
    ("threshold", "significance", "level"),
    [
        # C1 -6% in [-8, -4]: with significance only a line at 4% or closer is crossed
        (Threshold("C1", max_drop=5.0), True, 4.0),
        (Threshold("C1", max_drop=5.0), False, 6.0),
        # WILL +20%, a group: its interval comes from W1's, the same +-2 here -> [18, 22]
        (Threshold("WILL", max_change=15.0), True, 18.0),
        (Threshold("WILL", max_change=15.0), False, 20.0),
        # KL 0.2 in [0.05, 0.35]
        (Threshold("D", max_kl=0.1), True, 0.05),
        (Threshold("D", max_kl=0.1), False, 0.2),
    ],
)
def test_level_is_the_highest_line_a_report_crosses(threshold, significance, level):
    r = report(10, -6.0, half_width=2.0, kl=0.2, will=20.0, kl_half_width=0.15)
    policy = Policy((threshold,), significance=significance)
    assert policy.level(threshold, r)[2] == pytest.approx(level)
    assert not policy.breached(replace(threshold, **{kind(threshold): level * 1.01}), r)[0]
    assert policy.breached(replace(threshold, **{kind(threshold): level * 0.99}), r)[0]


def kind(t: Threshold) -> str:
    return next(n for n in ("max_drop", "max_change", "max_kl") if getattr(t, n) is not None)


# ---- significance="family" and a threshold's own patience (the per-capability defaults) ----
# The family is every capability driftwatch measures (15), even where a round probes fewer
# (report() has C1 and W1): the quantile is Φ⁻¹(1 − 0.05/30) = 2.94 against 1.96, its
# intervals 1.5 times as wide.


def test_the_family_quantile_counts_every_measured_capability():
    from statistics import NormalDist

    from driftwatch.drift import FAMILY, family_z

    assert FAMILY == 15
    assert family_z(report(10, 0.0)) == pytest.approx(NormalDist().inv_cdf(1 - 0.05 / 30))
    assert family_z(report(10, 0.0)) == pytest.approx(2.935, abs=1e-3)
    assert family_z(report(10, 0.0), family=2) == pytest.approx(2.2414, abs=1e-4)


@pytest.mark.parametrize(
    ("threshold", "c1", "will", "half_width", "family", "strict"),
    [
        # C1 -6% in [-8, -4]: widened [-9.0, -3.0], below 0 -> a real drop past 5%; the
        # whole-interval rule wants the interval past -5 and says no
        (Threshold("C1", max_drop=5.0), -6.0, 0.0, 2.0, True, False),
        (Threshold("C1", max_drop=5.0), -6.0, 0.0, 5.5, False, False),  # [-14.2, +2.2]
        (Threshold("C1", max_drop=5.0), -4.0, 0.0, 1.0, False, False),  # real, under the line
        (Threshold("C1", max_drop=5.0), 30.0, 0.0, 1.0, False, False),  # a gain is no drop
        # W1 +20% in [8, 32]: widened [2.0, 38.0], a real change past 15% either way
        (Threshold("W1", max_change=15.0), 0.0, 20.0, 12.0, True, False),
        (Threshold("W1", max_change=15.0), 0.0, -20.0, 12.0, True, False),
        (Threshold("W1", max_change=15.0), 0.0, 20.0, 15.0, False, False),  # [-2.5, 42.5]
        (Threshold("W1", max_change=15.0), 0.0, 40.0, 1.0, True, True),
    ],
)
def test_family_significance_asks_for_a_real_change_past_the_line(
    threshold, c1, will, half_width, family, strict
):
    r = report(10, c1, will=will, half_width=half_width)
    for significance, breach in (("family", family), (True, strict)):
        line = replace(threshold, significance=significance)
        assert Policy((line,)).breached(line, r)[0] is breach, significance


def test_a_threshold_with_its_own_patience():
    c1 = Threshold("C1", max_drop=5.0, significance=False, patience=2)
    will = Threshold("W1", max_change=15.0, significance=False)  # the policy's patience: 1
    policy = Policy((c1, will), action="stop")
    once = [report(10, -10.0)]
    assert policy.decide(once).action == "warn"
    twice = [*once, report(20, -10.0)]
    decision = policy.decide(twice)
    assert decision.stop and "C1/score -10.00% past 5% (2 rounds)" in decision.message
    assert policy.decide([report(10, 0.0, will=30.0)]).stop


def test_the_defaults_add_a_family_line_per_capability():
    suite = ProbeSuite.load("quick")
    lines = default_thresholds(suite)
    per_cap = {t.target: t for t in lines if t.significance == "family"}
    assert sorted(per_cap) == sorted(
        c.id for c in suite.capabilities if c.group in ("CAN", "WILL", "HOW")
    )
    assert {t.patience for t in per_cap.values()} == {2}
    assert per_cap["W3b"].max_change == 15.0 and per_cap["C1"].max_drop == 5.0
    assert per_cap["H2"].max_drop == 5.0
    Policy(lines).check_suite(suite)

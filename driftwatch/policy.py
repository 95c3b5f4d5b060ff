"""Thresholds, patience, warm-up and significance → a :class:`Decision` (docs/architecture.md).

Decisions are pure functions of the report history, so they are testable without a model.

Breach rules, per :class:`Threshold`:

* ``max_drop`` (CAN / HOW, one-sided): Δ% ≤ −max_drop.
* ``max_change`` (WILL, two-sided): |Δ%| ≥ max_change — a change of default behaviour, good or
  bad depending on intent.
* ``max_kl`` (output distribution): KL(base‖now) ≥ max_kl nats/token.
* ``min_abs`` guards tiny bases: the absolute change must also reach it (CapTrack's ratios
  turned a 0.14 → 0.22 change into +55%).
* ``significance`` (on by default): the whole 95% interval must lie past the line, so a
  breach is not sampling noise. A group threshold (the mean Δ% of its capabilities) is judged
  on the interval of that mean, its capabilities taken as independent. A threshold's own
  ``significance`` (True or False) overrides the policy's for that one line. ``"family"``
  asks what the realistic-scale criteria ask (docs/calibration.md): the value past the line,
  and the interval widened for every capability driftwatch measures together (Bonferroni
  over 15, :func:`driftwatch.drift.family_z`) wholly on one side of 0. It is for lines set
  on every capability at once, as the defaults' per-capability lines are.

``patience`` consecutive breaching rounds of one threshold (the threshold's own ``patience``
where it sets one) trigger the configured action; fewer give a ``warn``. Rounds before
``warmup_steps`` never breach.

Non-finite output (``nonfinite="breach"``, the default): a capability with items whose
log-probabilities came out NaN or inf is a breach of metric ``nonfinite`` that triggers the
action at once, even within patience or warm-up — that is broken weights, not noise.
``nonfinite="ignore"`` leaves those items out and decides on the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from driftwatch.drift import DEFAULT_FLOOR, DriftReport, MetricDrift, family_z, mean_se, pct_se
from driftwatch.errors import ConfigError, did_you_mean
from driftwatch.items import GROUPS
from driftwatch.metrics import MEAN, METRICS, Z_95
from driftwatch.settings import Settings
from driftwatch.thresholds import Threshold, default_thresholds, is_patience

if TYPE_CHECKING:
    from driftwatch.suite import ProbeSuite

__all__ = ["Action", "Breach", "Decision", "Policy", "Threshold", "default_thresholds"]

Action = Literal["warn", "stop", "rollback"]


@dataclass(frozen=True)
class Breach:
    target: str
    metric: str
    value: float  # Δ% (or KL) that crossed the line
    limit: float
    streak: int  # consecutive breaching rounds, this one included

    def __str__(self) -> str:
        if self.metric == "nonfinite":
            return f"{self.target}: {self.value:.0f} items with NaN/inf log-probabilities"
        unit = "" if self.metric == "kl" else "%"
        return (
            f"{self.target}/{self.metric} {self.value:+.2f}{unit} past {self.limit:g}{unit}"
            f" ({self.streak} round{'s' * (self.streak != 1)})"
        )


@dataclass(frozen=True)
class Decision:
    """What to do after a step.

    ``continue`` and ``warn`` go on; ``stop`` ends training; ``rollback`` means the weights
    were (policy: should be) restored to the last healthy snapshot and training goes on.
    A rollback followed by a stop is ``stop`` with ``rolled_back_to`` set.
    """

    action: Literal["continue", "warn", "stop", "rollback"]
    step: int
    breaches: tuple[Breach, ...] = ()
    probed: bool = True  # False when the step was not a probe round
    rolled_back_to: int | None = None  # the step whose snapshot was restored
    restored_from: str | None = None  # the trainer's checkpoint it came from, if one
    note: str | None = None  # why a rollback could not be done

    @property
    def stop(self) -> bool:
        return self.action == "stop"

    @property
    def message(self) -> str:
        text = f"step {self.step}: {self.action}"
        if self.rolled_back_to is not None:
            source = f" from {self.restored_from}" if self.restored_from else ""
            text += f" (weights rolled back to step {self.rolled_back_to}{source})"
        if self.note:
            text += f" ({self.note})"
        if self.breaches:
            text += ": " + "; ".join(str(b) for b in self.breaches)
        return text


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _group_interval(
    report: DriftReport, group: str, mean: float
) -> tuple[float | None, float | None]:
    """95% interval of a group's mean Δ%, treating its capabilities as independent.

    The standard error of each capability's Δ% is read back from its interval; the mean's is
    ``sqrt(Σ se²) / n`` (:func:`driftwatch.drift.mean_se`). ``(None, None)`` when a
    capability has no interval (no rule then).
    """
    ses: list[float] = []
    for cap in report.capabilities.values():
        if cap.group != group or cap.delta_pct is None or not math.isfinite(cap.delta_pct):
            continue
        se = pct_se(cap.headline)
        if se is None or not math.isfinite(se):
            return None, None
        ses.append(se)
    if not ses:
        return None, None
    half = Z_95 * mean_se(ses)
    return mean - half, mean + half


@dataclass(frozen=True)
class Policy(Settings):
    """How a run's drift is judged: the lines, and what crossing them does.

    Example::

        Policy([Threshold("C1", max_drop=5.0)], action="stop", patience=2)
        Policy(action="rollback")   # the calibrated default lines for the suite
    """

    # None: the calibrated defaults for the monitored suite (default_thresholds)
    thresholds: tuple[Threshold, ...] | None = None
    action: Action = "warn"  # what a breach held for `patience` rounds does
    patience: int = 1  # consecutive breaching rounds before the action
    warmup_steps: int = 0  # rounds at earlier steps never breach
    significance: bool = True  # the whole 95% interval must be past the line
    nonfinite: Literal["breach", "ignore"] = "breach"  # NaN/inf output: act at once, or not
    # smallest denominator of Δ% (driftwatch.drift): a base of 0.02 must not turn +0.01 into
    # +50%; it shapes every Δ% the lines are judged on
    floor: float = DEFAULT_FLOOR

    def __post_init__(self) -> None:
        if self.thresholds is not None:
            lines = tuple(self.thresholds)
            if not all(isinstance(t, Threshold) for t in lines):
                raise ConfigError(f"thresholds: expected Threshold objects, found {lines!r}")
            object.__setattr__(self, "thresholds", lines)
        if (
            isinstance(self.floor, bool)
            or not isinstance(self.floor, (int, float))
            or not self.floor > 0
        ):
            raise ConfigError(f"floor: expected a positive number, found {self.floor!r}")
        if self.action not in ("warn", "stop", "rollback"):
            raise ConfigError(
                f"action: expected 'warn', 'stop' or 'rollback', found {self.action!r}"
            )
        if self.nonfinite not in ("breach", "ignore"):
            raise ConfigError(f"nonfinite: expected 'breach' or 'ignore', found {self.nonfinite!r}")
        if not is_patience(self.patience):
            raise ConfigError(f"patience: expected an integer >= 1, found {self.patience!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: expected >= 0, found {self.warmup_steps!r}")

    # ---- configuration ------------------------------------------------------------------
    @property
    def lines(self) -> tuple[Threshold, ...]:
        """The thresholds (resolved: see :meth:`for_suite`)."""
        if self.thresholds is None:
            raise ConfigError(
                "this policy's thresholds are the suite's defaults: resolve it first with "
                "policy.for_suite(suite)"
            )
        return self.thresholds

    def for_suite(self, suite: ProbeSuite) -> Policy:
        """This policy with its thresholds resolved for ``suite`` (the calibrated defaults
        when none are given) and checked against it."""
        resolved = (
            self
            if self.thresholds is not None
            else replace(self, thresholds=default_thresholds(suite))
        )
        resolved.check_suite(suite)
        return resolved

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Rebuild from :meth:`to_dict` data (thresholds included); unknown names are refused."""
        fields = dict(data)
        lines = fields.get("thresholds")
        if lines is not None:
            fields["thresholds"] = tuple(Threshold(**t) for t in lines)
        return super().from_dict(fields)

    def check_suite(self, suite: ProbeSuite) -> None:
        """Refuse thresholds naming capabilities, groups or metrics the suite does not have."""
        caps = {c.id: c for c in suite.capabilities}
        groups = {c.group for c in suite.capabilities} & set(GROUPS)
        for t in self.thresholds or ():
            if t.target in caps:
                cap = caps[t.target]
                metric = t.metric or cap.metric
                known = [*METRICS, *(d.name for d in cap.metrics), *([MEAN] * bool(cap.metrics))]
                if metric not in known:
                    raise ConfigError(
                        f"Threshold({t.target!r}): unknown metric {metric!r}"
                        f"{did_you_mean(metric, known)}; {t.target} has {sorted(set(known))}"
                    )
                is_kl = metric == "kl"
                if is_kl != (t.max_kl is not None):
                    want = "max_kl" if is_kl else "max_drop or max_change"
                    raise ConfigError(f"Threshold({t.target!r}): metric {metric!r} takes {want}")
            elif t.target in groups:
                if t.max_kl is not None or t.metric is not None:
                    raise ConfigError(
                        f"Threshold({t.target!r}): a group threshold applies "
                        "to the group's mean Δ%; use max_drop or max_change"
                    )
            else:
                names = sorted(caps) + sorted(groups)
                hint = did_you_mean(t.target, names)
                raise ConfigError(
                    f"Threshold({t.target!r}): not a capability or group of "
                    f"suite {suite.name!r}{hint}; known: {names}"
                )

    # ---- the decision ------------------------------------------------------------------
    def _value(self, t: Threshold, report: DriftReport) -> tuple[str, float, MetricDrift | None]:
        if t.target in report.capabilities:
            cap = report.capabilities[t.target]
            metric = t.metric or cap.metric
            drift = cap.metrics.get(metric)
            if drift is None:
                return metric, math.nan, None
            value = drift.now if metric == "kl" else drift.delta_pct
            return metric, math.nan if value is None else value, drift
        return "mean", report.groups.get(t.target, math.nan), None

    def breached(self, t: Threshold, report: DriftReport) -> tuple[bool, str, float]:
        """Whether one threshold is crossed in one report, with the metric and value."""
        metric, value, level = self.level(t, report)
        return level >= t.limit, metric, value

    def level(self, t: Threshold, report: DriftReport) -> tuple[str, float, float]:
        """The metric, its value, and the highest line of ``t``'s kind that ``report``
        crosses: ``t`` breaches exactly when ``t.limit <= level`` (``-inf``: no line would).

        With significance on, the level is the interval's near end (a drop of at least the
        line, or a KL of at least it, over the whole interval), so the study's noise floor
        for a threshold is the largest level any benign round reached. With
        ``significance="family"`` it is the value itself once the interval widened for the
        family of capabilities lies wholly on one side of 0 (a drop: below it): a change
        that is real for the family, at least the line's size (the realistic-scale
        criteria's test, docs/calibration.md).
        """
        metric, value, drift = self._value(t, report)
        if report.step < self.warmup_steps or not math.isfinite(value):
            return metric, value, -math.inf
        if drift is not None and abs(drift.delta) < t.min_abs:
            return metric, value, -math.inf
        # The interval judged by the significance rule, on the value's scale (None: no rule).
        low: float | None = None
        high: float | None = None
        significance = self.significance if t.significance is None else t.significance
        if significance and drift is not None:
            if t.max_kl is not None and math.isfinite(drift.ci_low):
                low, high = drift.base + drift.ci_low, drift.base + drift.ci_high
            elif t.max_kl is None and _finite(drift.ci_low_pct) and _finite(drift.ci_high_pct):
                low, high = drift.ci_low_pct, drift.ci_high_pct
        elif significance and drift is None:
            low, high = _group_interval(report, t.target, value)
        if significance == "family" and low is not None and high is not None:
            # the realistic-scale criteria's test: the value past the line, and a change at
            # all for the family of capabilities (the intervals are value ± 1.96 se: the
            # same centre, the family's quantile)
            half = (high - low) / 2 * family_z(report) / Z_95
            centre = (low + high) / 2
            if t.max_drop is not None:
                return metric, value, -value if centre + half < 0 else -math.inf
            real = centre + half < 0 or centre - half > 0
            return metric, value, abs(value) if real else -math.inf
        if t.max_kl is not None:
            return metric, value, value if low is None else min(value, low)
        if t.max_drop is not None:
            return metric, value, -value if high is None else -max(value, high)
        if low is None or high is None:
            return metric, value, abs(value)
        return metric, value, min(abs(value), max(-high, low))

    def decide(self, history: Sequence[DriftReport]) -> Decision:
        """The decision after the last report of ``history`` (oldest first)."""
        if not history:
            raise ConfigError("decide() needs at least one report")
        last = history[-1]
        breaches: list[Breach] = []
        triggered = False
        for t in self.lines:
            hit, metric, value = self.breached(t, last)
            if not hit:
                continue
            streak = 1
            for earlier in reversed(history[:-1]):
                if not self.breached(t, earlier)[0]:
                    break
                streak += 1
            breaches.append(Breach(t.target, metric, value, t.limit, streak))
            triggered |= streak >= (t.patience or self.patience)
        if self.nonfinite == "breach":
            for cap in last.capabilities.values():
                if cap.nonfinite:
                    breaches.append(Breach(cap.id, "nonfinite", float(cap.nonfinite), 0.0, 1))
                    triggered = True
        action: Literal["continue", "warn", "stop", "rollback"] = "continue"
        if breaches:
            action = self.action if triggered else "warn"
        return Decision(action=action, step=last.step, breaches=tuple(breaches))

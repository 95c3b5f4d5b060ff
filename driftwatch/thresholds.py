"""The lines a run must not cross: :class:`Threshold`, and the calibrated defaults
(:func:`default_thresholds`, docs/calibration.md). How a line is judged on a report, and
what crossing it does, is :class:`driftwatch.policy.Policy`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from driftwatch.errors import ConfigError

if TYPE_CHECKING:
    from driftwatch.suite import ProbeSuite

__all__ = [
    "CALIBRATED",
    "PER_CAPABILITY",
    "PER_CAPABILITY_PATIENCE",
    "Threshold",
    "default_thresholds",
    "is_patience",
]


def is_patience(value: object) -> bool:
    """A number of rounds: an integer of at least 1 (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class Threshold:
    """A line a capability (or a CAN/WILL/HOW group mean) must not cross.

    Example::

        Threshold("C1", max_drop=5.0)       # C1 may lose at most 5% of its base score
        Threshold("WILL", max_change=20.0)  # default behaviour may move 20% either way
        Threshold("D", max_kl=0.3)          # output distribution: 0.3 nats/token
    """

    target: str  # capability id ("C1") or group ("CAN", "WILL", "HOW")
    max_drop: float | None = None  # percent of the base value, one-sided
    max_change: float | None = None  # percent of the base value, two-sided
    max_kl: float | None = None  # nats per token
    min_abs: float = 0.0  # the absolute change must be at least this too
    metric: str | None = None  # default: the capability's headline metric
    # None: the policy's significance rule; False: judge the value alone (for a KL whose
    # interval over a handful of texts is wide while its noise floor is measured, see
    # docs/calibration.md); True: require significance even if the policy does not;
    # "family": the value past the line and a change at all, on the interval widened for all
    # 15 capabilities driftwatch measures (for a line on every capability: the defaults'
    # per-capability lines, docs/calibration.md "Recalibrated")
    significance: bool | Literal["family"] | None = None
    patience: int | None = None  # consecutive breaching rounds to act; None: the policy's

    def __post_init__(self) -> None:
        given = [n for n in ("max_drop", "max_change", "max_kl") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"Threshold({self.target!r}): give exactly one of max_drop, "
                f"max_change, max_kl; found {given or 'none'}"
            )
        value = getattr(self, given[0])
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(
                f"Threshold({self.target!r}): {given[0]} must be a positive number, found {value!r}"
            )
        if self.min_abs < 0 or not math.isfinite(self.min_abs):
            raise ConfigError(
                f"Threshold({self.target!r}): min_abs must be >= 0, found {self.min_abs!r}"
            )
        if self.significance not in (None, True, False, "family"):
            raise ConfigError(
                f"Threshold({self.target!r}): significance must be True, False, 'family' or "
                f"None, found {self.significance!r}"
            )
        if self.significance == "family" and self.max_kl is not None:
            raise ConfigError(
                f"Threshold({self.target!r}): significance='family' widens a Δ% interval "
                "for the family of capabilities; a max_kl line takes True, False or None"
            )
        if self.patience is not None and not is_patience(self.patience):
            raise ConfigError(
                f"Threshold({self.target!r}): patience must be an integer >= 1 or None, "
                f"found {self.patience!r}"
            )
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric):
            raise ConfigError(
                f"Threshold({self.target!r}): metric must be a metric name, found {self.metric!r}"
            )

    @property
    def limit(self) -> float:
        return float(self.max_drop or self.max_change or self.max_kl or 0.0)


# Calibrated by the signal-quality study (docs/calibration.md, studies/signal_study.py):
# the tightest lines that were silent, with margin, on every benign fine-tune and stopped
# every damaging one at its first round. tests/test_calibration.py replays the study.
CALIBRATED = {"CAN": 5.0, "HOW": 10.0, "WILL": 15.0, "D": 0.15}
# Added by the realistic-scale study (docs/calibration.md, "Recalibrated"): a line on every
# capability, at the lines of the study's criteria, family-wide significance, two rounds.
# The group means alone were 1-4 rounds late on narrow SFT and missed a fine-tune that lost
# formatting; tests/test_scale_study.py replays the study.
PER_CAPABILITY = {"CAN": 5.0, "HOW": 5.0, "WILL": 15.0}
PER_CAPABILITY_PATIENCE = 2


def default_thresholds(suite: ProbeSuite) -> tuple[Threshold, ...]:
    """The calibrated defaults (docs/calibration.md).

    * The CAN and HOW group means may drop 5% and 10%, the WILL mean may move 15% either
      way, each judged with the policy's significance rule.
    * Each CAN and HOW capability may drop 5%, each WILL capability move 15%, judged on the
      interval widened for all 15 capabilities (``significance="family"``) and acting
      once two rounds in a row breach (``patience=2``).
    * A distribution capability's KL may reach 0.15 nats/token, judged on its value (its
      interval over a handful of texts is wide; the study measured its noise floor instead:
      at most 0.068 on benign runs).
    """
    present = {c.group for c in suite.capabilities}
    out = [Threshold(g, max_drop=CALIBRATED[g]) for g in ("CAN", "HOW") if g in present]
    if "WILL" in present:
        out.append(Threshold("WILL", max_change=CALIBRATED["WILL"]))
    for c in suite.capabilities:
        if c.metric == "kl" or c.group not in ("CAN", "WILL", "HOW"):
            continue
        line = PER_CAPABILITY[c.group]
        will = c.group == "WILL"
        out.append(
            Threshold(
                c.id,
                max_drop=None if will else line,
                max_change=line if will else None,
                significance="family",
                patience=PER_CAPABILITY_PATIENCE,
            )
        )
    out += [
        Threshold(c.id, max_kl=CALIBRATED["D"], significance=False)
        for c in suite.capabilities
        if c.metric == "kl"
    ]
    return tuple(out)

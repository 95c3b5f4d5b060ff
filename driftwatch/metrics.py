"""The metric registry: every per-item metric a probe kind can produce, and how its drift reads.

A leaf module (it imports nothing from driftwatch), so the suite loader, the runner, the drift
arithmetic and the policy can all name metrics without importing each other. A probe kind
lists the metrics it produces (:attr:`driftwatch.probes.base.ProbeKind.metrics`); a new kind
with a metric of its own adds it here through :func:`driftwatch.probes.registry.register_kind`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSISTENCY", "MEAN", "METRICS", "STATS", "Z_95", "MetricSpec", "item_metrics"]

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class MetricSpec:
    """How one metric's drift is read."""

    higher_is_better: bool
    percent: bool = True  # False: the change is reported in the metric's own unit only (KL)
    per_item: bool = True  # False: derived from other metrics over groups of items


# paraphrase agreement, derived per paraphrase group from the items' ``score``
CONSISTENCY = "consistency"
# the headline of a capability that names its metrics: the unweighted mean of their Δ%
MEAN = "mean"
# how a named metric summarises its items' values: their mean, or their standard deviation
STATS = ("mean", "std")

METRICS: dict[str, MetricSpec] = {
    "score": MetricSpec(True),  # accuracy / greedy match / verifier pass
    "gold_logprob": MetricSpec(True),  # mean per-token log-prob of the gold option
    "logprob": MetricSpec(True),  # mean per-token log-prob of the target
    CONSISTENCY: MetricSpec(True, per_item=False),
    "kl": MetricSpec(False, percent=False),  # KL(base‖now), nats/token
    "top1_agreement": MetricSpec(True),  # argmax equals the base's argmax
    "words": MetricSpec(False),  # reply length in words (verbosity, W3a)
    "formatted": MetricSpec(False),  # reply uses markdown structure (W3b)
}


def item_metrics() -> tuple[str, ...]:
    """The metrics measured per item, in registry order (consistency is derived)."""
    return tuple(name for name, spec in METRICS.items() if spec.per_item)

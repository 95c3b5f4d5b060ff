"""The probe-kind registry: the one table the suite loader and the runner dispatch through.

A built-in kind is one module in ``driftwatch/probes/`` and one entry in :data:`KINDS`; a kind
of your own is registered at run time with :func:`register_kind` (see
:mod:`driftwatch.probes.base` for the interface and an example).
"""

from __future__ import annotations

from driftwatch.errors import ConfigError, did_you_mean
from driftwatch.metrics import CONSISTENCY, METRICS
from driftwatch.probes.base import ProbeKind
from driftwatch.probes.choice import ChoiceKind
from driftwatch.probes.distribution import DistributionKind
from driftwatch.probes.generate import GenerateKind
from driftwatch.probes.target import TargetKind

__all__ = ["ITEM_FIELDS", "KINDS", "get_kind", "kinds_producing", "register_kind", "unregister"]

# the item fields a kind may claim (ProbeItem's kind-specific fields)
ITEM_FIELDS = ("prompt", "choices", "answer", "target", "text", "check", "max_new_tokens")

KINDS: dict[str, ProbeKind] = {
    kind.name: kind for kind in (ChoiceKind(), TargetKind(), GenerateKind(), DistributionKind())
}
_BUILTIN = frozenset(KINDS)


def get_kind(name: str) -> ProbeKind:
    """The registered kind called ``name``.

    Raises:
        ConfigError: no such kind ("did you mean …", and the known names).
    """
    kind = KINDS.get(name)
    if kind is None:
        raise ConfigError(
            f"unknown probe kind {name!r}{did_you_mean(name, KINDS)}; known: {sorted(KINDS)}"
        )
    return kind


def kinds_producing(metric: str) -> set[str]:
    """Names of the kinds whose items produce ``metric`` (consistency: those with a score)."""
    wanted = "score" if metric == CONSISTENCY else metric
    return {name for name, kind in KINDS.items() if wanted in kind.metrics}


def register_kind(kind: ProbeKind, *, replace: bool = False) -> ProbeKind:
    """Add ``kind`` to the registry (and its :attr:`~ProbeKind.new_metrics` to the metric
    registry) so suites can use it; returns it.

    Raises:
        ConfigError: the name is taken (pass ``replace=True`` to swap a kind of your own),
            a field is not an item field, or a metric is unknown.
    """
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{type(kind).__name__}: a probe kind needs a non-empty `name`")
    if name in _BUILTIN or (name in KINDS and not replace):
        raise ConfigError(f"probe kind {name!r} is already registered")
    unknown = [f for f in kind.fields if f not in ITEM_FIELDS]
    if unknown:
        raise ConfigError(
            f"probe kind {name!r}: fields {unknown} are not item fields; choose from "
            f"{list(ITEM_FIELDS)}"
        )
    for metric, spec in kind.new_metrics.items():
        if metric in METRICS and METRICS[metric] != spec:
            raise ConfigError(f"probe kind {name!r}: metric {metric!r} is already defined")
    missing = [m for m in kind.metrics if m not in METRICS and m not in kind.new_metrics]
    if missing or kind.default_metric not in kind.metrics:
        raise ConfigError(
            f"probe kind {name!r}: metrics {missing or [kind.default_metric]} are neither "
            "known (driftwatch.metrics.METRICS) nor in its new_metrics / metrics"
        )
    METRICS.update(kind.new_metrics)
    KINDS[name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind registered with :func:`register_kind` (built-in kinds stay)."""
    if name in _BUILTIN:
        raise ConfigError(f"probe kind {name!r} is built in and cannot be removed")
    kind = KINDS.pop(name, None)
    if kind is not None:
        for metric in kind.new_metrics:
            if not kinds_producing(metric):
                METRICS.pop(metric, None)

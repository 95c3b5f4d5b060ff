"""A monitor's whole configuration: the suite, the five settings groups, the log folder.

:class:`MonitorConfig` is what :meth:`DriftMonitor.config` writes and
:meth:`DriftMonitor.from_config` reads (the HF adapter keeps it in a checkpoint's
``trainer_state.json``): JSON, with a format version. Version 2 is grouped like the monitor's
arguments; a configuration without a version (driftwatch 0.1's flat keyword arguments) is
migrated when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftwatch.errors import ConfigError, did_you_mean
from driftwatch.policy import Policy
from driftwatch.settings import Cadence, ProbeBudget, ReferenceSpec, RollbackPlan

__all__ = ["CONFIG_VERSION", "MonitorConfig"]

CONFIG_VERSION = 2


@dataclass(frozen=True)
class MonitorConfig:
    """Everything a :class:`~driftwatch.monitor.DriftMonitor` was configured with (its extra
    sinks excepted: they are objects, not data)."""

    suite: str | dict[str, Any]  # ProbeSuite.spec(): a built-in name, a manifest path, inline
    policy: Policy
    cadence: Cadence
    budget: ProbeBudget
    reference: ReferenceSpec
    rollback: RollbackPlan
    logdir: str | None = None
    strict: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (version 2)."""
        return {
            "version": CONFIG_VERSION,
            "suite": self.suite,
            "logdir": self.logdir,
            "strict": self.strict,
            "policy": self.policy.to_dict(),
            "cadence": self.cadence.to_dict(),
            "budget": self.budget.to_dict(),
            "reference": self.reference.to_dict(),
            "rollback": self.rollback.to_dict(),
        }

    def arguments(self) -> dict[str, Any]:
        """The :class:`~driftwatch.monitor.DriftMonitor` keyword arguments it stands for."""
        return {
            "policy": self.policy,
            "cadence": self.cadence,
            "budget": self.budget,
            "reference": self.reference,
            "rollback": self.rollback,
            "logdir": self.logdir,
            "strict": self.strict,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorConfig:
        """Read :meth:`to_dict` data, or driftwatch 0.1's flat form (migrated).

        Raises:
            ConfigError: an unknown version or setting, or a bad value.
        """
        grouped = _migrate(data)
        return cls(
            suite=grouped["suite"],
            policy=Policy.from_dict(grouped["policy"]),
            cadence=Cadence.from_dict(grouped["cadence"]),
            budget=ProbeBudget.from_dict(grouped["budget"]),
            reference=ReferenceSpec.from_dict(grouped["reference"]),
            rollback=RollbackPlan.from_dict(grouped["rollback"]),
            logdir=grouped.get("logdir"),
            strict=bool(grouped.get("strict", False)),
        )


# driftwatch 0.1's flat DriftMonitor keyword arguments -> (group, field) of the grouped form
_FLAT = {
    "every_n_steps": ("cadence", "every_n_steps"),
    "max_overhead_pct": ("cadence", "max_overhead_pct"),
    "adapt_cadence": ("cadence", "adapt"),
    "thresholds": ("policy", "thresholds"),
    "action": ("policy", "action"),
    "patience": ("policy", "patience"),
    "warmup_steps": ("policy", "warmup_steps"),
    "significance": ("policy", "significance"),
    "nonfinite": ("policy", "nonfinite"),
    "floor": ("policy", "floor"),
    "token_budget": ("budget", "token_budget"),
    "memory_share": ("budget", "memory_share"),
    "min_token_budget": ("budget", "min_token_budget"),
    "reference": ("reference", "path"),
    "cache_dir": ("reference", "cache_dir"),
    "topk": ("reference", "topk"),
    "reference_from": ("reference", "build_from"),
    "after_rollback": ("rollback", "after"),
    "lr_scale": ("rollback", "lr_scale"),
    "max_rollbacks": ("rollback", "max_rollbacks"),
    "snapshot": ("rollback", "snapshot"),
    "snapshot_dir": ("rollback", "snapshot_dir"),
}
_GROUPS = ("policy", "cadence", "budget", "reference", "rollback")


def _migrate(config: dict[str, Any]) -> dict[str, Any]:
    """A monitor configuration in the current (grouped, version 2) form.

    Version 2 passes through; a configuration without a version (driftwatch 0.1's flat
    keyword arguments, as saved in older checkpoints) is regrouped.

    Raises:
        ConfigError: an unknown version, or a flat key driftwatch 0.1 did not have.
    """
    version = config.get("version")
    if version == CONFIG_VERSION:
        return {**{group: {} for group in _GROUPS}, **config}
    if version is not None:
        raise ConfigError(f"monitor config: expected version {CONFIG_VERSION}, found {version!r}")
    out: dict[str, Any] = {group: {} for group in _GROUPS}
    out["version"] = CONFIG_VERSION
    for key, value in config.items():
        if key in ("suite", "logdir", "strict"):
            out[key] = value
        elif key in _FLAT:
            group, name = _FLAT[key]
            out[group][name] = value
        else:
            known = [*_FLAT, "suite", "logdir", "strict"]
            raise ConfigError(f"monitor config: unknown setting {key!r}{did_you_mean(key, known)}")
    return out

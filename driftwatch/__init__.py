"""driftwatch: watch a language model for forgetting while it is fine-tuned.

Every N steps a small batched suite of capability probes runs against the model; the results
are compared with a cached reference of the base model, drift is reported per capability (after
CapTrack's CAN / WILL / HOW taxonomy) and a policy warns or stops the run when a threshold is
crossed. See docs/architecture.md for how the parts fit together.

The names below are imported on first use (PEP 562), so ``import driftwatch`` and the
command's ``--help``, ``validate`` and ``suites`` start without loading torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift, aggregate, compare
    from driftwatch.errors import (
        ConfigError,
        DriftwatchError,
        Problem,
        ReferenceMismatchError,
        SuiteError,
    )
    from driftwatch.monitor import DriftMonitor
    from driftwatch.policy import Breach, Decision, Policy, Threshold, default_thresholds
    from driftwatch.probes.base import ProbeKind
    from driftwatch.probes.registry import register_kind
    from driftwatch.reference import Reference
    from driftwatch.runner import CompiledSuite, ProbeResult, compile_suite, run_probes
    from driftwatch.session import ProbeSession
    from driftwatch.settings import Cadence, ProbeBudget, ReferenceSpec, RollbackPlan
    from driftwatch.suite import Capability, ProbeItem, ProbeSuite, builtin_suites

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(
        ["CapabilityDrift", "DriftReport", "MetricDrift", "aggregate", "compare"], "drift"
    ),
    **dict.fromkeys(
        ["ConfigError", "DriftwatchError", "Problem", "ReferenceMismatchError", "SuiteError"],
        "errors",
    ),
    "DriftMonitor": "monitor",
    **dict.fromkeys(["Breach", "Decision", "Policy", "Threshold", "default_thresholds"], "policy"),
    "ProbeKind": "probes.base",
    "register_kind": "probes.registry",
    "Reference": "reference",
    **dict.fromkeys(["CompiledSuite", "ProbeResult", "compile_suite", "run_probes"], "runner"),
    "ProbeSession": "session",
    **dict.fromkeys(["Cadence", "ProbeBudget", "ReferenceSpec", "RollbackPlan"], "settings"),
    **dict.fromkeys(["Capability", "ProbeItem", "ProbeSuite", "builtin_suites"], "suite"),
}

__all__ = [
    "Breach",
    "Cadence",
    "Capability",
    "CapabilityDrift",
    "CompiledSuite",
    "ConfigError",
    "Decision",
    "DriftMonitor",
    "DriftReport",
    "DriftwatchError",
    "MetricDrift",
    "Policy",
    "ProbeBudget",
    "ProbeItem",
    "ProbeKind",
    "ProbeResult",
    "ProbeSession",
    "ProbeSuite",
    "Problem",
    "Reference",
    "ReferenceMismatchError",
    "ReferenceSpec",
    "RollbackPlan",
    "SuiteError",
    "Threshold",
    "__version__",
    "aggregate",
    "builtin_suites",
    "compare",
    "compile_suite",
    "default_thresholds",
    "register_kind",
    "run_probes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'driftwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"driftwatch.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

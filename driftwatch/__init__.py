"""driftwatch: watch a language model for forgetting while it is fine-tuned.

Every N steps a small batched suite of capability probes runs against the model; the results
are compared with a cached reference of the base model, drift is reported per capability (after
CapTrack's CAN / WILL / HOW taxonomy) and a policy warns or stops the run when a threshold is
crossed. See docs/architecture.md for how the parts fit together.
"""

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

"""driftwatch: watch a language model for forgetting while it is fine-tuned.

Every N steps a small batched suite of capability probes runs against the model; the results
are compared with a cached reference of the base model, drift is reported per capability (after
CapTrack's CAN / WILL / HOW taxonomy) and a policy warns or stops the run when a threshold is
crossed. See DESIGN.md for the architecture.
"""

from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift, aggregate, compare
from driftwatch.errors import DriftwatchError, Problem, ReferenceMismatchError, SuiteError
from driftwatch.monitor import DriftMonitor
from driftwatch.policy import Breach, Decision, Policy, Threshold, default_thresholds
from driftwatch.reference import Reference
from driftwatch.runner import CompiledSuite, ProbeResult, compile_suite, run_probes
from driftwatch.suite import Capability, ProbeItem, ProbeSuite, builtin_suites

__version__ = "0.1.0"

__all__ = [
    "Breach",
    "Capability",
    "CapabilityDrift",
    "CompiledSuite",
    "Decision",
    "DriftMonitor",
    "DriftReport",
    "DriftwatchError",
    "MetricDrift",
    "Policy",
    "ProbeItem",
    "ProbeResult",
    "ProbeSuite",
    "Problem",
    "Reference",
    "ReferenceMismatchError",
    "SuiteError",
    "Threshold",
    "__version__",
    "aggregate",
    "builtin_suites",
    "compare",
    "compile_suite",
    "default_thresholds",
    "run_probes",
]

"""The probe runner: the only code that touches the model while probing (docs/architecture.md).

One module per job, the data flowing one way:

=================  ==========================================================================
``encoding``       an item's texts as token ids (chat template, history, moved whitespace)
``compiler``       every item's request, checked against the context, laid out in batches
``checks``         the layout check: the fastest layout that reproduces plain forwards
``layout``         how requests become batches: packed / cached / concatenated rows, the
                   queries of each pass, generation batches; all within a budget
``kernels``        one batch through the model: log-probabilities at the scored positions
``decoding``       greedy replies with ``model.generate``
``drafts``         greedy replies verified against the base's recorded replies in one pass
``isolation``      what a round must put back: module modes, caches, checkpointing, RNGs
``precision``      the precision a round's forwards compute in: the weights' dtype or autocast
``rounds``         one round: run the batches, cut the outputs per item, let kinds score them
=================  ==========================================================================

Sharing work across ranks is :mod:`driftwatch.distributed`; what a kind asks for and how its
outputs are scored is :mod:`driftwatch.probes`.
"""

from driftwatch.runner.compiler import CompiledSuite, compile_suite
from driftwatch.runner.drafts import DraftPlan, plan_drafts
from driftwatch.runner.isolation import preserved_state
from driftwatch.runner.precision import Compute, detect_compute
from driftwatch.runner.rounds import ProbeResult, generate_continuations, run_probes

__all__ = [
    "CompiledSuite",
    "Compute",
    "DraftPlan",
    "ProbeResult",
    "compile_suite",
    "detect_compute",
    "generate_continuations",
    "plan_drafts",
    "preserved_state",
    "run_probes",
]

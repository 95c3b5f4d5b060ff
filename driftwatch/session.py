"""A probe session: a suite compiled for one model, with the base reference it is measured against.

Every path that probes a model — the monitor, ``driftwatch probe``, ``reference`` and
``scan``, the benchmarks — opens one :class:`ProbeSession`: it compiles the suite, loads or
builds the reference, and attaches the reference's recorded base replies to the compiled
suite, so nothing is left for a caller to forget. Then :meth:`ProbeSession.measure` runs a
round and compares it with the reference.

Example::

    session = ProbeSession.open(model, tokenizer, ProbeSuite.load("quick"))
    report, result = session.measure(model, step=0)
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from driftwatch.distributed import agree_min, rank
from driftwatch.drift import DEFAULT_FLOOR, DriftReport, compare
from driftwatch.errors import DriftwatchError
from driftwatch.memory import share_bytes
from driftwatch.metrics import CONSISTENCY
from driftwatch.reference import (
    CHECKED_ON_REUSE,
    Reference,
    cache_path,
    fingerprint,
)
from driftwatch.runner import (
    CompiledSuite,
    Compute,
    DraftPlan,
    ProbeResult,
    compile_suite,
    generate_continuations,
    plan_drafts,
    run_probes,
)
from driftwatch.settings import Decode, ReferenceSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from driftwatch.runner.layout import Layout
    from driftwatch.suite import ProbeSuite

__all__ = ["OutOfMemoryAtFloor", "ProbeSession", "load_or_build"]

logger = logging.getLogger(__name__)


class OutOfMemoryAtFloor(RuntimeError):
    """Out of memory even at the smallest token budget: the round cannot run."""


@dataclass
class ProbeSession:
    """A compiled suite, its tokenizer and the reference it is compared with."""

    compiled: CompiledSuite
    tokenizer: PreTrainedTokenizerBase
    reference: Reference
    reused: bool = False  # the reference was an existing file (given, or in the cache)
    memory_share: float | None = None  # the share the compiled suite's byte budget came from
    drafts: DraftPlan | None = None  # decode="draft": the base replies each round verifies

    @classmethod
    def open(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        suite: ProbeSuite,
        *,
        reference: ReferenceSpec | None = None,
        token_budget: int = 4096,
        memory_share: float | None = None,
        layout: Layout | Literal["auto"] = "auto",
        decode: Decode = "draft",
        compute: Compute | None = None,
    ) -> ProbeSession:
        """Compile ``suite`` for ``model`` and load (or build from the model as it is now) the
        reference ``reference`` describes (default: the cache entry of this model and suite).

        Args:
            memory_share: cap each pass at this share of the weights' bytes (the smallest of
                any rank in a process group); ``None``: by ``token_budget`` alone.
            decode: ``"draft"`` verifies the generate items against the reference's base
                replies and decodes only past a divergence (:mod:`driftwatch.runner.drafts`);
                ``"plain"`` decodes every reply from its prompt. The replies are the same.
            compute: the precision every forward of the session runs in, the reference's
                included (default: :func:`~driftwatch.runner.precision.detect_compute` of
                the model now: an active autocast, an autocast-wrapped forward, or the
                weights' dtype).
        """
        spec = reference or ReferenceSpec()
        compiled = compile_suite(
            suite,
            tokenizer,
            model,
            token_budget=token_budget,
            memory_budget=_memory_budget(model, memory_share),
            layout=layout,
            compute=compute,
        )
        ref, reused = load_or_build(
            model,
            tokenizer,
            compiled,
            settings=spec.settings,
            path=spec.path,
            cache_dir=spec.cache_dir,
            cross_precision=spec.cross_precision,
        )
        ready = compiled.with_continuations(ref.continuations)
        drafts = _drafts(ready, ref) if decode == "draft" else None
        return cls(ready, tokenizer, ref, reused, memory_share, drafts)

    @property
    def suite(self) -> ProbeSuite:
        return self.compiled.suite

    @property
    def token_budget(self) -> int:
        return self.compiled.token_budget

    def run(self, model: PreTrainedModel) -> ProbeResult:
        """One probe round's per-item results (nothing compared yet)."""
        return run_probes(
            model,
            self.compiled,
            self.tokenizer,
            base_topk=self.reference.topk,
            drafts=self.drafts,
        )

    def compare(
        self, result: ProbeResult, *, step: int, floor: float = DEFAULT_FLOOR
    ) -> DriftReport:
        """The drift of a round's results against the reference (with the round's decode
        record in its ``extra``)."""
        report = compare(
            result.values,
            self.reference.values,
            self.suite,
            step=step,
            floor=floor,
            seconds=result.seconds,
            nonfinite=result.nonfinite,
        )
        return replace(report, extra={**report.extra, **result.decode})

    def measure(
        self,
        model: PreTrainedModel,
        *,
        step: int,
        floor: float = DEFAULT_FLOOR,
        min_token_budget: int | None = None,
    ) -> tuple[DriftReport, ProbeResult]:
        """One round compared with the reference.

        With ``min_token_budget``, out of memory halves the token budget and the memory share
        and retries, down to that floor (later rounds of this session keep the smaller
        budget); below it :class:`OutOfMemoryAtFloor` is raised. Without it, out of memory
        propagates.
        """
        while True:
            try:
                result = self.run(model)
                break
            except torch.OutOfMemoryError:
                if min_token_budget is None:
                    raise
            # retried out of the except block, once the exception (and its tensors) is gone
            budget = self.token_budget
            _release_cached_memory(self.compiled.device)
            if budget // 2 < min_token_budget:
                raise OutOfMemoryAtFloor(f"out of memory even with a token budget of {budget}")
            logger.warning(
                "driftwatch: out of memory in the probe round at step %d with a token budget "
                "of %d; retrying with %d (later rounds keep it)",
                step,
                budget,
                budget // 2,
            )
            self.relayout(model, budget // 2)
        return self.compare(result, step=step, floor=floor), result

    def relayout(self, model: PreTrainedModel, token_budget: int) -> None:
        """Lay the suite out again for a smaller token budget, with the memory share scaled
        alike (same layout, same items, same reference)."""
        share = None
        if self.memory_share is not None:
            share = self.memory_share * token_budget / self.token_budget
        compiled = compile_suite(
            self.suite,
            self.tokenizer,
            model,
            token_budget=token_budget,
            memory_budget=_memory_budget(model, share),
            layout=self.compiled.layout,
            compute=self.compiled.compute,
        )
        self.compiled = compiled.with_continuations(self.reference.continuations)
        if self.drafts is not None:
            self.drafts = _drafts(self.compiled, self.reference)
        self.memory_share = share


def _drafts(compiled: CompiledSuite, reference: Reference) -> DraftPlan:
    return plan_drafts(compiled, reference.generated, compiled.compute.dtype)


def _memory_budget(model: PreTrainedModel, share: float | None) -> int | None:
    """``share`` of the weights in bytes; the smallest of any rank in a process group, so every
    rank lays the suite out in the same batches (sharded weights differ from rank to rank)."""
    budget = share_bytes(model, share)
    if budget is None:
        return None
    return agree_min(budget, next(model.parameters()).device)


def _release_cached_memory(device: torch.device) -> None:
    """Free the failed attempt's tensors (held in the exception's reference cycles) and give
    the allocator's cached blocks back, before retrying with a smaller budget."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def adapters_disabled(model: Any, disable: bool) -> Iterator[None]:
    """Run the body with a PEFT model's adapters switched off (no-op when ``disable`` is False)."""
    if not disable:
        yield
        return
    switch = getattr(model, "disable_adapter", None)
    if switch is None:
        raise DriftwatchError(
            "build_from='base' needs a PEFT model (with disable_adapter()); this is a "
            f"{type(model).__name__}. Use ReferenceSpec(build_from='model')."
        )
    with switch():
        yield


def load_or_build(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    compiled: CompiledSuite,
    *,
    settings: Mapping[str, Any],
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    cross_precision: str | None = None,
) -> tuple[Reference, bool]:
    """The reference for ``model`` as it is now, and whether an existing file was reused.

    With ``path``, that file is loaded and checked (weights excepted, see
    :data:`~driftwatch.reference.CHECKED_ON_REUSE`). Otherwise the cache entry for the full
    fingerprint is reused if present, or built by one recorded probe round and saved there
    (from a PEFT model's base weights, adapters disabled, when ``settings`` say
    ``reference_from="base"``). The reference's compute precision is the compiled suite's;
    a given file of another is refused unless it is ``cross_precision``, named on purpose.
    Prompt-based distribution items first get the model's greedy
    continuation, which the reference keeps (:meth:`ProbeSession.open` attaches them to the
    compiled suite).
    """
    suite = compiled.suite
    fp = fingerprint(suite, tokenizer, model, settings, compiled.compute.name)
    if path is not None:
        reference = Reference.load(path)
        found = reference.metadata.get("compute")
        if cross_precision is not None and found != fp["compute"]:
            if found != cross_precision:
                raise DriftwatchError(
                    f"{path}: cross_precision={cross_precision!r} names a compute precision "
                    f"this reference was not built in (it was built in {found!r})"
                )
            logger.warning(
                "driftwatch: comparing a %s reference with rounds in %s, as asked "
                "(cross_precision): the drift includes the change of precision",
                found,
                fp["compute"],
            )
            fp = {**fp, "compute": cross_precision}
        reference.check(fp, CHECKED_ON_REUSE)
        if reference.metadata.get("parameters") != fp["parameters"]:
            logger.info(
                "the model's weights differ from the reference's base weights "
                "(expected when resuming or probing a fine-tuned model)"
            )
        reused = True
    else:
        target = cache_path(fp, suite.name, cache_dir)
        if target.is_file():
            reference = Reference.load(target)
            reference.check(fp)
            logger.info("reusing cached reference %s", target)
            reused = True
        else:
            with adapters_disabled(model, settings.get("reference_from") == "base"):
                reference = _build(model, tokenizer, compiled, fp, int(settings.get("topk", 32)))
            if rank() == 0:  # every rank built the same reference; one writes it
                reference.save(target)
            else:
                reference.path = target
            logger.info("built reference %s", target)
            reused = False
    _check_covers(reference, compiled)
    return reference, reused


def _build(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    compiled: CompiledSuite,
    fp: Mapping[str, str],
    topk: int,
) -> Reference:
    """One recorded probe round of the model as it is now, along its own replies."""
    continuations = generate_continuations(model, compiled)
    ready = compiled.with_continuations(continuations)
    result = run_probes(model, ready, tokenizer, record_topk=topk)
    reference = Reference.from_result(result, fp, compiled.suite.name)
    reference.continuations = continuations
    logger.info("recorded the reference round in %.1fs", result.seconds)
    return reference


def _check_covers(reference: Reference, compiled: CompiledSuite) -> None:
    """Refuse a reference whose tensors do not cover the suite's items and headlines."""
    suite = compiled.suite
    n = len(suite)
    bad = [f"values/{k}" for k, v in reference.values.items() if v.shape != (n,)]
    if len(reference.continuations) != len(compiled.pending_items):
        bad.append("distribution/continuation")
    headlines = {
        "score" if c.metric == CONSISTENCY else c.metric
        for c in suite.capabilities
        if not c.metrics
    } | {d.metric for c in suite.capabilities for d in c.metrics}
    bad += [f"values/{m} missing" for m in sorted(headlines) if m not in reference.values]
    if bad:
        raise DriftwatchError(
            f"{reference.path}: reference values do not cover the suite's {n} items (tensors {bad})"
        )

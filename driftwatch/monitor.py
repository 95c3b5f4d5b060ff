"""DriftMonitor: the framework-free orchestrator (DESIGN.md §1).

Plain PyTorch loop::

    monitor = DriftMonitor(suite="smoke", every_n_steps=50, logdir="runs/exp",
                           thresholds=[Threshold("C1", max_drop=5.0)], action="stop")
    monitor.start(model, tokenizer)          # builds or loads the base reference
    for step, batch in enumerate(loader, start=1):
        ...                                   # forward, backward, optimizer step
        if monitor.step(model, step).stop:
            break
    monitor.close()

The monitor holds no reference to the model between calls: ``start`` and ``step`` take it as an
argument, and the base model is never kept in memory (the reference is tensors on disk).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from driftwatch.batching import attach_continuations
from driftwatch.drift import DEFAULT_FLOOR, DriftReport, compare
from driftwatch.errors import DriftwatchError
from driftwatch.memory import share_bytes
from driftwatch.policy import Action, Decision, Policy, Threshold, default_thresholds
from driftwatch.reference import Reference, load_or_build, probe_settings
from driftwatch.rollback import SnapshotStore
from driftwatch.runner import CompiledSuite, ProbeResult, compile_suite, process_group, run_probes
from driftwatch.sinks import JsonlSink, LogSink, Sink, TensorBoardSink
from driftwatch.suite import Capability, ProbeItem, ProbeSuite, builtin_suites

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DriftMonitor"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def _suite_spec(suite: ProbeSuite) -> str | dict[str, Any]:
    from driftwatch.suite import _BUILTIN_ROOT

    if suite.path == "<memory>":
        return {
            "name": suite.name,
            "capabilities": [asdict(c) for c in suite.capabilities],
            "items": [i.content() for i in suite.items],
        }
    manifest = Path(suite.path)
    if manifest.parent.parent == _BUILTIN_ROOT and suite.name in builtin_suites():
        return suite.name
    return str(manifest)


def _suite_from_spec(spec: str | dict[str, Any]) -> ProbeSuite:
    if isinstance(spec, str):
        return ProbeSuite.load(spec)
    items = []
    for data in spec["items"]:
        fields = dict(data)
        if "choices" in fields:
            fields["choices"] = tuple(fields["choices"])
        items.append(ProbeItem(**fields))
    return ProbeSuite.from_items(
        items, [Capability(**c) for c in spec["capabilities"]], name=spec["name"]
    )


@contextlib.contextmanager
def _adapters_disabled(model: Any, disable: bool) -> Iterator[None]:
    """Run the body with a PEFT model's adapters switched off (no-op when ``disable`` is False)."""
    if not disable:
        yield
        return
    switch = getattr(model, "disable_adapter", None)
    if switch is None:
        raise DriftwatchError(
            "reference_from='base' needs a PEFT model (with disable_adapter()); this is a "
            f"{type(model).__name__}. Use reference_from='model'."
        )
    with switch():
        yield


def _scale_lr(
    optimizer: torch.optim.Optimizer | None, scheduler: Any, lrs: list[float], scale: float
) -> None:
    """Set every parameter group's rate to ``scale`` × its rate before the rollback (so
    repeated rollbacks compound), and scale a scheduler's base rates the same way."""
    if optimizer is None:
        logger.warning("rolled back without an optimizer: the learning rate is unchanged")
        return
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr * scale
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * scale for lr in scheduler.base_lrs]


class _OutOfMemory(RuntimeError):
    """Out of memory at the smallest token budget: the round is skipped."""


def _release_cached_memory(device: torch.device) -> None:
    """Free the failed attempt's tensors (held in the exception's reference cycles) and give
    the allocator's cached blocks back, before retrying with a smaller budget."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _rank() -> int:
    """This process's rank in a torch.distributed group (0 when there is no group)."""
    return process_group()[0]


class DriftMonitor:
    """Probe a model every ``every_n_steps`` steps and decide whether training may go on.

    Args:
        suite: a built-in suite name, a suite folder / manifest path, or a ProbeSuite.
        every_n_steps: probe cadence in optimizer steps.
        thresholds: lines not to cross; ``None`` uses :func:`default_thresholds`.
        action: what ``patience`` consecutive breaches do: ``"warn"``, ``"stop"``, or
            ``"rollback"`` (restore the last healthy snapshot, then ``after_rollback``).
        patience: consecutive breaching rounds before the action (fewer → warn).
        warmup_steps: rounds before this step never breach.
        significance: a breach needs its whole 95% interval past the line.
        floor: smallest denominator of Δ% (see drift.py).
        logdir: TensorBoard events and ``driftwatch_history.jsonl`` go here (None: log only);
            in a torch.distributed group only rank 0 writes them.
        reference: a reference file to use instead of the cache.
        cache_dir: reference cache folder (default ``~/.cache/driftwatch/references``).
        token_budget: most tokens in one probe forward pass.
        memory_share: most memory one probe pass may allocate beyond the weights, as a share
            of the weights' bytes (``0.1``: a tenth), by the estimate of
            :mod:`driftwatch.memory` from the model's config; batches are made smaller to fit
            it. ``None`` sizes them by ``token_budget`` alone. A larger share can make rounds
            faster where memory is plentiful (fewer generate calls, docs/benchmarks.md §4).
        topk: base log-probs kept per distribution position.
        after_rollback: ``"stop"``, or ``"continue"`` with the learning rate times
            ``lr_scale``; after ``max_rollbacks`` continues the next rollback stops.
        snapshot: keep the last healthy snapshot in CPU ``"memory"`` or on ``"disk"``
            (``snapshot_dir``, a safetensors file). Only trainable parameters are kept — for a
            PEFT model, the adapter weights.
        reference_from: ``"model"`` builds the reference from the weights the run starts
            with; ``"base"`` builds it from a PEFT model with its adapters disabled (the
            underlying base model), e.g. when training resumes from existing adapters.
        sinks: extra receivers of every round's report and decision (objects with
            ``write(report, decision)`` and ``close()``, see :mod:`driftwatch.sinks`), called
            on rank 0 after the built-in ones. Not part of :meth:`config`.
        strict: re-raise an exception from a probe round. By default the round is skipped:
            the error is logged with its traceback, :attr:`failures` counts it, the model is
            left exactly as it was (modes, caches, RNG states) and training goes on — a
            monitor must not kill the run it watches.
        nonfinite: ``"breach"`` (default) treats items whose log-probabilities come out NaN
            or inf as a breach that triggers the action at once; ``"ignore"`` leaves them out.
        min_token_budget: out of memory in a round halves the token budget and retries,
            down to this (default: 256, or ``token_budget`` when smaller); below it the
            round is skipped with a warning (even when ``strict``), and later rounds keep
            the smaller budget.
        max_overhead_pct: a round whose time exceeds this share of the training time since
            the previous round is reported (a warning, ``overhead_over_budget`` in the report).
        adapt_cadence: with ``max_overhead_pct``, stretch ``every_n_steps`` (never shrink it)
            so the next interval brings the share back under the budget. In a process group
            every rank uses the largest share measured on any rank, so the cadence stays the
            same everywhere.
    """

    def __init__(
        self,
        suite: str | os.PathLike[str] | ProbeSuite = "smoke",
        *,
        every_n_steps: int = 100,
        thresholds: Sequence[Threshold] | None = None,
        action: Action = "warn",
        patience: int = 1,
        warmup_steps: int = 0,
        significance: bool = True,
        floor: float = DEFAULT_FLOOR,
        logdir: str | os.PathLike[str] | None = None,
        reference: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token_budget: int = 4096,
        memory_share: float | None = 0.1,
        topk: int = 32,
        after_rollback: Literal["stop", "continue"] = "stop",
        lr_scale: float = 0.5,
        max_rollbacks: int = 3,
        snapshot: Literal["memory", "disk"] = "memory",
        snapshot_dir: str | os.PathLike[str] | None = None,
        reference_from: Literal["model", "base"] = "model",
        sinks: Sequence[Sink] = (),
        strict: bool = False,
        nonfinite: Literal["breach", "ignore"] = "breach",
        min_token_budget: int | None = None,
        max_overhead_pct: float | None = None,
        adapt_cadence: bool = False,
    ) -> None:
        if (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise DriftwatchError(
                f"every_n_steps: expected an integer >= 1, found {every_n_steps!r}"
            )
        if min_token_budget is None:
            min_token_budget = min(256, token_budget)
        if isinstance(min_token_budget, bool) or not 1 <= min_token_budget <= token_budget:
            raise DriftwatchError(
                f"min_token_budget: expected 1..token_budget ({token_budget}), "
                f"found {min_token_budget!r}"
            )
        if memory_share is not None and (
            isinstance(memory_share, bool)
            or not isinstance(memory_share, (int, float))
            or not 0 < memory_share < math.inf
        ):
            raise DriftwatchError(
                f"memory_share: expected a positive share of the weights (0.1 is a tenth) or "
                f"None, found {memory_share!r}"
            )
        if max_overhead_pct is not None and not max_overhead_pct > 0:
            raise DriftwatchError(
                f"max_overhead_pct: expected a positive percentage, found {max_overhead_pct!r}"
            )
        if adapt_cadence and max_overhead_pct is None:
            raise DriftwatchError("adapt_cadence needs max_overhead_pct (the budget to keep to)")
        if not 1 <= topk <= 1024:
            raise DriftwatchError(f"topk: expected 1..1024, found {topk!r}")
        if floor <= 0:
            raise DriftwatchError(f"floor: expected a positive number, found {floor!r}")
        if after_rollback not in ("stop", "continue"):
            raise DriftwatchError(
                f"after_rollback: expected 'stop' or 'continue', found {after_rollback!r}"
            )
        if reference_from not in ("model", "base"):
            raise DriftwatchError(
                f"reference_from: expected 'model' or 'base', found {reference_from!r}"
            )
        if not 0 < lr_scale <= 1:
            raise DriftwatchError(f"lr_scale: expected 0 < lr_scale <= 1, found {lr_scale!r}")
        if (
            isinstance(max_rollbacks, bool)
            or not isinstance(max_rollbacks, int)
            or max_rollbacks < 0
        ):
            raise DriftwatchError(
                f"max_rollbacks: expected an integer >= 0, found {max_rollbacks!r}"
            )
        self.suite = suite if isinstance(suite, ProbeSuite) else ProbeSuite.load(suite)
        chosen = tuple(thresholds) if thresholds is not None else default_thresholds(self.suite)
        self.policy = Policy(
            chosen,
            action=action,
            patience=patience,
            warmup_steps=warmup_steps,
            significance=significance,
            nonfinite=nonfinite,
        )
        self.policy.check_suite(self.suite)
        self.every_n_steps = every_n_steps
        self.floor = floor
        self.logdir = Path(logdir) if logdir is not None else None
        self.reference_path = Path(reference) if reference is not None else None
        self.cache_dir = cache_dir
        self.token_budget = token_budget
        self.memory_share = None if memory_share is None else float(memory_share)
        self.min_token_budget = min_token_budget
        self.max_overhead_pct = max_overhead_pct
        self.adapt_cadence = adapt_cadence
        self.topk = topk
        self.reference_from = reference_from
        self.after_rollback = after_rollback
        self.lr_scale = lr_scale
        self.max_rollbacks = max_rollbacks
        self.snapshots = SnapshotStore(snapshot, directory=snapshot_dir)
        self.rollbacks = 0  # rollbacks done so far
        self._since = 0  # the policy sees the history from here (reset by a rollback)
        self.history: list[DriftReport] = []
        self.reference: Reference | None = None
        self._compiled: CompiledSuite | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self.sinks = tuple(sinks)  # extra sinks (rank 0), after the built-in ones
        self.strict = strict
        self.failures = 0  # probe rounds that raised and were skipped (strict=False)
        self._sinks: list[Sink] = []
        self.clock = time.perf_counter  # wall clock for the overhead share (replaceable)
        self._since_mark: float | None = None  # when the last round (or start) ended

    @property
    def settings(self) -> dict[str, Any]:
        """Probe settings that change what a reference holds (part of its fingerprint)."""
        return probe_settings(topk=self.topk, reference_from=self.reference_from)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
    ) -> Reference:
        """Compile the suite and build (or load) the reference from the model as it is now.

        Call it before the first update: the reference is the base model's behaviour. With
        ``action="rollback"`` the starting weights are also the first healthy snapshot.
        """
        self._tokenizer = tokenizer
        self._compiled = compile_suite(
            self.suite,
            tokenizer,
            model,
            token_budget=self.token_budget,
            memory_budget=self._memory_budget(model),
        )
        with _adapters_disabled(model, self.reference_from == "base"):
            reference, _ = load_or_build(
                model,
                tokenizer,
                self._compiled,
                settings=self.settings,
                path=self.reference_path,
                cache_dir=self.cache_dir,
            )
        self.reference = reference
        self._compiled = attach_continuations(self._compiled, reference.continuations)
        if self.policy.action == "rollback" and self.snapshots.last is None:
            self.snapshots.take(model, self.last_step or 0, optimizer=optimizer)
        if self.logdir is not None and not self._sinks and _rank() == 0:
            groups: dict[str, list[str]] = {}
            for cap in self.suite.capabilities:
                groups.setdefault(cap.group, []).append(cap.id)
            self._sinks = [
                TensorBoardSink(self.logdir, groups=groups),
                JsonlSink(self.logdir / "driftwatch_history.jsonl"),
                LogSink(),
            ]
        elif not self._sinks:
            self._sinks = [LogSink()]
        if _rank() == 0:
            self._sinks += [sink for sink in self.sinks if sink not in self._sinks]
        self._since_mark = self.clock()
        return reference

    @property
    def last_step(self) -> int | None:
        """The step of the latest probe round (None before the first)."""
        return self.history[-1].step if self.history else None

    def due(self, step: int) -> bool:
        """Whether ``step`` is a probe round (and has not been probed yet)."""
        return step > 0 and step % self.every_n_steps == 0 and step != self.last_step

    def step(
        self,
        model: PreTrainedModel,
        step: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
    ) -> Decision:
        """Probe when ``step`` is due; otherwise return a ``continue`` decision at once.

        Pass the optimizer (and scheduler) with ``action="rollback"``: a rollback restores
        the optimizer's state with the weights and, with ``after_rollback="continue"``,
        scales the learning rate (the scheduler's base rates too).
        """
        if not self.due(step):
            return Decision("continue", step, probed=False)
        return self.probe(model, step, optimizer=optimizer, scheduler=scheduler)

    def probe(
        self,
        model: PreTrainedModel,
        step: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
    ) -> Decision:
        """Run a probe round now, record it, decide, and carry out a rollback.

        A round that raises is skipped with the error logged (``continue``, not probed)
        unless the monitor is ``strict``.
        """
        if self._compiled is None:  # a usage error, not a failed round: always raised
            raise DriftwatchError("call start(model, tokenizer) before probing")
        began = self.clock()
        try:
            report, _ = self.measure(model, step)
        except _OutOfMemory as err:  # resources, not a bug: skipped even when strict
            self.failures += 1
            logger.warning(
                "driftwatch: %s; the probe round at step %d is skipped and training continues",
                err,
                step,
            )
            self._since_mark = self.clock()
            return Decision("continue", step, probed=False)
        except Exception:  # documented contract: log it, count it, let training go on
            if self.strict:
                raise
            self.failures += 1
            logger.exception(
                "driftwatch: the probe round at step %d failed and was skipped (%d so far); "
                "training continues. Pass strict=True to stop on such errors.",
                step,
                self.failures,
            )
            report = None
        if report is None:
            # out of the except block the exception is gone, but reference cycles through its
            # traceback's frames may still hold the round's tensors: free them (and their
            # device memory) now rather than at some later collection
            gc.collect()
            self._since_mark = self.clock()
            return Decision("continue", step, probed=False)
        report = self._account_time(report, began, self.clock())
        self.history.append(report)
        decision = self.policy.decide(self.history[self._since :])
        if self.policy.action == "rollback":
            if decision.action == "rollback":
                decision = self._roll_back(decision, model, optimizer, scheduler)
            elif decision.action == "continue":
                self.snapshots.take(model, step, optimizer=optimizer)
        for sink in self._sinks:
            sink.write(report, decision)
        self._since_mark = self.clock()
        return decision

    def _roll_back(
        self,
        decision: Decision,
        model: PreTrainedModel,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any,
    ) -> Decision:
        # the rates in force now; restoring the optimizer would bring back the snapshot's
        lrs = [] if optimizer is None else [g["lr"] for g in optimizer.param_groups]
        restored = self.snapshots.restore(model, optimizer=optimizer)
        self.rollbacks += 1
        self._since = len(self.history)  # patience counts start again from the restored state
        if self.after_rollback == "stop" or self.rollbacks > self.max_rollbacks:
            return replace(decision, action="stop", rolled_back_to=restored)
        _scale_lr(optimizer, scheduler, lrs, self.lr_scale)
        return replace(decision, rolled_back_to=restored)

    def _account_time(self, report: DriftReport, began: float, ended: float) -> DriftReport:
        """Add the round's share of training time to the report; warn and (with
        ``adapt_cadence``) stretch the cadence when it is over ``max_overhead_pct``."""
        share = 0.0
        if self._since_mark is not None and began > self._since_mark:
            # probe time as a share of the training time since the previous round ended
            share = 100.0 * (ended - began) / (began - self._since_mark)
        if process_group()[1] > 1 and self._compiled is not None:
            # every rank must adapt the cadence alike: all use the largest share of any rank
            shared = torch.tensor([share], dtype=torch.float64, device=self._compiled.device)
            torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
            share = float(shared.item())
        if share <= 0:
            return report
        extra = {**report.extra, "overhead_pct": share}
        budget = self.max_overhead_pct
        if budget is not None and share > budget:
            extra["overhead_over_budget"] = 1.0
            message = (
                f"driftwatch: the probe round at step {report.step} took {share:.1f}% of the "
                f"training time since the previous round (budget {budget:g}%)"
            )
            if self.adapt_cadence:
                before = self.every_n_steps
                self.every_n_steps = before * math.ceil(share / budget)
                extra["every_n_steps"] = float(self.every_n_steps)
                message += f"; probing every {self.every_n_steps} steps from now on (was {before})"
            logger.warning(message)
        return replace(report, extra=extra)

    def measure(self, model: PreTrainedModel, step: int) -> tuple[DriftReport, ProbeResult]:
        """One probe round compared with the reference, without recording or deciding.

        Out of memory halves the token budget and tries again (see ``min_token_budget``).
        """
        if self._compiled is None or self.reference is None or self._tokenizer is None:
            raise DriftwatchError("call start(model, tokenizer) before probing")
        while True:
            try:
                result = run_probes(
                    model, self._compiled, self._tokenizer, base_topk=self.reference.topk
                )
                break
            except torch.OutOfMemoryError:
                pass  # retried below, once the exception (and the tensors it holds) is gone
            budget = self._compiled.token_budget
            _release_cached_memory(self._compiled.device)
            if budget // 2 < self.min_token_budget:
                raise _OutOfMemory(f"out of memory even with a token budget of {budget}")
            logger.warning(
                "driftwatch: out of memory in the probe round at step %d with a token budget "
                "of %d; retrying with %d (later rounds keep it)",
                step,
                budget,
                budget // 2,
            )
            self._compile(model, budget // 2)
        report = compare(
            result.values,
            self.reference.values,
            self.suite,
            step=step,
            floor=self.floor,
            seconds=result.seconds,
            nonfinite=result.nonfinite,
        )
        return report, result

    def _compile(self, model: PreTrainedModel, budget: int) -> None:
        """Lay the suite out again for a smaller token budget and memory share (halved
        together; same layout, same items)."""
        assert self._compiled is not None and self.reference is not None and self._tokenizer
        share = (
            None if self.memory_share is None else self.memory_share * budget / self.token_budget
        )
        compiled = compile_suite(
            self.suite,
            self._tokenizer,
            model,
            token_budget=budget,
            memory_budget=self._memory_budget(model, share),
            layout=self._compiled.layout,
        )
        self._compiled = attach_continuations(compiled, self.reference.continuations)
        self.token_budget, self.memory_share = budget, share

    def _memory_budget(self, model: PreTrainedModel, share: float | None = None) -> int | None:
        """``share`` (default ``memory_share``) of the weights in bytes; the smallest of any
        rank in a process group, so every rank lays the suite out in the same batches
        (sharded weights differ from rank to rank)."""
        budget = share_bytes(model, self.memory_share if share is None else share)
        if budget is not None and process_group()[1] > 1:
            device = next(model.parameters()).device
            agreed = torch.tensor([budget], dtype=torch.long, device=device)
            torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
            budget = int(agreed.item())
        return budget

    def finish(
        self,
        model: PreTrainedModel,
        step: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
    ) -> Decision:
        """At the end of training: probe ``step`` unless it was just probed, then close.

        Returns the final round's decision, or a not-probed ``continue`` when there was
        nothing to probe (no reference yet, step 0, or the step already probed).
        """
        decision = Decision("continue", step, probed=False)
        if self.reference is not None and step not in (0, self.last_step):
            decision = self.probe(model, step, optimizer=optimizer, scheduler=scheduler)
        self.close()
        return decision

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()
        self._sinks = []

    # ---- configuration ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready data: ``DriftMonitor.from_config`` inverts it.

        Built-in suites are stored by name, suites loaded from disk by manifest path, and
        in-memory suites inline (their items and capabilities).
        """
        return {
            "suite": _suite_spec(self.suite),
            "every_n_steps": self.every_n_steps,
            "thresholds": [asdict(t) for t in self.policy.thresholds],
            "action": self.policy.action,
            "patience": self.policy.patience,
            "warmup_steps": self.policy.warmup_steps,
            "significance": self.policy.significance,
            "floor": self.floor,
            "logdir": None if self.logdir is None else str(self.logdir),
            "reference": None if self.reference_path is None else str(self.reference_path),
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "token_budget": self.token_budget,
            "memory_share": self.memory_share,
            "topk": self.topk,
            "after_rollback": self.after_rollback,
            "lr_scale": self.lr_scale,
            "max_rollbacks": self.max_rollbacks,
            "reference_from": self.reference_from,
            "strict": self.strict,
            "nonfinite": self.policy.nonfinite,
            "min_token_budget": self.min_token_budget,
            "max_overhead_pct": self.max_overhead_pct,
            "adapt_cadence": self.adapt_cadence,
            "snapshot": self.snapshots.mode,
            "snapshot_dir": None
            if self.snapshots.directory is None
            else str(self.snapshots.directory),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DriftMonitor:
        """A monitor from :meth:`config` data (e.g. restored from a checkpoint)."""
        options = dict(config)
        spec = options.pop("suite")
        thresholds = [Threshold(**t) for t in options.pop("thresholds")]
        return cls(_suite_from_spec(spec), thresholds=thresholds, **options)

    # ---- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the report history and the reference it was measured against.

        Restoring it before :meth:`start` (a resumed run) makes ``start`` reuse that reference
        file instead of building one from the resumed, already-trained weights.
        """
        ref = self.reference
        return {
            "version": STATE_VERSION,
            "suite": self.suite.fingerprint,
            "reference": None if ref is None else dict(ref.metadata),
            "reference_path": None if ref is None or ref.path is None else str(ref.path),
            "history": [r.to_dict() for r in self.history],
            "since": self._since,
            "rollbacks": self.rollbacks,
            "failures": self.failures,
            "every_n_steps": self.every_n_steps,
            "snapshot": self.snapshots.pointer(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise DriftwatchError(
                f"monitor state: expected version {STATE_VERSION}, found {state.get('version')!r}"
            )
        if state.get("suite") != self.suite.fingerprint:
            raise DriftwatchError(
                "monitor state was saved with a different probe suite; "
                "its history cannot be continued with this one"
            )
        self.history = [DriftReport.from_dict(r) for r in state.get("history", [])]
        self._since = int(state.get("since", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.failures = int(state.get("failures", 0))
        self.every_n_steps = int(state.get("every_n_steps", self.every_n_steps))
        if state.get("snapshot") is not None and self.snapshots.mode == "disk":
            self.snapshots.load_pointer(state["snapshot"])
        path = state.get("reference_path")
        if self.reference is None and self.reference_path is None and path is not None:
            if not Path(path).is_file():
                raise DriftwatchError(
                    f"monitor state refers to the reference {path}, which no longer exists; "
                    "pass reference= pointing at the base reference of this run"
                )
            self.reference_path = Path(path)

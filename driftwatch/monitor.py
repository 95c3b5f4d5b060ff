"""DriftMonitor: the framework-free orchestrator (docs/architecture.md).

Plain PyTorch loop::

    monitor = DriftMonitor(suite="smoke", every_n_steps=50, logdir="runs/exp",
                           thresholds=[Threshold("C1", max_drop=5.0)], action="stop")
    monitor.start(model, tokenizer)          # builds or loads the base reference
    for step, batch in enumerate(loader, start=1):
        ...                                   # forward, backward, optimizer step
        if monitor.step(model, step).stop:
            break
    monitor.close()

Every round flows one way: the probe session runs the suite and compares it with the
reference (a :class:`~driftwatch.drift.DriftReport`), the policy decides, a rollback is carried
out, the sinks record. The monitor holds no reference to the model between calls: ``start``
and ``step`` take it as an argument; the base model is never kept (its reference is on disk).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from driftwatch.config import MonitorConfig
from driftwatch.distributed import any_rank, rank
from driftwatch.drift import DriftReport
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.pacing import Pace
from driftwatch.policy import Action, Decision, Policy, Threshold
from driftwatch.reference import Reference
from driftwatch.rollback import Rollback, SnapshotStore
from driftwatch.runner import ProbeResult, detect_compute
from driftwatch.session import OutOfMemoryAtFloor, ProbeSession
from driftwatch.settings import Cadence, ProbeBudget, ReferenceSpec, RollbackPlan
from driftwatch.sinks import Sink, default_sinks
from driftwatch.suite import ProbeSuite

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from driftwatch.checkpoints import CheckpointKeeper, CheckpointSource

__all__ = ["DriftMonitor"]

logger = logging.getLogger(__name__)

STATE_VERSION = 2  # 1: before the adapted token budget and memory share were kept


class DriftMonitor:
    """Probe a model every few steps and decide whether training may go on.

    Args:
        suite: a built-in suite name, a suite folder / manifest path, or a ProbeSuite.
        every_n_steps: probe cadence in optimizer steps (``cadence`` shorthand; default 100).
        thresholds: lines not to cross (shorthand for ``policy``); ``None`` uses the
            calibrated :func:`~driftwatch.thresholds.default_thresholds` of the suite.
        action: what ``patience`` consecutive breaches do (shorthand for ``policy``):
            ``"warn"`` (default), ``"stop"``, or ``"rollback"`` (restore the last healthy
            snapshot, then what ``rollback`` says).
        logdir: TensorBoard events and ``driftwatch_history.jsonl`` go here (None: log only,
            or the folder an adapter passes to :meth:`start`); only rank 0 writes them.
        policy: thresholds, action, patience, warm-up, significance, non-finite handling and
            the Δ% floor (:class:`~driftwatch.policy.Policy`).
        cadence: when to probe, and the share of training time a round may take
            (:class:`~driftwatch.settings.Cadence`).
        budget: how large each probe pass may be, in tokens and in memory, and how greedy
            replies are decoded (:class:`~driftwatch.settings.ProbeBudget`).
        reference: a reference file's path, or a :class:`~driftwatch.settings.ReferenceSpec`.
        rollback: what ``action="rollback"`` keeps and does afterwards
            (:class:`~driftwatch.settings.RollbackPlan`).
        sinks: more receivers of every round (``write(report, decision)``, ``close()``: see
            :mod:`driftwatch.sinks`), on rank 0 after the built-in ones; not in :meth:`config`.
        strict: re-raise an exception from a probe round. By default the round is skipped:
            the error is logged with its traceback, :attr:`failures` counts it, the model is
            left exactly as it was (modes, caches, RNG states) and training goes on (a monitor
            must not kill the run it watches); out of memory at the floor is skipped anyway.
    """

    def __init__(
        self,
        suite: str | os.PathLike[str] | ProbeSuite = "smoke",
        *,
        every_n_steps: int | None = None,
        thresholds: Sequence[Threshold] | None = None,
        action: Action | None = None,
        logdir: str | os.PathLike[str] | None = None,
        policy: Policy | None = None,
        cadence: Cadence | None = None,
        budget: ProbeBudget | None = None,
        reference: ReferenceSpec | str | os.PathLike[str] | None = None,
        rollback: RollbackPlan | None = None,
        sinks: Sequence[Sink] = (),
        strict: bool = False,
    ) -> None:
        if policy is not None and (thresholds is not None or action is not None):
            raise ConfigError("give thresholds= and action= in the Policy when passing policy=")
        if cadence is not None and every_n_steps is not None:
            raise ConfigError("give every_n_steps in the Cadence when passing cadence=")
        self.suite = suite if isinstance(suite, ProbeSuite) else ProbeSuite.load(suite)
        configured = policy or Policy(
            None if thresholds is None else tuple(thresholds), action=action or "warn"
        )
        self.policy = configured.for_suite(self.suite)
        self.cadence = cadence or Cadence(100 if every_n_steps is None else every_n_steps)
        self.budget = budget or ProbeBudget()
        if reference is None or isinstance(reference, ReferenceSpec):
            self.reference_spec = reference or ReferenceSpec()
        else:
            self.reference_spec = ReferenceSpec(path=os.fspath(reference))
        self.rollback_plan = rollback or RollbackPlan()
        self.logdir = None if logdir is None else Path(logdir)
        self.sinks = tuple(sinks)  # extra sinks (rank 0), after the built-in ones
        self.strict = strict
        # state: what a resumed run continues (state_dict)
        self.history: list[DriftReport] = []
        self.failures = 0  # probe rounds that raised and were skipped (strict=False)
        self._since = 0  # the policy sees the history from here (reset by a rollback)
        self._rollback = Rollback(self.rollback_plan)
        self._pace = Pace(self.cadence)  # the cadence in force, stretched by Cadence.adapt
        # where a session starts: the configured budget, or a restored state's (halved on OOM)
        self._tokens = self.budget.token_budget
        self._share = self.budget.memory_share
        self._resumed_reference: str | None = None  # a restored state's reference file
        self._resume_at: int | None = None  # and its last round (0: none), for the logdir
        # the run: set by start
        self.session: ProbeSession | None = None
        self._sinks: list[Sink] = []
        self.clock = time.perf_counter  # wall clock for the overhead share (replaceable)

    # ---- what a run sees ----------------------------------------------------------------
    @property
    def reference(self) -> Reference | None:
        """The base reference the run is measured against (None before :meth:`start`)."""
        return None if self.session is None else self.session.reference

    @property
    def every_n_steps(self) -> int:
        """The cadence in force (the configured one, or as ``Cadence.adapt`` stretched it)."""
        return self._pace.every

    @property
    def snapshots(self) -> SnapshotStore:
        """The last healthy snapshot (``action="rollback"``)."""
        return self._rollback.snapshots

    @property
    def checkpoints(self) -> CheckpointKeeper | None:
        """The trainer's last healthy checkpoint (``snapshot="checkpoint"``)."""
        return self._rollback.checkpoints

    @property
    def rollbacks(self) -> int:
        """Rollbacks done so far."""
        return self._rollback.count

    @property
    def last_step(self) -> int | None:
        """The step of the latest probe round (None before the first)."""
        return self.history[-1].step if self.history else None

    def due(self, step: int) -> bool:
        """Whether ``step`` is a probe round (and has not been probed yet)."""
        return self._pace.due(step, self.last_step)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        default_logdir: str | os.PathLike[str] | None = None,
        mixed_precision: str | None = None,
        checkpoints: CheckpointSource | None = None,
    ) -> Reference:
        """Compile the suite and build (or load) the reference from the model as it is now.

        Call it before the first update: the reference is the base model's behaviour; the
        starting weights are the first healthy state. The adapters pass ``default_logdir``
        (used when the monitor has no ``logdir``), ``mixed_precision`` (``"bf16"``/``"fp16"``:
        see ``ProbeBudget.autocast``) and ``checkpoints``, the trainer's checkpoints that
        ``RollbackPlan(snapshot="checkpoint")`` rolls back to.
        """
        spec = self.reference_spec
        if spec.path is None and self._resumed_reference is not None:
            spec = replace(spec, path=self._resumed_reference)
        self.session = ProbeSession.open(
            model,
            tokenizer,
            self.suite,
            reference=spec,
            token_budget=self._tokens,
            memory_share=self._share,
            decode=self.budget.decode,
            compute=detect_compute(model, self.budget.autocast, hint=mixed_precision),
        )
        if self.policy.action == "rollback":
            first = self.last_step or 0
            self._rollback.start(model, first, optimizer=optimizer, checkpoints=checkpoints)
        if not self._sinks:
            logdir = self.logdir if self.logdir is not None else default_logdir
            writer = rank() == 0
            self._sinks = default_sinks(
                logdir, self.suite, writer=writer, settings=self.config(), resume_at=self._resume_at
            )
            if writer:
                self._sinks += [sink for sink in self.sinks if sink not in self._sinks]
        self._pace.mark = self.clock()
        return self.session.reference

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
        the optimizer's state with the weights and, with ``RollbackPlan(after="continue")``,
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
        unless the monitor is ``strict``. In a process group every rank takes the same stop
        decision ("any rank stops → every rank stops").
        """
        if self.session is None:  # a usage error, not a failed round: always raised
            raise DriftwatchError("call start(model, tokenizer) before probing")
        began, device = self.clock(), self.session.compiled.device
        decision = self._round(model, step, began, device, optimizer, scheduler)
        if any_rank(decision.stop, device) and not decision.stop:
            decision = replace(decision, action="stop")
        self._pace.mark = self.clock()
        return decision

    def _round(
        self,
        model: PreTrainedModel,
        step: int,
        began: float,
        device: torch.device,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any,
    ) -> Decision:
        skipped = Decision("continue", step, probed=False)
        try:
            report, _ = self.measure(model, step)
        except OutOfMemoryAtFloor as err:  # resources, not a bug: skipped even when strict
            self.failures += 1
            logger.warning(
                "driftwatch: %s; the round at step %d is skipped, training goes on", err, step
            )
            return skipped
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
            # reference cycles through the gone exception's traceback may still hold the
            # round's tensors: free them (and their device memory) now, not at a later collection
            gc.collect()
            return skipped
        report = self._pace.account(report, began, self.clock(), device)
        self.history.append(report)
        decision = self.policy.decide(self.history[self._since :])
        if self.policy.action == "rollback":
            decision = self._rollback.apply(
                decision, model, optimizer=optimizer, scheduler=scheduler
            )
            if decision.rolled_back_to is not None:
                self._since = len(self.history)  # patience counts start again from here
        for sink in self._sinks:
            sink.write(report, decision)
        return decision

    def measure(self, model: PreTrainedModel, step: int) -> tuple[DriftReport, ProbeResult]:
        """One probe round compared with the reference, without recording or deciding.

        Out of memory halves the token budget and tries again (see
        ``ProbeBudget.min_token_budget``); later rounds keep the smaller budget.
        """
        if self.session is None:
            raise DriftwatchError("call start(model, tokenizer) before probing")
        return self.session.measure(
            model, step=step, floor=self.policy.floor, min_token_budget=self.budget.min_token_budget
        )

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
        if self.session is not None and step not in (0, self.last_step):
            decision = self.probe(model, step, optimizer=optimizer, scheduler=scheduler)
        self.close()
        return decision

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()
        self._sinks = []

    # ---- configuration ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The configuration as JSON-ready data (:class:`~driftwatch.config.MonitorConfig`):
        what was configured; values adapted while running are in :meth:`state_dict`."""
        return MonitorConfig(
            self.suite.spec(),
            self.policy,
            self.cadence,
            self.budget,
            self.reference_spec,
            self.rollback_plan,
            logdir=None if self.logdir is None else str(self.logdir),
            strict=self.strict,
        ).to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DriftMonitor:
        """A monitor from :meth:`config` data (e.g. restored from a checkpoint)."""
        read = MonitorConfig.from_dict(config)
        return cls(ProbeSuite.from_spec(read.suite), **read.arguments())

    # ---- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the report history, the reference it was measured against,
        and what the monitor adapted while running (cadence, token budget, memory share).

        Restored before :meth:`start` (a resumed run), ``start`` reuses that reference file
        instead of building one from the trained weights, and the logdir goes on from the last
        restored round (rounds logged after it before the interruption are probed again).
        """
        ref, session = self.reference, self.session
        return {
            "version": STATE_VERSION,
            "suite": self.suite.fingerprint,
            "reference": None if ref is None else dict(ref.metadata),
            "reference_path": None if ref is None or ref.path is None else str(ref.path),
            "history": [r.to_dict() for r in self.history],
            "since": self._since,
            "failures": self.failures,
            "every_n_steps": self._pace.every,
            "token_budget": self._tokens if session is None else session.token_budget,
            "memory_share": self._share if session is None else session.memory_share,
            **self._rollback.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") not in (1, STATE_VERSION):
            raise DriftwatchError(
                f"monitor state: expected version {STATE_VERSION} (or 1), found "
                f"{state.get('version')!r}"
            )
        if state.get("suite") != self.suite.fingerprint:
            raise DriftwatchError(
                "monitor state was saved with a different probe suite; its history cannot go on"
            )
        self.history = [DriftReport.from_dict(r) for r in state.get("history", [])]
        self._resume_at = self.last_step or 0
        self._since = int(state.get("since", 0))
        self._rollback.load_state(state)
        self.failures = int(state.get("failures", 0))
        self._pace.every = int(state.get("every_n_steps", self._pace.every))
        self._tokens = int(state.get("token_budget", self._tokens))
        self._share = state.get("memory_share", self._share)
        path = state.get("reference_path")
        if self.session is None and self.reference_spec.path is None and path is not None:
            if not Path(path).is_file():
                raise DriftwatchError(
                    f"monitor state refers to the reference {path}, which no longer exists; "
                    "pass reference= pointing at the base reference of this run"
                )
            self._resumed_reference = path

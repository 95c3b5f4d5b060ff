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

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwatch.drift import DEFAULT_FLOOR, DriftReport, compare
from driftwatch.errors import DriftwatchError
from driftwatch.policy import Action, Decision, Policy, Threshold, default_thresholds
from driftwatch.reference import Reference, load_or_build
from driftwatch.runner import CompiledSuite, ProbeResult, compile_suite, run_probes
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


def _rank() -> int:
    """This process's rank in a torch.distributed group (0 when there is no group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class DriftMonitor:
    """Probe a model every ``every_n_steps`` steps and decide whether training may go on.

    Args:
        suite: a built-in suite name, a suite folder / manifest path, or a ProbeSuite.
        every_n_steps: probe cadence in optimizer steps.
        thresholds: lines not to cross; ``None`` uses :func:`default_thresholds`.
        action: what ``patience`` consecutive breaches do: ``"warn"`` or ``"stop"``.
        patience: consecutive breaching rounds before the action (fewer → warn).
        warmup_steps: rounds before this step never breach.
        significance: a breach needs its whole 95% interval past the line.
        floor: smallest denominator of Δ% (see drift.py).
        logdir: TensorBoard events and ``driftwatch_history.jsonl`` go here (None: log only);
            in a torch.distributed group only rank 0 writes them.
        reference: a reference file to use instead of the cache.
        cache_dir: reference cache folder (default ``~/.cache/driftwatch/references``).
        token_budget: most tokens in one probe forward pass.
        topk: base log-probs kept per distribution position.
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
        topk: int = 32,
    ) -> None:
        if (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise DriftwatchError(
                f"every_n_steps: expected an integer >= 1, found {every_n_steps!r}"
            )
        if not 1 <= topk <= 1024:
            raise DriftwatchError(f"topk: expected 1..1024, found {topk!r}")
        if floor <= 0:
            raise DriftwatchError(f"floor: expected a positive number, found {floor!r}")
        self.suite = suite if isinstance(suite, ProbeSuite) else ProbeSuite.load(suite)
        chosen = tuple(thresholds) if thresholds is not None else default_thresholds(self.suite)
        self.policy = Policy(
            chosen,
            action=action,
            patience=patience,
            warmup_steps=warmup_steps,
            significance=significance,
        )
        self.policy.check_suite(self.suite)
        self.every_n_steps = every_n_steps
        self.floor = floor
        self.logdir = Path(logdir) if logdir is not None else None
        self.reference_path = Path(reference) if reference is not None else None
        self.cache_dir = cache_dir
        self.token_budget = token_budget
        self.topk = topk
        self.history: list[DriftReport] = []
        self.reference: Reference | None = None
        self._compiled: CompiledSuite | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._sinks: list[Sink] = []

    @property
    def settings(self) -> dict[str, Any]:
        """Probe settings that change what a reference holds (part of its fingerprint)."""
        return {"topk": self.topk}

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Reference:
        """Compile the suite and build (or load) the reference from the model as it is now.

        Call it before the first update: the reference is the base model's behaviour.
        """
        self._tokenizer = tokenizer
        self._compiled = compile_suite(self.suite, tokenizer, model, token_budget=self.token_budget)
        reference, _ = load_or_build(
            model,
            tokenizer,
            self._compiled,
            settings=self.settings,
            path=self.reference_path,
            cache_dir=self.cache_dir,
        )
        self.reference = reference
        if self.logdir is not None and not self._sinks and _rank() == 0:
            self._sinks = [
                TensorBoardSink(self.logdir),
                JsonlSink(self.logdir / "driftwatch_history.jsonl"),
                LogSink(),
            ]
        elif not self._sinks:
            self._sinks = [LogSink()]
        return reference

    def due(self, step: int) -> bool:
        """Whether ``step`` is a probe round (and has not been probed yet)."""
        done = self.history[-1].step if self.history else None
        return step > 0 and step % self.every_n_steps == 0 and step != done

    def step(self, model: PreTrainedModel, step: int) -> Decision:
        """Probe when ``step`` is due; otherwise return a ``continue`` decision at once."""
        if not self.due(step):
            return Decision("continue", step, probed=False)
        return self.probe(model, step)

    def probe(self, model: PreTrainedModel, step: int) -> Decision:
        """Run a probe round now, record it, and decide."""
        report, _ = self.measure(model, step)
        self.history.append(report)
        decision = self.policy.decide(self.history)
        for sink in self._sinks:
            sink.write(report, decision)
        return decision

    def measure(self, model: PreTrainedModel, step: int) -> tuple[DriftReport, ProbeResult]:
        """One probe round compared with the reference, without recording or deciding."""
        if self._compiled is None or self.reference is None or self._tokenizer is None:
            raise DriftwatchError("call start(model, tokenizer) before probing")
        result = run_probes(model, self._compiled, self._tokenizer, base_topk=self.reference.topk)
        report = compare(
            result.values,
            self.reference.values,
            self.suite,
            step=step,
            floor=self.floor,
            seconds=result.seconds,
        )
        return report, result

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
            "topk": self.topk,
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
        path = state.get("reference_path")
        if self.reference is None and self.reference_path is None and path is not None:
            if not Path(path).is_file():
                raise DriftwatchError(
                    f"monitor state refers to the reference {path}, which no longer exists; "
                    "pass reference= pointing at the base reference of this run"
                )
            self.reference_path = Path(path)

"""Hugging Face ``Trainer`` adapter (also TRL's trainers, which subclass ``Trainer``).

Example::

    from driftwatch import DriftMonitor, Threshold
    from driftwatch.callbacks.hf import DriftCallback

    monitor = DriftMonitor("smoke", every_n_steps=50, action="stop",
                           thresholds=[Threshold("C1", max_drop=5.0)])
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=[DriftCallback(monitor)])
    trainer.train()

At ``on_train_begin`` — before any update — the callback builds or loads the base reference
with the trainer's ``processing_class`` as tokenizer. After every optimizer step the monitor
says is due it probes, appends the round's scalars to ``state.log_history``, and sets
``control.should_training_stop`` when the decision is ``stop`` (the monitor has already made
every rank of a distributed run agree on it). With ``action="rollback"`` the
monitor restores the last healthy weights and optimizer moments (the trainer's optimizer and
scheduler are passed along), then stops or continues with a scaled learning rate. The last
step is probed at ``on_train_end`` if it was not a probe round.

Experiment trackers: ``attach(trainer, monitor)`` puts the callback first, so the drift scalars
also reach the ``report_to`` integrations (W&B, MLflow…) through the log event of each probe
step; passed as ``callbacks=[...]`` it comes after them and the scalars only reach
``state.log_history`` and driftwatch's own TensorBoard files.

TensorBoard: the monitor's ``logdir``; when it has none, ``$TENSORBOARD_LOGGING_DIR/driftwatch``
if that variable is set (where the trainer's own TensorBoard writes), else
``<output_dir>/driftwatch``. Only the main process writes.

Checkpoint rollback: with ``RollbackPlan(snapshot="checkpoint")`` a rollback loads the latest
``checkpoint-N`` saved at or before the last healthy round (weights and optimizer state, through
the Trainer's own loading code: safetensors and ``torch.load(weights_only=True)``) instead of
keeping a snapshot. The Trainer saves after the callbacks' ``on_step_end``, so a checkpoint
saved at a healthy round's step holds the weights that round saw. That checkpoint is
hard-linked into ``<output_dir>/driftwatch-healthy/`` (``RollbackPlan.snapshot_dir`` if set),
out of reach of ``save_total_limit``'s rotation, until a later one is healthy. The learning-rate
schedule keeps its place (as with the other snapshots). This mode needs the trainer itself:
``attach(trainer, monitor)`` or ``DriftCallback(monitor, trainer=trainer)``; a callback the
Trainer rebuilds on resume finds the trainer its configuration was attached to again.

Resume: the callback is an ``ExportableState``. Its ``args`` are the monitor's JSON
configuration and its ``attributes`` the monitor's history, so with
``TrainingArguments(restore_callback_states_from_checkpoint=True)`` a resumed run continues
the history, the patience counts and the base reference of the interrupted one; in the logdir,
the rounds the interrupted process logged after that checkpoint are dropped from
``driftwatch_history.jsonl`` and hidden in TensorBoard (``purge_step``), so each step keeps the
resumed run's one round. (Without that flag the Trainer does not restore callback state, and
the resumed run starts a new history.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwatch.checkpoints import Saved
from driftwatch.errors import DriftwatchError
from driftwatch.monitor import DriftMonitor
from driftwatch.policy import Decision
from driftwatch.sinks import scalars

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as err:  # pragma: no cover - transformers is a dependency
    raise ImportError("driftwatch.callbacks.hf needs transformers") from err

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = ["DriftCallback", "TrainerCheckpoints", "attach"]


class DriftCallback(TrainerCallback, ExportableState):
    """Run a :class:`DriftMonitor` inside ``Trainer.train``.

    Args:
        monitor: the configured monitor.
        config: instead of ``monitor``, its :meth:`DriftMonitor.config` data (this is how the
            Trainer rebuilds the callback when restoring it from a checkpoint).
        eval_metrics: add the latest probe round to every evaluation's metrics as
            ``eval_driftwatch_<group>`` (group mean Δ%) and ``eval_driftwatch_<capability>``
            (headline Δ%, or KL for distribution capabilities), so that
            ``metric_for_best_model="eval_driftwatch_CAN"`` (with ``greater_is_better=True``)
            keeps the checkpoint that forgot least.
        trainer: the ``Trainer`` (``attach`` passes it); needed by
            ``RollbackPlan(snapshot="checkpoint")``, which loads the trainer's checkpoints.
    """

    def __init__(
        self,
        monitor: DriftMonitor | None = None,
        *,
        config: dict[str, Any] | None = None,
        eval_metrics: bool = False,
        trainer: Any = None,
    ) -> None:
        if (monitor is None) == (config is None):
            raise DriftwatchError(
                "DriftCallback: pass a DriftMonitor (or, when restoring, config=)"
            )
        self.monitor = monitor if monitor is not None else DriftMonitor.from_config(config or {})
        self.eval_metrics = eval_metrics
        key = _digest(self.monitor.config())
        if trainer is not None:
            _TRAINERS[key] = weakref.ref(trainer)
        elif config is not None and key in _TRAINERS:
            # rebuilt by the Trainer from a checkpoint's callback state (JSON, without the
            # trainer): the trainer that attached a monitor configured the same way
            trainer = _TRAINERS[key]()
        self.trainer = trainer
        self.last_decision: Decision | None = None
        self._pending: dict[str, float] = {}

    # ---- ExportableState: JSON only ----------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "args": {"config": self.monitor.config(), "eval_metrics": self.eval_metrics},
            "attributes": {"monitor_state": self.monitor.state_dict()},
        }

    @property
    def monitor_state(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    @monitor_state.setter
    def monitor_state(self, value: dict[str, Any]) -> None:
        self.monitor.load_state_dict(value)

    # ---- events -------------------------------------------------------------------------
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        processing_class: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        if self.monitor.reference is not None:
            return
        if processing_class is None:
            raise DriftwatchError(
                "DriftCallback needs the tokenizer: pass processing_class=tokenizer to the Trainer"
            )
        tb_dir = os.environ.get("TENSORBOARD_LOGGING_DIR")
        root = Path(tb_dir).expanduser() if tb_dir else Path(args.output_dir or ".")
        self.monitor.start(
            model,
            processing_class,
            optimizer=optimizer,
            default_logdir=root / "driftwatch",
            # the autocast the Trainer (through accelerate) runs its forwards under
            mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,
            checkpoints=self._checkpoints(args),
        )

    def _checkpoints(self, args: TrainingArguments) -> TrainerCheckpoints | None:
        plan = self.monitor.rollback_plan
        if self.monitor.policy.action != "rollback" or plan.snapshot != "checkpoint":
            return None
        problem = (
            "the callback was not given the trainer: use attach(trainer, monitor) or "
            "DriftCallback(monitor, trainer=trainer)"
            if self.trainer is None
            else "the Trainer saves no checkpoints (save_strategy='no')"
            if args.save_strategy == "no"
            else "its checkpoints hold no optimizer state (save_only_model=True)"
            if args.save_only_model
            else None
        )
        if problem:
            raise DriftwatchError(f"RollbackPlan(snapshot='checkpoint'): {problem}")
        out = Path(args.output_dir or ".")
        pins = Path(plan.snapshot_dir) if plan.snapshot_dir else out / "driftwatch-healthy"
        return TrainerCheckpoints(self.trainer, out, pins)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        decision = self.monitor.step(
            model, state.global_step, optimizer=optimizer, scheduler=lr_scheduler
        )
        self._record(decision, state, control)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        keeper = self.monitor.checkpoints
        if keeper is not None:  # a checkpoint saved at a healthy round's step is pinned now
            keeper.refresh()

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        decision = self.monitor.finish(
            model, state.global_step, optimizer=optimizer, scheduler=lr_scheduler
        )
        self._record(decision, state, control)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.eval_metrics or metrics is None or not self.monitor.history:
            return
        report = self.monitor.history[-1]
        for group, mean in report.groups.items():
            metrics[f"eval_driftwatch_{group}"] = mean
        for cap in report.capabilities.values():
            metrics[f"eval_driftwatch_{cap.id}"] = cap.value

    def _record(self, decision: Decision, state: TrainerState, control: TrainerControl) -> None:
        if not decision.probed:
            return
        self.last_decision = decision
        report = self.monitor.history[-1]
        values = scalars(report, decision)
        state.log_history.append({**values, "step": state.global_step})
        # ask for a log event at this step; on_log hands the scalars to the integrations
        # that come after this callback (see attach())
        self._pending = values
        control.should_log = True
        if decision.stop:
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._pending and logs is not None:
            logs.update(self._pending)
        self._pending = {}


# the trainer each attached monitor configuration was given, for a callback the Trainer rebuilds
# from checkpointed state (restore_callback_states_from_checkpoint=True)
_TRAINERS: dict[str, weakref.ref[Any]] = {}


def _digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


class TrainerCheckpoints:
    """The ``Trainer``'s ``checkpoint-N`` folders, loaded by the Trainer's own code (a
    :class:`~driftwatch.checkpoints.CheckpointSource`)."""

    def __init__(self, trainer: Any, output_dir: Path, pin_dir: Path) -> None:
        self.trainer = trainer
        self.output_dir = output_dir
        self.pin_dir = pin_dir

    def saved(self) -> list[Saved]:
        found = []
        for path in self.output_dir.glob("checkpoint-*"):
            match = re.fullmatch(r"checkpoint-(\d+)", path.name)
            # trainer_state.json is written after the weights and the optimizer: complete
            if match and (path / "trainer_state.json").is_file():
                found.append(Saved(int(match.group(1)), path))
        return found

    def load(self, path: Path, model: Any, optimizer: Any, scheduler: Any) -> None:
        trainer = self.trainer
        schedule = None if scheduler is None else scheduler.state_dict()
        if getattr(trainer, "is_deepspeed_enabled", False):
            from transformers.integrations.deepspeed import deepspeed_load_checkpoint

            deepspeed_load_checkpoint(trainer.model_wrapped, str(path))
        else:
            trainer._load_from_checkpoint(str(path))
            trainer._load_optimizer_and_scheduler(str(path))
        if schedule is not None:  # the schedule follows the training step, which goes on
            scheduler.load_state_dict(schedule)


def attach(trainer: Any, monitor: DriftMonitor, *, eval_metrics: bool = False) -> DriftCallback:
    """Add a :class:`DriftCallback` *first* in ``trainer``'s callbacks and return it.

    Callbacks see each log event in order, and the Trainer puts its ``report_to``
    integrations (TensorBoard, W&B, MLflow…) before callbacks passed as ``callbacks=[...]``.
    Attached first, the drift callback adds its scalars to the log event before the
    integrations read it, so they record the drift too.

    Example::

        trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tok)
        driftwatch.callbacks.hf.attach(trainer, DriftMonitor("smoke", every_n_steps=50))
        trainer.train()
    """
    callback = DriftCallback(monitor, eval_metrics=eval_metrics, trainer=trainer)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback

"""PyTorch Lightning adapter: ``L.Trainer(callbacks=[DriftCallback(monitor, tokenizer)])``.

Example::

    import lightning as L
    from driftwatch import DriftMonitor, Threshold
    from driftwatch.callbacks.lightning import DriftCallback

    monitor = DriftMonitor("smoke", every_n_steps=50, logdir="runs/exp",
                           thresholds=[Threshold("C1", max_drop=5.0)], action="stop")
    trainer = L.Trainer(max_steps=1000, callbacks=[DriftCallback(monitor, tokenizer)])
    trainer.fit(module)   # module.model is the Hugging Face causal LM being fine-tuned

The callback builds (or loads) the reference at the start of ``fit``, before the first update;
probes after every optimizer step the monitor says is due (and the last step when ``fit``
ends); and stops through
``trainer.should_stop``; with ``action="rollback"`` the monitor restores the last healthy
weights and optimizer moments first. The monitor reduces the stop decision across ranks ("any
rank stops → every rank stops"), so a distributed job never hangs on a split decision. Its
``state_dict`` is the monitor's plain-data history, saved in Lightning checkpoints and
restored on resume, under a ``state_key`` made of what was configured (the suite and the
configured cadence), so a cadence the monitor stretched while running does not hide it.

Checkpoint rollback: with ``RollbackPlan(snapshot="checkpoint")`` a rollback loads the latest
``ModelCheckpoint`` file saved at or before the last healthy round (its ``global_step``),
through the strategy's own loading code with ``weights_only=True``: the module's weights and
the optimizer's state (the schedule keeps its place). Lightning runs checkpoint callbacks after
the others, so a file saved at a healthy round's step holds the weights that round saw. The
eligible file is hard-linked into ``<dirpath>/driftwatch-healthy/`` (``RollbackPlan.snapshot_dir``
if set), out of reach of ``save_top_k``, until a later one is healthy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from driftwatch.checkpoints import Saved
from driftwatch.errors import DriftwatchError
from driftwatch.monitor import DriftMonitor
from driftwatch.policy import Decision

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "driftwatch.callbacks.lightning needs Lightning: pip install 'driftwatch-train[lightning]'"
    ) from err

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DriftCallback", "ModelCheckpoints"]


class DriftCallback(pl.Callback):
    """Run a :class:`DriftMonitor` inside a Lightning ``fit``.

    Args:
        monitor: the configured monitor (suite, cadence, thresholds, action, logdir).
        tokenizer: the tokenizer of the model being trained.
        model_attr: attribute of the LightningModule that holds the Hugging Face model;
            ``None`` probes the LightningModule itself (it must then behave like one).
    """

    def __init__(
        self,
        monitor: DriftMonitor,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_attr: str | None = "model",
    ) -> None:
        if not isinstance(monitor, DriftMonitor):
            raise DriftwatchError(
                f"monitor: expected a DriftMonitor, found {type(monitor).__name__}"
            )
        self.monitor = monitor
        self.tokenizer = tokenizer
        self.model_attr = model_attr
        self.last_decision: Decision | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            suite=self.monitor.suite.fingerprint[:12], every=self.monitor.cadence.every_n_steps
        )

    def _model(self, pl_module: pl.LightningModule) -> PreTrainedModel:
        if self.model_attr is None:
            return cast("PreTrainedModel", pl_module)
        model = getattr(pl_module, self.model_attr, None)
        if model is None:
            raise DriftwatchError(
                f"{type(pl_module).__name__} has no attribute {self.model_attr!r}: pass "
                "model_attr= naming the attribute that holds the Hugging Face model"
            )
        return cast("PreTrainedModel", model)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor.reference is None:
            optimizer, _ = _optimizer_and_scheduler(trainer)
            self.monitor.start(
                self._model(pl_module),
                self.tokenizer,
                optimizer=optimizer,
                mixed_precision=_MIXED.get(str(trainer.precision)),
                checkpoints=self._checkpoints(trainer),
            )

    def _checkpoints(self, trainer: pl.Trainer) -> ModelCheckpoints | None:
        plan = self.monitor.rollback_plan
        if self.monitor.policy.action != "rollback" or plan.snapshot != "checkpoint":
            return None
        folders = [
            Path(cb.dirpath)
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and cb.dirpath
        ]
        if not folders:
            raise DriftwatchError(
                "RollbackPlan(snapshot='checkpoint'): the Trainer has no ModelCheckpoint "
                "callback (enable_checkpointing=False?), so there is no checkpoint to roll back to"
            )
        pins = Path(plan.snapshot_dir) if plan.snapshot_dir else folders[0] / "driftwatch-healthy"
        return ModelCheckpoints(trainer, folders, pins)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        keeper = self.monitor.checkpoints
        if keeper is not None:  # the previous step's save (checkpoints are saved after us)
            keeper.refresh()
        optimizer, scheduler = _optimizer_and_scheduler(trainer)
        decision = self.monitor.step(
            self._model(pl_module), trainer.global_step, optimizer=optimizer, scheduler=scheduler
        )
        if not decision.probed:
            return
        self.last_decision = decision
        if decision.stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer, scheduler = _optimizer_and_scheduler(trainer)
        decision = self.monitor.finish(
            self._model(pl_module), trainer.global_step, optimizer=optimizer, scheduler=scheduler
        )
        if decision.probed:
            self.last_decision = decision

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict)


class ModelCheckpoints:
    """The files the Trainer's ``ModelCheckpoint`` callbacks saved, loaded by the strategy's
    own code (a :class:`~driftwatch.checkpoints.CheckpointSource`)."""

    def __init__(self, trainer: pl.Trainer, folders: list[Path], pin_dir: Path) -> None:
        self.trainer = trainer
        self.folders = folders
        self.pin_dir = pin_dir
        self._steps: dict[tuple[Path, int], int] = {}  # (file, mtime) -> its global_step

    def saved(self) -> list[Saved]:
        found: dict[Path, Saved] = {}
        for folder in self.folders:
            for path in folder.glob("*.ckpt"):
                real = path.resolve()  # save_last="link" makes last.ckpt a link
                if real not in found and real.is_file():
                    found[real] = Saved(self._step(real), real)
        return list(found.values())

    def _step(self, path: Path) -> int:
        key = (path, path.stat().st_mtime_ns)
        if key not in self._steps:
            # memory-mapped: only the small entries are read, not the tensors
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            self._steps[key] = int(data["global_step"])
        return self._steps[key]

    def load(self, path: Path, model: Any, optimizer: Any, scheduler: Any) -> None:
        strategy = self.trainer.strategy
        schedule = None if scheduler is None else scheduler.state_dict()
        checkpoint = strategy.load_checkpoint(os.fspath(path), weights_only=True)
        strategy.load_model_state_dict(checkpoint)
        strategy.load_optimizer_state_dict(checkpoint)
        if schedule is not None:  # the schedule follows the training step, which goes on
            scheduler.load_state_dict(schedule)


# Lightning precision settings whose forwards run under torch.autocast ("-true" ones convert
# the weights instead, which the weights' dtype shows)
_MIXED = {"bf16-mixed": "bf16", "16-mixed": "fp16", "bf16": "bf16", "16": "fp16"}


def _optimizer_and_scheduler(trainer: pl.Trainer) -> tuple[Any, Any]:
    """The (first) optimizer and LR scheduler Lightning drives, for rollback."""
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    configs = trainer.lr_scheduler_configs
    return optimizer, configs[0].scheduler if configs else None

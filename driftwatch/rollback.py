"""Last-healthy snapshots of a model (and its optimizer) and their exact restoration.

A snapshot holds the *trainable* parameters by default — for a LoRA run that is only the
adapter weights — plus, optionally, the optimizer's state (its moments belong to the weights).
A learning-rate scheduler is deliberately not rewound: the schedule follows the training step,
which goes on. It lives in CPU
memory (``mode="memory"``: no extra accelerator memory) or in a safetensors file
(``mode="disk"``: written atomically, nothing pickled; optimizer state is kept in memory;
sharded parameters: one file per rank with its shards, ``last_healthy.rank<r>.safetensors``).
Restoring copies the saved tensors back in place, so the model's parameters equal the
snapshot bit for bit and the optimizer keeps referring to the same parameter objects. Under
FSDP2 a memory snapshot holds each rank's own shards (``DTensor`` copies) and their optimizer
moments, restored shard by shard.

:class:`Rollback` carries out a :class:`~driftwatch.settings.RollbackPlan`: it snapshots every
healthy round and, on a ``rollback`` decision, restores the last snapshot and then stops or
continues with a scaled learning rate. With ``snapshot="checkpoint"`` it keeps no snapshot of
its own and restores the trainer's latest checkpoint saved at or before the last healthy round
instead (:mod:`driftwatch.checkpoints`).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from driftwatch import tensorfile
from driftwatch.checkpoints import CheckpointKeeper, CheckpointSource
from driftwatch.distributed import rank
from driftwatch.errors import DriftwatchError
from driftwatch.policy import Decision
from driftwatch.settings import RollbackPlan
from driftwatch.sharding import is_sharded, is_zero3

__all__ = ["Rollback", "Snapshot", "SnapshotStore"]

logger = logging.getLogger(__name__)

Mode = Literal["memory", "disk"]


@dataclass
class Snapshot:
    step: int
    names: tuple[str, ...]  # the parameters it covers
    tensors: dict[str, torch.Tensor] | None  # CPU copies (memory mode)
    path: Path | None  # safetensors file (disk mode)
    optimizer: dict[str, Any] | None  # a CPU deep copy of optimizer.state_dict()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


class SnapshotStore:
    """Keeps the last healthy snapshot and restores it.

    Args:
        mode: ``"memory"`` (CPU RAM) or ``"disk"`` (a safetensors file in ``directory``).
        directory: where disk snapshots go (required for ``"disk"``).
        trainable_only: snapshot only parameters with ``requires_grad`` (adapters under PEFT);
            ``False`` covers every parameter.
    """

    def __init__(
        self,
        mode: Mode = "memory",
        *,
        directory: str | os.PathLike[str] | None = None,
        trainable_only: bool = True,
    ) -> None:
        if mode not in ("memory", "disk"):
            raise DriftwatchError(f"snapshot mode: expected 'memory' or 'disk', found {mode!r}")
        if mode == "disk" and directory is None:
            raise DriftwatchError("snapshot mode 'disk' needs a directory")
        self.mode = mode
        self.directory = Path(directory) if directory is not None else None
        self.trainable_only = trainable_only
        self.last: Snapshot | None = None

    def _params(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        return {
            name: p
            for name, p in model.named_parameters()
            if p.requires_grad or not self.trainable_only
        }

    def take(
        self,
        model: torch.nn.Module,
        step: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> Snapshot:
        """Record the model (and optimizer) as the last healthy state."""
        params = self._params(model)
        if not params:
            raise DriftwatchError("nothing to snapshot: the model has no trainable parameters")
        if is_zero3(model):
            raise DriftwatchError(
                "DeepSpeed ZeRO-3 keeps the weights and optimizer moments in its own partitions, "
                "which a driftwatch snapshot cannot copy: use RollbackPlan(snapshot='checkpoint') "
                "to roll back to the Trainer's own checkpoints"
            )
        sharded = is_sharded(model)
        with torch.no_grad():
            tensors = {name: p.detach().to("cpu", copy=True) for name, p in params.items()}
        path = None
        if self.mode == "disk":
            assert self.directory is not None  # checked in __init__
            # sharded: each rank writes its own shards, in a file named by its rank
            local = {n: _local(t) for n, t in tensors.items()} if sharded else tensors
            path = self._write(local, step, rank() if sharded else None)
            tensors_kept = None
        else:
            tensors_kept = tensors
        snap = Snapshot(
            step=step,
            names=tuple(params),
            tensors=tensors_kept,
            path=path,
            optimizer=None if optimizer is None else _to_cpu(optimizer.state_dict()),
        )
        self.last = snap
        return snap

    def _write(self, tensors: dict[str, torch.Tensor], step: int, shard: int | None) -> Path:
        assert self.directory is not None
        name = "last_healthy" if shard is None else f"last_healthy.rank{shard}"
        meta = {"step": str(step), "format": "1", "rank": str(shard)}
        return tensorfile.save(self.directory / f"{name}.safetensors", tensors, meta)

    def pointer(self) -> dict[str, Any] | None:
        """Plain data locating the last snapshot on disk (None in memory mode / no snapshot);
        the same on every rank (rank 0 saves it): a rank's own file is found by its rank."""
        snap = self.last
        if snap is None or snap.path is None:
            return None
        per_rank = snap.path.name.startswith("last_healthy.rank")
        path = snap.path.with_name("last_healthy.rank{rank}.safetensors") if per_rank else snap.path
        return {"step": snap.step, "path": str(path)}

    def load_pointer(self, pointer: Mapping[str, Any]) -> None:
        """Point at a disk snapshot again after a restart (its optimizer state is not on disk)."""
        from safetensors import safe_open

        path = Path(str(pointer["path"]).replace("{rank}", str(rank())))
        if not path.is_file():
            raise DriftwatchError(f"{path}: the last healthy snapshot no longer exists")
        with safe_open(str(path), framework="pt") as handle:
            names = tuple(handle.keys())
        self.last = Snapshot(int(pointer["step"]), names, None, path, None)

    def restore(
        self,
        model: torch.nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> int:
        """Copy the last snapshot back into the model (and optimizer).

        Returns:
            the step the snapshot was taken at.
        """
        snap = self.last
        if snap is None:
            raise DriftwatchError("no healthy snapshot to roll back to")
        tensors = snap.tensors
        if tensors is None:
            assert snap.path is not None
            tensors, _ = tensorfile.load(snap.path)  # refused when torn or changed
        params = dict(model.named_parameters())
        missing = [n for n in snap.names if n not in params]
        if missing:
            raise DriftwatchError(f"the model lacks snapshot parameters {missing[:5]}")
        with torch.no_grad():
            for name in snap.names:
                param, saved = params[name], tensors[name]
                if snap.path is not None and hasattr(param, "to_local"):
                    param = param.to_local()  # a rank's file holds its shard of a DTensor
                param.copy_(saved)
        if optimizer is not None and snap.optimizer is not None:
            optimizer.load_state_dict(snap.optimizer)
        logger.warning("rolled back to the snapshot of step %d", snap.step)
        return snap.step


class Rollback:
    """A :class:`~driftwatch.settings.RollbackPlan` carried out, round by round.

    Args:
        plan: what to keep and what to do after a restore.
    """

    def __init__(self, plan: RollbackPlan) -> None:
        self.plan = plan
        own = plan.snapshot if plan.snapshot != "checkpoint" else "memory"
        self.snapshots = SnapshotStore(own, directory=plan.snapshot_dir)
        self.checkpoints: CheckpointKeeper | None = None  # snapshot="checkpoint"
        self._kept: dict[str, Any] | None = None  # a resumed keeper's state, until start
        self.count = 0  # rollbacks done so far

    def start(
        self,
        model: torch.nn.Module,
        step: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        checkpoints: CheckpointSource | None = None,
    ) -> None:
        """Training starts at ``step``: its weights are the first healthy state."""
        if self.plan.snapshot != "checkpoint":
            if self.snapshots.last is None:
                self.snapshots.take(model, step, optimizer=optimizer)
            return
        if checkpoints is None:
            raise DriftwatchError(
                "RollbackPlan(snapshot='checkpoint') rolls back to the trainer's own checkpoints, "
                "which only a framework adapter knows: with the HF Trainer use "
                "driftwatch.callbacks.hf.attach(trainer, monitor); with Lightning, a "
                "ModelCheckpoint callback; in a plain loop, snapshot='memory' or 'disk'"
            )
        self.checkpoints = CheckpointKeeper(checkpoints)
        if self._kept is not None:
            self.checkpoints.load_state(self._kept)
        self.checkpoints.start(step)

    def state(self) -> dict[str, Any]:
        """Plain data for the monitor's ``state_dict``."""
        kept = self.checkpoints.state() if self.checkpoints is not None else self._kept
        return {"rollbacks": self.count, "snapshot": self.snapshots.pointer(), "checkpoints": kept}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.count = int(state.get("rollbacks", 0))
        if state.get("snapshot") is not None and self.snapshots.mode == "disk":
            self.snapshots.load_pointer(state["snapshot"])
        self._kept = state.get("checkpoints")
        if self._kept is not None and self.checkpoints is not None:
            self.checkpoints.load_state(self._kept)

    def apply(
        self,
        decision: Decision,
        model: torch.nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
    ) -> Decision:
        """Snapshot a healthy round (``continue``); restore the last snapshot on a
        ``rollback``, which becomes a ``stop`` after ``plan.after="stop"`` or once
        ``plan.max_rollbacks`` restores have been continued from."""
        keeper = self.checkpoints
        if decision.action == "continue":
            if keeper is not None:
                keeper.mark_healthy(decision.step)
            else:
                self.snapshots.take(model, decision.step, optimizer=optimizer)
            return decision
        if decision.action != "rollback":
            return decision
        # the rates in force now; restoring the optimizer would bring back the snapshot's
        lrs = [] if optimizer is None else [g["lr"] for g in optimizer.param_groups]
        source = None
        if keeper is not None:
            saved = keeper.restore(model, optimizer, scheduler, step=decision.step)
            if saved is None:
                return replace(decision, action="stop", note=keeper.describe_missing())
            restored, source = saved.step, saved.name
        else:
            restored = self.snapshots.restore(model, optimizer=optimizer)
        self.count += 1
        decision = replace(decision, rolled_back_to=restored, restored_from=source)
        if self.plan.after == "stop" or self.count > self.plan.max_rollbacks:
            return replace(decision, action="stop")
        _scale_lr(optimizer, scheduler, lrs, self.plan.lr_scale)
        return decision


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A rank's part of a (CPU copy of a) parameter: a ``DTensor``'s local shard."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


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

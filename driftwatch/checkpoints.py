"""Rollback to the trainer's own checkpoints (``RollbackPlan(snapshot="checkpoint")``).

For a full fine-tune a snapshot of its own (weights plus Adam moments) is as large as a
checkpoint, which the trainer saves anyway. In this mode the monitor keeps no copy: a rollback
loads the latest checkpoint the trainer saved at or before the last healthy round, through the
trainer's own loading code.

An adapter provides a :class:`CheckpointSource`: the checkpoints its trainer has saved (step
and path) and how the trainer loads one. :class:`CheckpointKeeper` does the rest, the same for
every framework:

- **Eligible**: a checkpoint saved at step ``s`` with ``floor <= s <= healthy``. The trainers
  save after the callbacks' end-of-step hook, so a checkpoint saved at the step of a healthy
  round holds exactly the weights that round saw. ``floor`` is the step the monitor started
  at and, after a rollback, the step of the rollback (checkpoints between the restored one and
  the breach hold weights that were never found healthy; one saved *at* the rollback's step
  holds the restored weights).
- **Pinned**: the eligible checkpoint is hard-linked into ``pin_dir/step-<s>/`` (no second
  copy on disk; a copy where the filesystem has no hard links), so that the trainer's rotation
  (``save_total_limit``, ``save_top_k``) cannot delete it; the pin moves on, and the old one
  is removed, when a later checkpoint becomes eligible. Only the writing rank touches the
  files; every rank computes the same pin from the shared checkpoint folder.
- **Restored**: through :meth:`CheckpointSource.load`, from the pinned copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from driftwatch.distributed import rank

__all__ = ["CheckpointKeeper", "CheckpointSource", "Saved"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Saved:
    """A checkpoint the trainer saved: the step it was saved at and its file or folder."""

    step: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


class CheckpointSource(Protocol):
    """What an adapter knows about its trainer's checkpoints."""

    pin_dir: Path  # where eligible checkpoints are pinned (outside the trainer's rotation)

    def saved(self) -> list[Saved]:
        """The checkpoints saved so far that still exist."""
        ...

    def load(self, path: Path, model: Any, optimizer: Any, scheduler: Any) -> None:
        """Load the weights and optimizer state of the checkpoint at ``path`` in place,
        through the trainer's own loading code (no unsafe unpickling)."""
        ...


class CheckpointKeeper:
    """Tracks the eligible checkpoint, pins it against rotation, and restores it.

    Args:
        source: the adapter's view of the trainer's checkpoints.
        writer: whether this process links and removes pinned files (default: rank 0).
    """

    def __init__(self, source: CheckpointSource, *, writer: bool | None = None) -> None:
        self.source = source
        self.writer = rank() == 0 if writer is None else writer
        self.floor = 0
        self.healthy: int | None = None
        self.pinned: Saved | None = None

    def start(self, step: int) -> None:
        """The weights at ``step`` (the start of training) are healthy by definition."""
        self.floor = step
        if self.healthy is None or self.healthy < step:
            self.healthy = step
        self.refresh()

    def mark_healthy(self, step: int) -> None:
        self.healthy = step
        self.refresh()

    def refresh(self) -> None:
        """Pin the latest eligible checkpoint if it is newer than the pinned one."""
        if self.healthy is None:
            return
        eligible = [s for s in self.source.saved() if self.floor <= s.step <= self.healthy]
        if not eligible:
            return
        best = max(eligible, key=lambda s: s.step)
        if self.pinned is not None and best.step <= self.pinned.step:
            return
        # one folder per step: a trainer may reuse a file name (Lightning's last.ckpt)
        target = self.source.pin_dir / f"step-{best.step}" / best.name
        if self.writer:
            _link_copy(best.path, target)
            if self.pinned is not None:
                _remove(self.pinned.path.parent)
        logger.info(
            "driftwatch: %s is the last healthy checkpoint (pinned in %s)",
            best.name,
            self.source.pin_dir,
        )
        self.pinned = Saved(best.step, target)

    def restore(self, model: Any, optimizer: Any, scheduler: Any, *, step: int) -> Saved | None:
        """Load the pinned checkpoint (None when no checkpoint is eligible); checkpoints
        saved before ``step`` and after the restored one are not eligible from now on."""
        self.refresh()
        pinned = self.pinned
        if pinned is None:
            return None
        self.source.load(pinned.path, model, optimizer, scheduler)
        self.floor = step
        logger.warning("driftwatch: rolled back to %s (step %d)", pinned.name, pinned.step)
        return pinned

    def describe_missing(self) -> str:
        return (
            f"no checkpoint was saved at or before the last healthy round (step {self.healthy}), "
            "so there was nothing to roll back to"
        )

    # ---- persistence (plain data) ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        pinned = self.pinned
        return {
            "floor": self.floor,
            "healthy": self.healthy,
            "pinned": None if pinned is None else {"step": pinned.step, "path": str(pinned.path)},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.floor = int(state.get("floor", 0))
        healthy = state.get("healthy")
        self.healthy = None if healthy is None else int(healthy)
        pinned = state.get("pinned")
        if pinned is not None and Path(pinned["path"]).exists():
            self.pinned = Saved(int(pinned["step"]), Path(pinned["path"]))


def _link_copy(source: Path, target: Path) -> None:
    """``target`` made of hard links to ``source``'s files (copies where links fail),
    assembled beside it and renamed into place."""
    _remove(target)  # left by an earlier run into the same folder
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    _remove(partial)
    if source.is_dir():
        shutil.copytree(source, partial, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(source), str(partial))
    os.replace(partial, target)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()

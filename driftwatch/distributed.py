"""Everything driftwatch does across the ranks of a ``torch.distributed`` process group.

A single process never touches ``torch.distributed`` beyond asking whether a group exists: every
helper here is a no-op (or the identity) when there is none. In a group:

- probe batches are shared out so that every rank runs the same number of passes
  (:func:`share`), because sharded engines (FSDP, DeepSpeed) hang when one rank stops early;
- results are gathered by summing disjoint slot tensors (:func:`sum_into_all`): each slot is
  filled by exactly one rank and left at zero by the others;
- a failure on one rank is announced to all before any collective that would otherwise wait
  for it forever (:func:`agree`);
- settings that must match everywhere take the agreed value (:func:`agree_min`,
  :func:`agree_max`), and the stop decision is "any rank stops → every rank stops"
  (:func:`any_rank`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

from driftwatch.errors import ProbeRoundError

__all__ = [
    "agree",
    "agree_max",
    "agree_min",
    "any_rank",
    "process_group",
    "rank",
    "share",
    "sum_into_all",
]

T = TypeVar("T")


def process_group() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    """This process's rank (0 without a group): only rank 0 writes files and logs."""
    return process_group()[0]


def share(batches: Sequence[T]) -> list[tuple[T, bool]]:
    """This rank's batches as ``(batch, is_dummy)``: its share, padded with dummy repeats of
    the first batch so every rank runs as many passes as the busiest one (FSDP and friends
    hang otherwise). A dummy pass is computed and its result discarded."""
    rank, world = process_group()
    mine = [(b, False) for b in batches[rank::world]]
    missing = -(-len(batches) // world) - len(mine)
    return mine + [(batches[0], True)] * missing if missing else mine


def agree(error: BaseException | None, device: torch.device) -> None:
    """Raise on every rank when any rank failed its local share of a round.

    A rank that fails before a collective would leave the others waiting in it forever; so
    each rank reports its outcome first (none, out of memory, other) and all of them raise
    together: the failing rank its own error, the others an out-of-memory error when that was
    the worst outcome anywhere (so every rank retries with the same smaller budget), else
    :class:`~driftwatch.errors.ProbeRoundError`.
    """
    if process_group()[1] > 1:
        code = 0 if error is None else 1 if isinstance(error, torch.OutOfMemoryError) else 2
        worst = int(_reduce(torch.tensor([code], device=device), "max").item())
        if error is None and worst == 1:
            raise torch.OutOfMemoryError("another rank ran out of memory in this probe round")
        if error is None and worst == 2:
            raise ProbeRoundError("another rank's share of this probe round failed; see its log")
    if error is not None:
        raise error


def sum_into_all(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (slots filled by one rank each gather so)."""
    if process_group()[1] > 1:
        for tensor in tensors:
            _reduce(tensor, "sum")


def agree_max(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum over the ranks, in place (the identity in one process)."""
    return _reduce(tensor, "max") if process_group()[1] > 1 else tensor


def agree_min(value: int, device: torch.device) -> int:
    """The smallest ``value`` of any rank (sharded weights differ from rank to rank)."""
    if process_group()[1] == 1:
        return value
    return int(_reduce(torch.tensor([value], dtype=torch.long, device=device), "min").item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (Lightning's rule for stopping)."""
    if process_group()[1] == 1:
        return flag
    return bool(_reduce(torch.tensor([int(flag)], device=device), "max").item())


def _reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
    ops = {
        "sum": torch.distributed.ReduceOp.SUM,
        "max": torch.distributed.ReduceOp.MAX,
        "min": torch.distributed.ReduceOp.MIN,
    }
    torch.distributed.all_reduce(tensor, op=ops[op])
    return tensor

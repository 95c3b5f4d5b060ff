"""Sharded parameters: reading a model trained under FSDP as its unsharded self.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) every parameter is a ``DTensor`` whose
local part is one rank's shard; under FSDP1 (``FullyShardedDataParallel``) the parameters
are views into a rank's part of a flat buffer. A forward through the model gathers each shard
group's parameters on the fly (one wrapped layer at a time), so probing through the model's
own ``forward`` never holds more than a group whole on a rank. What must not happen is code
reading a parameter directly (a NumPy copy, a slice, a separate call of the output head) or
calling the wrapped module around FSDP1's gathering (``generate``): that sees a shard, or
fails. DeepSpeed ZeRO-3 partitions each parameter the same way (an empty ``param.data``, the
rank's part in ``param.ds_tensor``) and gathers it in forward hooks, which are collectives:
every rank must run the same calls. This module is the one place that knows about these
engines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import torch

__all__ = ["full_parameters", "generating", "is_sharded", "is_zero3", "model_class", "no_grad"]

_FSDP1_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support
        return None
    return DTensor


def _fsdp1_type() -> Any:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return None
    return FullyShardedDataParallel


def _fsdp1(model: torch.nn.Module) -> bool:
    fsdp = _fsdp1_type()
    return fsdp is not None and any(isinstance(m, fsdp) for m in model.modules())


def is_zero3(model: torch.nn.Module) -> bool:
    """Whether ``model``'s parameters are partitioned by DeepSpeed ZeRO stage 3."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` is (or holds) an FSDP1 unit, has ``DTensor`` parameters (FSDP2,
    tensor parallelism), or is partitioned by DeepSpeed ZeRO-3."""
    dtensor = _dtensor_type() or ()  # called for every probe batch: one pass over parameters
    if any(isinstance(p, dtensor) or hasattr(p, "ds_id") for p in model.parameters()):
        return True
    return _fsdp1(model)


def model_class(model: torch.nn.Module) -> type:
    """The model's own class, under FSDP1's wrapper or FSDP2's generated ``FSDP<Class>``."""
    fsdp = _fsdp1_type()
    while fsdp is not None and isinstance(model, fsdp):
        model = cast(Any, model).module
    cls = type(model)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return cls
    if issubclass(cls, FSDPModule):
        return next(b for b in cls.__bases__ if b is not FSDPModule)
    return cls


def _clean(name: str) -> str:
    for prefix in _FSDP1_PREFIXES:
        name = name.replace(prefix, "")
    return name


def full_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every parameter as the unsharded model names and holds it.

    A ``DTensor`` is gathered one parameter at a time, so at most the largest one is whole.
    FSDP1's parameters are read inside ``summon_full_params`` (its only way to see them
    whole). Under a process group every rank must iterate all of it, in the same order
    (gathering is a collective): ``named_parameters`` order is the same on every rank.
    """
    fsdp = _fsdp1_type()
    if fsdp is not None and _fsdp1(model):
        with fsdp.summon_full_params(model, writeback=False):
            for name, param in model.named_parameters():
                yield _clean(name), param.detach()
        return
    if is_zero3(model):
        import deepspeed

        for name, param in model.named_parameters():  # gathered one at a time
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                whole = param.detach().clone()
            yield name, whole
        return
    dtensor = _dtensor_type()
    for name, param in model.named_parameters():
        if dtensor is not None and isinstance(param, dtensor):
            yield name, cast(Any, param).detach().full_tensor()
        else:
            yield name, param.detach()


@contextlib.contextmanager
def generating(model: torch.nn.Module) -> Iterator[Any]:
    """The module whose ``generate`` decodes with ``model``'s whole weights.

    FSDP1's wrapper hands ``generate`` to the wrapped module, whose forward would see the
    root unit's shards: the root's parameters are gathered for the call (nested units still
    gather their own in their forward). FSDP2 and plain models need nothing.
    """
    fsdp = _fsdp1_type()
    if fsdp is not None and isinstance(model, fsdp):
        with fsdp.summon_full_params(model, recurse=False, writeback=False):
            yield cast(Any, model).module
        return
    yield model


@contextlib.contextmanager
def no_grad(model: torch.nn.Module) -> Iterator[None]:
    """The no-gradient mode a probe round runs in: ``torch.inference_mode()``, except for a
    sharded model. FSDP allocates its gather buffers at the first forward and reuses them in
    place; made under inference mode they would be inference tensors, which the next training
    forward may not write to. ``torch.no_grad()`` computes the same values.

    On the way out FSDP2's units are put back to sharded. Its root unit keeps its parameters
    gathered after a forward (training's backward would need them at once), and while they
    are gathered the module holds plain tensors in their place: a rollback snapshot or restore
    would then read or write those instead of the shards the optimizer updates.
    """
    import torch

    if not is_sharded(model):
        with torch.inference_mode():
            yield
        return
    try:
        with torch.no_grad():
            yield
    finally:
        _reshard(model)


def _reshard(model: torch.nn.Module) -> None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()

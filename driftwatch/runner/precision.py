"""The compute precision of a probe forward: parameter dtype, or autocast over it.

Mixed-precision training keeps fp32 weights and runs each forward under ``torch.autocast``
(HF ``Trainer(bf16=True)`` and TRL through accelerate, which wraps the model's ``forward``;
Lightning's ``precision="bf16-mixed"``; a plain loop's own ``with torch.autocast(...)``). A
probe round must compute as training does, and as the reference did: :func:`detect_compute`
finds the precision once, when a session opens, and every forward of the session then runs
inside :meth:`Compute.context` — autocast on in that dtype, or off (an outer autocast
disabled), whichever path the forward takes (the backbone and output head called apart, or
``generate``). The reference's fingerprint records :attr:`Compute.name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from driftwatch.errors import ConfigError

__all__ = ["Compute", "detect_compute", "layout_tolerance", "wrapped_autocast"]

# the autocast settings (ProbeBudget.autocast, --autocast) and the dtype each means
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Compute:
    """How a probe forward computes: in ``dtype``, by autocast or by the weights' own dtype."""

    dtype: torch.dtype
    autocast: bool
    device_type: str = "cpu"

    @property
    def name(self) -> str:
        """``"float32"``, ``"bfloat16"`` (the weights' dtype) or ``"autocast-bfloat16"``."""
        return f"autocast-{_dtype_name(self.dtype)}" if self.autocast else _dtype_name(self.dtype)

    def context(self) -> torch.autocast:
        """Autocast in :attr:`dtype`, or autocast switched off (inside any outer one)."""
        if self.autocast:
            return torch.autocast(self.device_type, dtype=self.dtype)
        return torch.autocast(self.device_type, enabled=False)


def layout_tolerance(plain: torch.Tensor, noise: float | None, dtype: torch.dtype) -> float:
    """The largest error a layout's summed option log-probs may show against ``plain``, the
    plain per-option forwards in the compute precision ``dtype``.

    In fp32 it is 1e-3 of the largest sum (at least 1). Under 16-bit autocast over wider
    weights, ``noise`` is how far the layout's own sums move when autocast is switched off:
    this model's noise of the precision on this item, of which eight times is added. A model
    that ignores the packed rows' 4-D mask errs by far more than that (docs/benchmarks.md
    §9). With 16-bit weights there is nothing wider to measure the noise against, and 0.15 of
    the largest sum is allowed.
    """
    scale = max(1.0, float(plain.abs().max()))
    if dtype in (torch.float32, torch.float64):
        return 1e-3 * scale
    if noise is None:
        return 0.15 * scale
    return 1e-3 * scale + 8 * noise


def wrapped_autocast(model: torch.nn.Module) -> torch.autocast | None:
    """The enabled ``torch.autocast`` a model's ``forward`` is decorated with, if any.

    accelerate's ``prepare`` under ``mixed_precision`` replaces ``model.forward`` with the
    original decorated by a ``torch.autocast`` (inside a wrapper that casts outputs to fp32);
    the decorators keep the function they wrap in ``__wrapped__`` and the autocast in their
    closure.
    """
    func: Any = getattr(model, "forward", None)
    for _ in range(8):
        func = getattr(func, "__func__", func)
        for cell in getattr(func, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, torch.autocast) and value._enabled:
                return value
        func = getattr(func, "__wrapped__", None) or getattr(func, "model_forward", None)
        if func is None:
            return None
    return None


def _parse(value: str | None, where: str) -> torch.dtype | bool | None:
    """``"bf16"``/``"fp16"`` → a dtype; ``"off"`` → False; ``None``/``"auto"`` → None."""
    if value is None or value == "auto":
        return None
    if value == "off":
        return False
    if value in _DTYPES:
        return _DTYPES[value]
    raise ConfigError(f"{where}: expected auto, off, bf16 or fp16, found {value!r}")


def detect_compute(
    model: torch.nn.Module, autocast: str | None = None, *, hint: str | None = None
) -> Compute:
    """The precision the model's forward computes in now.

    In order: ``autocast`` when set (``"bf16"``, ``"fp16"`` or ``"off"``); an active
    ``torch.autocast`` on the weights' device; an autocast-decorated ``forward``
    (accelerate); ``hint``, the training framework's mixed precision (``"bf16"``/``"fp16"``,
    from the Trainer's arguments or Lightning's precision plugin), where the weights are wider
    than it; else the weights' own dtype.
    """
    parameter = next(model.parameters())
    device_type = parameter.device.type
    weights = Compute(parameter.dtype, False, device_type)
    chosen = _parse(autocast, "autocast")
    if chosen is False:
        return weights
    if isinstance(chosen, torch.dtype):
        return Compute(chosen, True, device_type)
    if torch.is_autocast_enabled(device_type):
        return Compute(torch.get_autocast_dtype(device_type), True, device_type)
    decorated = wrapped_autocast(model)
    if decorated is not None and decorated.device == device_type:
        return Compute(decorated.fast_dtype, True, device_type)
    framework = _parse(hint, "the framework's precision")
    if isinstance(framework, torch.dtype) and parameter.dtype.itemsize > framework.itemsize:
        return Compute(framework, True, device_type)
    return weights

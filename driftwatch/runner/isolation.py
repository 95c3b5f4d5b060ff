"""State isolation: a probe round changes nothing about the model it does not put back.

:func:`preserved_state` puts the model in eval mode for probing and restores, even when the
round fails: the train/eval mode of every module, ``config.use_cache``, gradient (activation)
checkpointing, and the Python, NumPy, CPU and CUDA random number generator states. So a run
with the monitor in warn mode trains bit for bit as it would without it.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["preserved_state"]


@contextlib.contextmanager
def preserved_state(model: torch.nn.Module) -> Iterator[None]:
    """Put the model in eval mode for probing and restore everything a probe round touches."""
    modes = [(m, m.training) for m in model.modules()]
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    checkpointing = _checkpointing(model)
    py_state = random.getstate()
    np_state = _numpy_state()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        if config is not None and use_cache is not None:
            config.use_cache = use_cache
        if checkpointing is not None and _checkpointing(model) != checkpointing:
            verb = "enable" if checkpointing else "disable"
            for prefix in ("activation", "gradient"):
                toggle = getattr(model, f"{prefix}_checkpointing_{verb}", None)
                if toggle is not None:
                    toggle()
                    break
        random.setstate(py_state)
        if np_state is not None:
            import numpy as np

            np.random.set_state(np_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _checkpointing(model: torch.nn.Module) -> bool | None:
    """Gradient (activation) checkpointing state, under its transformers 5 or 4 name."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        # on the instance: a PEFT wrapper forwards the attribute to the model it wraps
        value = getattr(model, name, None)
        if value is not None:
            return bool(value)
    return None


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:
        return None
    return np.random.get_state()

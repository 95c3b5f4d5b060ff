"""Short greedy generation scored by a verifier (see :mod:`driftwatch.probes.verifiers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from driftwatch.probes.verifiers import run_check

__all__ = ["score"]


def score(texts: Sequence[str], checks: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """``score`` (1.0 when the generated text passes its check), ``(N,)``."""
    passed = [float(run_check(check, text)) for text, check in zip(texts, checks, strict=True)]
    return {"score": torch.tensor(passed, dtype=torch.float64)}

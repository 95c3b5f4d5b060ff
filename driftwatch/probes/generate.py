"""Short greedy generation scored by a verifier (see :mod:`driftwatch.probes.verifiers`).

Every generated text also yields its style statistics (:mod:`driftwatch.probes.style`):
``words`` and ``formatted``. An item without a check has no ``score`` (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from driftwatch.probes.style import uses_formatting, word_count
from driftwatch.probes.verifiers import run_check

__all__ = ["score"]


def score(
    texts: Sequence[str], checks: Sequence[Mapping[str, Any] | None]
) -> dict[str, torch.Tensor]:
    r"""Per-item ``score`` (1.0 pass, 0.0 fail, NaN without a check), ``words`` and
    ``formatted``, each ``(N,)`` float64.

    Example:
        >>> out = score(["- a\n- b", "plain"], [{"type": "bullet_count", "min": 2}, None])
        >>> out["score"].tolist(), out["words"].tolist(), out["formatted"].tolist()
        ([1.0, nan], [4.0, 1.0], [1.0, 0.0])
    """
    passed = [
        float("nan") if check is None else float(run_check(check, text))
        for text, check in zip(texts, checks, strict=True)
    ]
    return {
        "score": torch.tensor(passed, dtype=torch.float64),
        "words": torch.tensor([float(word_count(t)) for t in texts], dtype=torch.float64),
        "formatted": torch.tensor([float(uses_formatting(t)) for t in texts], dtype=torch.float64),
    }

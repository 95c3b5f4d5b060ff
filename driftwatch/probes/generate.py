"""Short greedy generation scored by a verifier (see :mod:`driftwatch.probes.verifiers`).

Every generated text also yields its style statistics (:mod:`driftwatch.probes.style`):
``words`` and ``formatted``. An item without a check has no ``score`` (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftwatch.metrics import CONSISTENCY
from driftwatch.probes.base import Generate, GenerateOutput, ProbeKind
from driftwatch.probes.style import uses_formatting, word_count
from driftwatch.probes.verifiers import run_check, validate_check

if TYPE_CHECKING:
    import torch

    from driftwatch.items import ProbeItem
    from driftwatch.runner.encoding import Encoder

__all__ = ["GenerateKind", "score"]


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
    import torch

    passed = [
        float("nan") if check is None else float(run_check(check, text))
        for text, check in zip(texts, checks, strict=True)
    ]
    return {
        "score": torch.tensor(passed, dtype=torch.float64),
        "words": torch.tensor([float(word_count(t)) for t in texts], dtype=torch.float64),
        "formatted": torch.tensor([float(uses_formatting(t)) for t in texts], dtype=torch.float64),
    }


class GenerateKind(ProbeKind):
    """``prompt``, optional ``check`` (a verifier) and ``max_new_tokens``."""

    name = "generate"
    required = ("prompt",)
    optional = ("check", "max_new_tokens")
    metrics = ("score", "words", "formatted")

    def check(self, item: Mapping[str, Any]) -> list[tuple[str, str]]:
        return validate_check(item["check"]) if "check" in item else []

    def capability_problems(self, metric: str, items: Sequence[ProbeItem]) -> list[str]:
        unchecked = [i.id for i in items if i.check is None]
        if metric not in ("score", CONSISTENCY) or not unchecked:
            return []
        return [
            f"metric {metric!r} needs a check on every generate item; {len(unchecked)} have "
            f"none (first: {unchecked[0]!r}). Give them a 'check' or use the metric 'words' "
            "or 'formatted'"
        ]

    def request(self, item: ProbeItem, encoder: Encoder) -> Generate:
        return Generate(encoder.prompt(item)[0], item.max_new_tokens)

    def score(
        self, items: Sequence[ProbeItem], outputs: Sequence[GenerateOutput]
    ) -> dict[str, torch.Tensor]:
        return score([o.text for o in outputs], [item.check for item in items])

"""Log-likelihood and greedy exact match of one target continuation (cloze).

Greedy exact match is read off the same teacher-forced forward pass: greedy decoding
reproduces the target exactly when, at every target position, the argmax token is the target
token. So no generation is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftwatch.probes.base import ItemProblem, Loglik, LoglikOutput, ProbeKind

if TYPE_CHECKING:
    import torch

    from driftwatch.items import ProbeItem
    from driftwatch.runner.encoding import Encoder

__all__ = ["TargetKind", "score"]


def score(
    logprob_sum: torch.Tensor, n_tokens: torch.Tensor, n_mismatch: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-item metrics: ``score`` (greedy exact match, 0/1) and ``logprob`` (mean per token).

    All arguments are ``(N,)``: summed target log-prob, target length in tokens, and the
    number of target positions where the argmax differs from the target token.
    """
    import torch

    return {
        "score": (n_mismatch == 0).to(torch.float64),
        "logprob": (logprob_sum / n_tokens.to(logprob_sum.dtype)).to(torch.float64),
    }


class TargetKind(ProbeKind):
    """``prompt`` and ``target``: the continuation whose likelihood and greedy match count."""

    name = "target"
    required = ("prompt", "target")
    metrics = ("score", "logprob")

    def request(self, item: ProbeItem, encoder: Encoder) -> Loglik:
        prompt, moved = encoder.prompt(item)
        target = encoder.continuation(moved + (item.target or ""))
        if not prompt:
            raise ItemProblem("prompt", "tokenises to no tokens")
        if not target:
            raise ItemProblem("target", "tokenises to no tokens")
        return Loglik(prompt, [target])

    def score(
        self, items: Sequence[ProbeItem], outputs: Sequence[LoglikOutput]
    ) -> dict[str, torch.Tensor]:
        import torch

        return score(
            torch.cat([o.logprobs for o in outputs]),
            torch.cat([o.lengths for o in outputs]),
            torch.cat([o.mismatches for o in outputs]),
        )

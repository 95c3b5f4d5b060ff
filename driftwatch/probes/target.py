"""Log-likelihood and greedy exact match of one target continuation (cloze).

Greedy exact match is read off the same teacher-forced forward pass: greedy decoding
reproduces the target exactly when, at every target position, the argmax token is the target
token. So no generation is needed.
"""

from __future__ import annotations

import torch

__all__ = ["score"]


def score(
    logprob_sum: torch.Tensor, n_tokens: torch.Tensor, n_mismatch: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-item metrics: ``score`` (greedy exact match, 0/1) and ``logprob`` (mean per token).

    All arguments are ``(N,)``: summed target log-prob, target length in tokens, and the
    number of target positions where the argmax differs from the target token.
    """
    return {
        "score": (n_mismatch == 0).to(torch.float64),
        "logprob": (logprob_sum / n_tokens.to(logprob_sum.dtype)).to(torch.float64),
    }

"""Multiple choice by log-likelihood: each option is scored as a continuation of the prompt.

The prediction is the option with the highest summed log-probability (lm-evaluation-harness's
``acc``); ``gold_logprob`` is the gold option's mean per-token log-probability, a smooth
signal that moves before accuracy flips.
"""

from __future__ import annotations

import torch

__all__ = ["score"]


def score(
    option_logprobs: torch.Tensor, option_lengths: torch.Tensor, answer: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-item metrics from option log-likelihoods.

    Args:
        option_logprobs: ``(N, O)`` summed log-prob of each option; ``-inf`` pads items with
            fewer than ``O`` options.
        option_lengths: ``(N, O)`` number of tokens of each option (1 for padding).
        answer: ``(N,)`` index of the gold option.

    Returns:
        ``score`` (1.0 when the gold option ranks first) and ``gold_logprob``, each ``(N,)``.
    """
    predicted = option_logprobs.argmax(dim=1)
    gold = option_logprobs.gather(1, answer[:, None])[:, 0]
    gold_len = option_lengths.gather(1, answer[:, None])[:, 0].to(gold.dtype)
    return {
        "score": (predicted == answer).to(torch.float64),
        "gold_logprob": (gold / gold_len).to(torch.float64),
    }

"""Multiple choice by log-likelihood: each option is scored as a continuation of the prompt.

The prediction is the option with the highest summed log-probability (lm-evaluation-harness's
``acc``); ``gold_logprob`` is the gold option's mean per-token log-probability, a smooth
signal that moves before accuracy flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftwatch.probes.base import ItemProblem, Loglik, LoglikOutput, ProbeKind

if TYPE_CHECKING:
    import torch

    from driftwatch.items import ProbeItem
    from driftwatch.runner.encoding import Encoder

__all__ = ["ChoiceKind", "score"]


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
    import torch

    predicted = option_logprobs.argmax(dim=1)
    gold = option_logprobs.gather(1, answer[:, None])[:, 0]
    gold_len = option_lengths.gather(1, answer[:, None])[:, 0].to(gold.dtype)
    return {
        "score": (predicted == answer).to(torch.float64),
        "gold_logprob": (gold / gold_len).to(torch.float64),
    }


def _table(outputs: Sequence[LoglikOutput]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, O)`` option log-probs (``-inf`` padded) and lengths (1 padded)."""
    import torch

    width = max((o.logprobs.numel() for o in outputs), default=0)
    logprobs = torch.full((len(outputs), width), float("-inf"), dtype=torch.float64)
    lengths = torch.ones((len(outputs), width), dtype=torch.long)
    for row, out in enumerate(outputs):
        logprobs[row, : out.logprobs.numel()] = out.logprobs
        lengths[row, : out.lengths.numel()] = out.lengths
    return logprobs, lengths


class ChoiceKind(ProbeKind):
    """``prompt``, ``choices`` (≥ 2, distinct), ``answer`` (the gold option's index)."""

    name = "choice"
    required = ("prompt", "choices", "answer")
    metrics = ("score", "gold_logprob")

    def check(self, item: Mapping[str, Any]) -> list[tuple[str, str]]:
        choices = item["choices"]
        if len(choices) < 2:
            return [("choices", f"expected at least 2 options, found {len(choices)}")]
        if not all(isinstance(c, str) and c.strip() for c in choices):
            return [("choices", "expected non-empty strings")]
        if len(set(choices)) != len(choices):
            return [("choices", "options must differ from each other")]
        if not 0 <= item["answer"] < len(choices):
            last = len(choices) - 1
            return [("answer", f"expected an index in 0..{last}, found {item['answer']}")]
        return []

    def request(self, item: ProbeItem, encoder: Encoder) -> Loglik:
        prompt, moved = encoder.prompt(item)
        options = [encoder.continuation(moved + option) for option in item.choices]
        if not prompt:
            raise ItemProblem("prompt", "tokenises to no tokens")
        if any(not option for option in options):
            raise ItemProblem("choices", "tokenises to no tokens")
        return Loglik(prompt, options)

    def score(
        self, items: Sequence[ProbeItem], outputs: Sequence[LoglikOutput]
    ) -> dict[str, torch.Tensor]:
        import torch

        logprobs, lengths = _table(outputs)
        return score(logprobs, lengths, torch.tensor([item.answer or 0 for item in items]))

    def records(
        self, items: Sequence[ProbeItem], outputs: Sequence[LoglikOutput]
    ) -> dict[str, torch.Tensor]:
        """``option_logprobs``: ``(N_choice, max options)`` float32, ``-inf`` padded."""
        return {"option_logprobs": _table(outputs)[0].float()}

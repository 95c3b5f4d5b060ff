"""Next-token distribution drift against the base model's cached top-k.

The reference keeps, for every position of every distribution text, the base model's top-k
log-probabilities and their token ids. KL(base ‖ now) is computed over k + 1 outcomes: the
k base tokens and the "tail" (all other tokens together). That is the KL between the two
distributions coarse-grained to those outcomes, so it is never more than the full KL, it is
exactly 0 when the model is unchanged, and it needs only ``k`` numbers per position on disk.
"""

from __future__ import annotations

import torch

__all__ = ["kl_against_topk", "record_topk"]


def _log1mexp(logp: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(logp)) for log-probabilities of a set's mass, stable near 0 and -inf."""
    logp = logp.clamp(max=-1e-12)
    return torch.where(logp > -0.6931, torch.log(-torch.expm1(logp)), torch.log1p(-torch.exp(logp)))


def record_topk(logprobs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``(P, V)`` log-probabilities: ``(P, k)`` float32 values and int32 ids."""
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
    return values.float(), ids.to(torch.int32)


def kl_against_topk(
    logprobs: torch.Tensor, base_values: torch.Tensor, base_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position KL(base ‖ now) in nats and top-1 agreement.

    Args:
        logprobs: ``(P, V)`` the current model's log-probabilities (float32).
        base_values: ``(P, k)`` the base model's top-k log-probabilities.
        base_ids: ``(P, k)`` their token ids.

    Returns:
        ``kl`` ``(P,)`` (≥ 0) and ``top1`` ``(P,)`` (1.0 where the current argmax is the base's
        most likely token).
    """
    now = logprobs.gather(1, base_ids.long())  # (P, k)
    base = base_values.to(now.dtype)
    p_base = base.exp()
    tail_base = _log1mexp(torch.logsumexp(base, dim=1))
    tail_now = _log1mexp(torch.logsumexp(now, dim=1))
    kl = (p_base * (base - now)).sum(dim=1) + tail_base.exp() * (tail_base - tail_now)
    top1 = (logprobs.argmax(dim=1) == base_ids[:, 0].long()).to(torch.float64)
    return kl.clamp(min=0.0).to(torch.float64), top1

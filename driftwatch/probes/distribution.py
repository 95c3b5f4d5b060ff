"""Next-token distribution drift against the base model's cached top-k.

The reference keeps, for every position of every distribution text, the base model's top-k
log-probabilities and their token ids. KL(base ‖ now) is computed over k + 1 outcomes: the
k base tokens and the "tail" (all other tokens together). That is the KL between the two
distributions coarse-grained to those outcomes, so it is never more than the full KL, it is
exactly 0 when the model is unchanged, and it needs only ``k`` numbers per position on disk.

An item is either a fixed ``text`` (every position after the first is scored) or a ``prompt``
whose base reply is generated once, when the reference is built, and kept in it; every later
round measures the current model's distributions along that reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftwatch.probes.base import (
    DistributionOutput,
    ItemProblem,
    ProbeKind,
    ReplyDistribution,
    TextDistribution,
)

if TYPE_CHECKING:
    import torch

    from driftwatch.items import ProbeItem
    from driftwatch.runner.encoding import Encoder

__all__ = ["DistributionKind", "kl_against_topk", "record_topk"]


def _log1mexp(logp: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(logp)) for log-probabilities of a set's mass, stable near 0 and -inf."""
    import torch

    logp = logp.clamp(max=-1e-12)
    return torch.where(logp > -0.6931, torch.log(-torch.expm1(logp)), torch.log1p(-torch.exp(logp)))


def record_topk(logprobs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``(P, V)`` log-probabilities: ``(P, k)`` float32 values and int32 ids."""
    import torch

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
        ``kl`` ``(P,)`` (≥ 0) and ``top1`` ``(P,)`` (1.0 where the base's most likely token is
        the current model's most likely, or tied with it: in 16-bit compute exact ties are
        common, and which of the tied tokens an argmax or a top-k returns is arbitrary).
    """
    import torch

    now = logprobs.gather(1, base_ids.long())  # (P, k)
    base = base_values.to(now.dtype)
    p_base = base.exp()
    tail_base = _log1mexp(torch.logsumexp(base, dim=1))
    tail_now = _log1mexp(torch.logsumexp(now, dim=1))
    kl = (p_base * (base - now)).sum(dim=1) + tail_base.exp() * (tail_base - tail_now)
    top1 = (now[:, 0] >= logprobs.max(dim=1).values).to(torch.float64)
    return kl.clamp(min=0.0).to(torch.float64), top1


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.sum() / values.numel()


class DistributionKind(ProbeKind):
    """Exactly one of ``text`` (a fixed text) or ``prompt`` (with ``max_new_tokens``)."""

    name = "distribution"
    optional = ("prompt", "text", "max_new_tokens")
    metrics = ("kl", "top1_agreement")
    default_metric = "kl"

    def check(self, item: Mapping[str, Any]) -> list[tuple[str, str]]:
        if ("text" in item) == ("prompt" in item):
            return [
                (
                    "text",
                    "expected exactly one of 'text' (a fixed text) or 'prompt' (a prompt whose "
                    "base continuation is recorded in the reference)",
                )
            ]
        if "text" in item:
            return [
                (key, "only used with a 'prompt'; a fixed 'text' is read as is")
                for key in ("chat", "history", "max_new_tokens")
                if key in item
            ]
        return []

    def request(self, item: ProbeItem, encoder: Encoder) -> TextDistribution | ReplyDistribution:
        if item.prompt is not None:
            return ReplyDistribution(encoder.prompt(item)[0], item.max_new_tokens)
        tokens = encoder.text(item.text or "")
        if len(tokens) < 2:
            raise ItemProblem("text", "needs at least 2 tokens")
        return TextDistribution(tokens)

    def score(
        self, items: Sequence[ProbeItem], outputs: Sequence[DistributionOutput]
    ) -> dict[str, torch.Tensor]:
        import torch

        return {
            "kl": torch.stack([_mean(o.kl) for o in outputs]).double(),
            "top1_agreement": torch.stack([_mean(o.top1) for o in outputs]).double(),
        }

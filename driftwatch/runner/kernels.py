"""The forward kernels: one batch of a layout through the model, log-probabilities out.

:func:`score_batch` runs a :class:`~driftwatch.runner.layout.Batch` (packed or concatenated
rows) or a :class:`~driftwatch.runner.layout.CachedBatch` (prompts once with a KV cache, then
the options) and hands the float32 log-probabilities at the batch's scored positions to a
consumer, a chunk at a time. Where logits are a plain projection of the last hidden state,
only the scored positions go through the output head (the full-vocabulary projection is a
large share of a small model's forward: about a fifth of SmolLM2-135M's, see
docs/benchmarks.md), and the log-softmax is taken in place, so one ``(m, V)`` buffer is all
the head ever holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import torch

from driftwatch.memory import Budget
from driftwatch.runner.layout import Batch, CachedBatch, Layout
from driftwatch.sharding import is_sharded

__all__ = ["Consume", "continuation_logprobs", "discard", "mask4d", "score_batch"]

# receives one chunk of u scored positions and the m queries read from them: (log-probs
# (u, V), owners (m,): the row each query reads, next tokens (m,), slots (m,)); distribution
# queries are one per position, so for them owners is arange(u) and rows align with slots
Consume = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
# Model configs whose output head does more than a linear projection (soft-capping, scaling):
# for those the runner uses the model's own forward instead of backbone + lm_head.
_HEAD_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_mult")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _head_split(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, output head) when logits are a plain projection of the last hidden state."""
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_MODIFIERS):
        return None
    if is_sharded(model):
        # FSDP2 gathers the root's parameters (the head's among them) in the model's own
        # forward: called apart, the head would multiply by a shard
        return None
    get_decoder = getattr(model, "get_decoder", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        backbone, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError):
        return None
    if (
        not isinstance(backbone, torch.nn.Module)
        or not isinstance(head, torch.nn.Linear)
        or backbone is model
    ):
        return None
    return backbone, head


def mask4d(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) additive mask: a token sees the prompt and earlier tokens of its option."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    keys, queries = segments[:, None, :], segments[:, :, None]
    allowed = causal & (keys >= 0) & ((keys == 0) | (keys == queries))
    # padding attends to itself, so no query row is fully masked (SDPA would return NaN)
    allowed |= torch.eye(width, dtype=torch.bool, device=segments.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def score_batch(
    model: torch.nn.Module,
    batch: Batch | CachedBatch,
    layout: Layout,
    budget: Budget,
    consume: Consume,
    *,
    normalise: bool = True,
) -> None:
    """Float32 log-probabilities at the batch's scored positions, handed to ``consume`` in
    chunks of positions with the queries that read them (see :data:`Consume`); with
    ``normalise=False`` the float32 logits instead (for argmax and margins, which the
    log-softmax does not change).

    Only the scored positions go through the output head, ``budget.head_rows`` at a time; the
    log-softmax is taken in place, and a chunk is released before the next one is computed,
    so one ``(m, V)`` buffer is all the head ever holds (``consume`` must not keep it).
    """
    split = _head_split(model)
    net = split[0] if split is not None else model
    if isinstance(batch, CachedBatch):
        flat = _cached_outputs(net, batch, hidden=split is not None)
    else:
        attention = (
            mask4d(batch.segments, _model_dtype(model))
            if layout == "packed"
            else (batch.segments >= 0).long()
        )
        out = net(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            attention_mask=attention,
            use_cache=False,
        )
        del attention
        flat = _flatten(out, hidden=split is not None)
        del out
    vocab = flat.shape[-1] if split is None else cast(torch.nn.Linear, split[1]).out_features
    chunk = budget.head_rows(vocab)
    scored = batch.scored
    positions = len(scored.starts) - 1
    for lo in range(0, positions, chunk):
        hi = min(lo + chunk, positions)
        rows = flat[scored.gather[lo:hi]]  # indexing copies: flat is left alone
        if split is not None:
            rows = split[1](rows)
        rows = _log_softmax_(rows.float()) if normalise else rows.float()
        first, last = scored.starts[lo], scored.starts[hi]
        consume(
            rows,
            scored.owners[first:last] - lo,
            scored.targets[first:last],
            scored.slots[first:last],
        )
        del rows


# rows per logsumexp call: its temporary is this many rows of the vocabulary, not a chunk
_LSE_ROWS = 16


def _log_softmax_(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` turned into log-probabilities in place, with a temporary of a few rows."""
    for block in logits.split(_LSE_ROWS):
        block -= block.logsumexp(-1, keepdim=True)
    return logits


def _flatten(output: Any, *, hidden: bool) -> torch.Tensor:
    values = output.last_hidden_state if hidden else output.logits
    return values.reshape(-1, values.shape[-1])


def _cached_outputs(net: torch.nn.Module, batch: CachedBatch, *, hidden: bool) -> torch.Tensor:
    """Prompt pass with a KV cache, the cache re-indexed per option, then the option pass."""
    width = batch.prompt_ids.shape[1]
    positions = torch.arange(width, device=batch.prompt_ids.device).expand_as(batch.prompt_ids)
    first = net(
        input_ids=batch.prompt_ids,
        attention_mask=batch.prompt_mask,
        position_ids=positions,
        use_cache=True,
    )
    # transformers 5 calls the cache `cache`; 4.x called it `past_key_values`
    cache = getattr(first, "cache", None) or first.past_key_values
    cache.batch_select_indices(batch.expand)
    name = _cache_argument(net)
    second = net(
        input_ids=batch.option_ids,
        attention_mask=torch.cat([batch.prompt_mask[batch.expand], batch.option_mask], dim=1),
        position_ids=batch.option_positions,
        use_cache=True,
        **{name: cache},
    )
    return torch.cat([_flatten(first, hidden=hidden), _flatten(second, hidden=hidden)])


def continuation_logprobs(
    model: torch.nn.Module, batch: Batch | CachedBatch, layout: Layout, count: int, first: int
) -> torch.Tensor:
    """``(count,)`` summed log-probabilities of the continuations ``first…first+count-1``."""
    got = torch.zeros(count, dtype=torch.float64, device=batch.scored.gather.device)

    def add(
        lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
    ) -> None:
        got.index_add_(0, slots - first, lp[owners, targets].double())

    score_batch(model, batch, layout, Budget(1 << 30), add)
    return got


def discard(
    lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
) -> None:
    """A consumer that keeps nothing (a rank's dummy passes, memory measurements)."""


def _cache_argument(net: torch.nn.Module) -> str:
    """The forward's name for the cache: ``cache`` from transformers 5.24 on (its old name
    ``past_key_values`` warns), else ``past_key_values``. Read along the class hierarchy, so
    a subclass whose ``forward(*args, **kwargs)`` passes on to the model's is named alike."""
    for cls in type(net).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        params = inspect.signature(forward).parameters
        if "cache" in params:
            return "cache"
        if "past_key_values" in params:
            return "past_key_values"
    return "past_key_values"

"""Greedy decoding of generation batches with ``model.generate``.

Prompts are left-padded and batched (:func:`driftwatch.runner.layout.generation_batches`);
items with different budgets share a batch, which decodes to its longest budget, and each
reply is cut to its own budget and at its first end-of-sequence token afterwards. A logits
processor notes the rows whose scores were ever NaN or inf, without changing or syncing
anything. In a process group each rank decodes its share of the batches, always for the
longest budget of all (no early stop at end-of-sequence, so every rank makes the same number
of forward passes), and the token ids are gathered so every rank sees every reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from driftwatch.distributed import agree, agree_max, process_group, share
from driftwatch.runner.layout import GenBatch
from driftwatch.sharding import generating

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["Decoded", "greedy_replies"]


@dataclass
class Decoded:
    """Greedy replies by prompt ordinal, where their scores went non-finite, and the forward
    passes this rank ran for them."""

    replies: list[list[int]]
    bad: torch.Tensor  # (count,) bool
    steps: int = 0


class _FiniteWatch:
    """A logits processor that notes the rows whose next-token scores were ever NaN or inf.

    It changes nothing and syncs nothing: the flags stay on the device until the batch ends.
    """

    def __init__(self, rows: int, device: torch.device) -> None:
        self.bad = torch.zeros(rows, dtype=torch.bool, device=device)
        self.steps = 0  # forward passes of the call (the prompt pass is the first)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.bad |= ~torch.isfinite(scores).all(dim=-1)
        self.steps += 1
        return scores


def greedy_replies(
    model: PreTrainedModel,
    batches: Sequence[GenBatch],
    count: int,
    *,
    pad_id: int,
    eos_ids: Sequence[int],
    device: torch.device,
) -> Decoded:
    """The greedy reply to each of ``count`` prompts (by the ordinals in ``batch.items``) and
    a ``(count,)`` bool tensor, True where the scores were non-finite while decoding it."""
    bad = torch.zeros(count, dtype=torch.long, device=device)
    if not batches:
        return Decoded([[] for _ in range(count)], bad.bool().cpu())
    width = max(b.max_new_tokens for b in batches)
    gathered = torch.full((count, width), -1, dtype=torch.long, device=device)
    error: Exception | None = None
    steps = 0
    try:
        steps = _decode_share(model, batches, gathered, bad, pad_id=pad_id, eos_ids=eos_ids)
    except Exception as err:  # every rank must hear of it before the collectives below
        error = err
    agree(error, device)
    agree_max(gathered)
    agree_max(bad)
    replies = [_until_eos([t for t in ids if t >= 0], eos_ids) for ids in gathered.tolist()]
    return Decoded(replies, bad.bool().cpu(), steps)


def _decode_share(
    model: PreTrainedModel,
    batches: Sequence[GenBatch],
    gathered: torch.Tensor,
    bad: torch.Tensor,
    *,
    pad_id: int,
    eos_ids: Sequence[int],
) -> int:
    """Decode this rank's batches into ``gathered`` (token ids, -1 padded) and ``bad``
    (non-finite scores seen), both indexed by prompt ordinal; the forward passes run."""
    from transformers import GenerationConfig, LogitsProcessorList

    world = process_group()[1]
    width = gathered.shape[1]
    steps = 0
    for batch, dummy in share(batches):
        config = GenerationConfig(
            # in a group every batch decodes the longest budget: equal passes on every rank
            max_new_tokens=batch.max_new_tokens if world == 1 else width,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_id,
            # [] rather than None: None would fall back to the model's own end-of-sequence id
            eos_token_id=(list(eos_ids) or None) if world == 1 else [],
            use_cache=True,
        )
        watch = _FiniteWatch(batch.input_ids.shape[0], batch.input_ids.device)
        with generating(model) as net:  # FSDP1: the root's shards gathered
            sequences = net.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([watch]),
            )
        steps += watch.steps
        if dummy:
            continue
        new = sequences[:, batch.input_ids.shape[1] :][:, : batch.max_new_tokens]
        for row, limit in enumerate(batch.budgets):  # each row stops at its own budget
            new[row, limit:] = -1
        rows = torch.tensor(batch.items, device=new.device)
        gathered[rows, : new.shape[1]] = new
        bad[rows] = watch.bad.long()
    return steps


def _until_eos(ids: Sequence[int], eos_ids: Sequence[int]) -> list[int]:
    for n, tok in enumerate(ids):
        if tok in eos_ids:
            return list(ids[:n])
    return list(ids)

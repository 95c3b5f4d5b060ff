"""Greedy replies verified against the base model's recorded replies (speculative decoding
with the reference's reply as the draft).

One teacher-forced pass over prompt + base reply gives the current model's greedy choice at
every reply position. Where it agrees at every position, and chooses end-of-sequence where the
base reply stopped before its budget, greedy decoding would reproduce the base reply: nothing
is decoded. Where it first differs, at position j, the reply is the draft's first j tokens and
the model's own token at j, and greedy decoding continues from there (the prompt and that
prefix prefilled again; see docs/benchmarks.md for why no KV cache is cut). So the replies are
those of greedy decoding, at the cost of one forward pass for an unchanged item.

Exactness: the verification pass and token-by-token decoding compute the same logits in a
different order, so they agree only within float noise. In fp32 an item whose top-2 log-prob
margin is below :func:`near_tie` at any position up to its first divergence is decoded the
plain way, token by token from that position on (what precedes it is settled): a near-tie can
never change a reply silently. In 16-bit compute (bf16/fp16 weights or autocast) the noise is
~0.1 in a logit and greedy decoding itself picks either side of a near-tie depending on the
batch it runs in, so there the draft's token is kept wherever it is within :func:`near_tie` of
the model's best (an unchanged model reproduces its reference exactly); decoding token by
token is left for non-finite scores and for a divergence whose own choice is a near-tie.
Items with a near-tie are counted either way (in 16-bit compute an item kept on its draft
through a near-tie counts as matched, and as a near-tie).

In a process group each rank verifies its share of the passes (with dummy passes, equal on
every rank), the results are gathered, and every rank then continues the same items
(:func:`~driftwatch.runner.decoding.greedy_replies` keeps the decode steps equal).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from driftwatch.distributed import agree, process_group, share, sum_into_all
from driftwatch.errors import DriftwatchError
from driftwatch.runner.decoding import Decoded, greedy_replies
from driftwatch.runner.kernels import discard, score_batch
from driftwatch.runner.layout import (
    Batch,
    Row,
    common_prefix,
    draft_row,
    generation_batches,
    pack_rows,
    shared_prefix_rows,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from driftwatch.memory import Budget
    from driftwatch.runner.compiler import CompiledSuite
    from driftwatch.runner.layout import Layout

__all__ = ["DraftPlan", "draft_replies", "near_tie", "plan_drafts"]

_WIDE = (torch.float32, torch.float64)  # float types without 16-bit rounding noise
# tokens of a packed verification row: wide enough to hold several items behind one copy of
# their shared prefix, narrow enough that attention over the row stays a small share
ROW_WIDTH = 256


def near_tie(dtype: torch.dtype) -> float:
    """The top-2 log-prob margin under which a verified position counts as a near-tie.

    Batch layouts differ by up to 2.2e-5 in a float32 log-prob (docs/suites.md, the noise
    floor). Under bf16 autocast the logits come out of the head in bf16, in steps of 0.125 to
    0.25 at SmolLM2's magnitudes, and the verification pass's best token led the base's
    recorded one by up to 0.25 on the unchanged model (docs/benchmarks.md §9); the margins
    leave a berth of twice that or more.
    """
    return 1e-3 if dtype in _WIDE else 0.5


@dataclass
class DraftPlan:
    """The verification of a compiled suite's generate items against base replies.

    It also remembers, from each round's replies, which items still follow their draft: an
    item whose last reply differs from its draft within the first quarter of it (the model
    has moved away from the base's reply there) is decoded plainly the next round, without
    a verification pass it would waste; once its reply keeps to the draft again (after a
    rollback, say), it is verified again.
    """

    drafts: list[list[int]]  # the base reply of each generate item (by ordinal)
    offsets: list[int]  # first slot of each item's scored positions, then the total
    targets: torch.Tensor  # (S,) the draft's token at each slot (end-of-sequence at a stop)
    rows: list[Row]  # each item's verification row
    tolerance: float  # near-tie margin
    layout: Layout
    budget: Budget
    pad_id: int
    device: torch.device
    follows: list[bool] = field(default_factory=list)  # verify the item this round
    # 16-bit compute: keep the draft's token where it is within a near-tie of the best
    keep_ties: bool = False
    _laid_out: tuple[tuple[int, ...], list[Batch]] | None = None

    def __post_init__(self) -> None:
        if not self.follows:
            self.follows = [True] * len(self.drafts)

    def batches(self) -> tuple[list[int], list[Batch]]:
        """The items verified this round (ordinals) and their passes."""
        chosen = tuple(i for i, follows in enumerate(self.follows) if follows)
        if self._laid_out is None or self._laid_out[0] != chosen:
            rows = [self.rows[i] for i in chosen if self.rows[i][3]]
            if self.layout == "packed":  # several items to a row, a shared system prompt once
                rows = shared_prefix_rows(rows, ROW_WIDTH)
            self._laid_out = (chosen, pack_rows(rows, self.budget, self.pad_id, self.device))
        return list(chosen), self._laid_out[1]

    def learn(self, replies: Sequence[Sequence[int]]) -> None:
        """Note which items' replies still keep to their drafts (for the next round)."""
        for ordinal, (reply, draft) in enumerate(zip(replies, self.drafts, strict=True)):
            shared = common_prefix(list(reply), draft)
            self.follows[ordinal] = list(reply) == draft or 4 * shared > len(draft)


def plan_drafts(
    compiled: CompiledSuite, replies: Sequence[Sequence[int]], dtype: torch.dtype
) -> DraftPlan:
    """Lay out the verification of ``compiled``'s generate items against ``replies`` (the
    base model's greedy replies, as a reference records them) for a model computing in
    ``dtype``.

    Raises:
        DriftwatchError: the count does not match the suite's generate items.
    """
    prompts = compiled.gen_prompts
    if len(replies) != len(prompts):
        raise DriftwatchError(
            f"the reference holds {len(replies)} base replies, the suite has {len(prompts)} "
            "generate items; rebuild the reference for this suite"
        )
    stop_id = compiled.eos_ids[0] if compiled.eos_ids else None
    rows: list[Row] = []
    drafts: list[list[int]] = []
    offsets, targets = [0], []
    for (prompt, budget, _), reply in zip(prompts, replies, strict=True):
        draft = list(reply)[:budget]
        stop = stop_id if len(draft) < budget else None
        row = draft_row(prompt, draft, stop, offsets[-1])
        rows.append(row)
        drafts.append(draft)
        targets += [target for _, target, _ in row[3]]
        offsets.append(offsets[-1] + len(row[3]))
    return DraftPlan(
        drafts=drafts,
        offsets=offsets,
        targets=torch.tensor(targets, dtype=torch.long),
        rows=rows,
        tolerance=near_tie(dtype),
        keep_ties=dtype not in _WIDE,
        layout=compiled.layout,
        budget=compiled.budget,
        pad_id=compiled.pad_id,
        device=compiled.device,
    )


@dataclass
class DraftOutcome:
    """What verification left for each item: a reply, and the prompt to decode on from."""

    replies: list[list[int]]
    resume: list[tuple[list[int], int, int]]  # (prompt + reply so far, budget left, ordinal)
    matched: int
    near_ties: int
    skipped: int = 0  # items not verified (their last reply left the draft early)


def draft_replies(
    model: PreTrainedModel, compiled: CompiledSuite, plan: DraftPlan
) -> tuple[Decoded, dict[str, float]]:
    """The greedy reply to every generate item of ``compiled`` (as
    :func:`~driftwatch.runner.decoding.greedy_replies` gives them) and the round's decode
    record: items matched, near-ties, items not verified, forward passes, seconds."""
    started = time.perf_counter()
    device = compiled.device
    n_slots = plan.offsets[-1]
    best = torch.zeros(n_slots, dtype=torch.long, device=device)
    margin = torch.zeros(n_slots, dtype=torch.float64, device=device)
    lag = torch.zeros(n_slots, dtype=torch.float64, device=device)  # best − the draft's token

    def verify(
        lp: torch.Tensor, owners: torch.Tensor, tokens: torch.Tensor, slots: torch.Tensor
    ) -> None:
        # the best two by two max passes: topk would allocate index buffers the size of
        # the chunk; a NaN anywhere in a row makes its max NaN, so non-finite rows show
        first, choice = lp.max(dim=1)
        lag[slots] = (first[owners] - lp[owners, tokens]).double()
        lp[torch.arange(len(lp), device=lp.device), choice] = -torch.inf  # ours to change
        gap = (first - lp.max(dim=1).values).double()
        best[slots] = choice[owners]
        margin[slots] = torch.where(torch.isfinite(gap), gap, torch.nan)[owners]

    verified, checks = plan.batches()
    error: Exception | None = None
    try:
        for batch, dummy in share(checks):
            consume = discard if dummy else verify
            # margins and argmax are the same in logits: no log-softmax needed
            score_batch(model, batch, compiled.layout, compiled.budget, consume, normalise=False)
    except Exception as err:  # every rank must hear of it before the collectives below
        error = err
    agree(error, device)
    sum_into_all([best, margin, lag])  # each slot was filled by exactly one rank
    outcome = _resolve(compiled, plan, best.cpu(), margin.cpu(), set(verified), lag.cpu())
    prompts = [(ids, left, k) for k, (ids, left, _) in enumerate(outcome.resume)]
    decoded = greedy_replies(
        model,
        generation_batches(prompts, compiled.budget, compiled.pad_id, device),
        len(outcome.resume),
        pad_id=compiled.pad_id,
        eos_ids=compiled.eos_ids,
        device=device,
    )
    replies = outcome.replies
    bad = torch.zeros(len(replies), dtype=torch.bool)
    for k, (_, _, ordinal) in enumerate(outcome.resume):
        replies[ordinal] = replies[ordinal] + decoded.replies[k]
        bad[ordinal] = bool(decoded.bad[k])
    plan.learn(replies)
    passes = -(-len(checks) // process_group()[1]) + decoded.steps
    record = {
        "decode_matched": float(outcome.matched),
        "decode_near_ties": float(outcome.near_ties),
        "decode_unverified": float(outcome.skipped),
        "decode_steps": float(passes),
        "decode_seconds": time.perf_counter() - started,
    }
    return Decoded(replies, bad, passes), record


def _resolve(
    compiled: CompiledSuite,
    plan: DraftPlan,
    best: torch.Tensor,
    margin: torch.Tensor,
    verified: set[int],
    lag: torch.Tensor,
) -> DraftOutcome:
    """Each item's reply as far as verification settles it, and where decoding resumes
    (``lag``: the best logit less the draft token's, per slot, for ``plan.keep_ties``)."""
    eos = set(compiled.eos_ids)
    targets = plan.targets
    outcome = DraftOutcome([], [], 0, 0)
    for ordinal, (prompt, budget, _) in enumerate(compiled.gen_prompts):
        draft = plan.drafts[ordinal]
        if ordinal not in verified:  # decoded plainly, from its prompt
            outcome.replies.append([])
            outcome.resume.append((list(prompt), budget, ordinal))
            outcome.skipped += 1
            continue
        a, b = plan.offsets[ordinal], plan.offsets[ordinal + 1]
        same = best[a:b] == targets[a:b]
        kept = same
        if plan.keep_ties:  # the draft's token within a tie of the best
            kept = same | (lag[a:b] <= plan.tolerance)
        differs = (~kept).nonzero()
        first = int(differs[0]) if len(differs) else None
        seen = margin[a : b if first is None else a + first + 1]
        if plan.keep_ties:  # non-finite scores, or a divergence that is itself a near-tie
            close = (~torch.isfinite(seen)).nonzero()
            if not len(close) and first is not None and not seen[-1] >= plan.tolerance:
                close = torch.tensor([first])
            tied = not bool(same[:first].all())  # up to the divergence, or all
        else:
            close = (~(seen >= plan.tolerance)).nonzero()  # a near-tie, or non-finite scores
            tied = False
        if len(close):  # decoded token by token from there, as plain decoding would
            tie = int(close[0])
            outcome.replies.append(list(draft[:tie]))
            outcome.resume.append((list(prompt) + draft[:tie], budget - tie, ordinal))
            outcome.near_ties += 1
            continue
        outcome.near_ties += tied
        if first is None:
            outcome.replies.append(list(draft))
            outcome.matched += 1
            continue
        token = int(best[a + first])
        reply = draft[:first] if token in eos else [*draft[:first], token]
        outcome.replies.append(reply)
        if token not in eos and len(reply) < budget:
            outcome.resume.append((list(prompt) + reply, budget - len(reply), ordinal))
    return outcome

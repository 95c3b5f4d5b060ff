"""Laying a suite's tokenised requests out in batches (no model, no tokenizer involved).

Log-likelihood requests become rows of token ids with *segment ids*: -1 padding, 0 the prompt,
j > 0 the j-th option. In the ``packed`` layout one row holds a prompt and all its options;
in the ``concatenated`` layout each (prompt, option) pair is a row of its own. Each row lists
its *queries*: ``(position, next token, slot)`` — the position whose next-token distribution
scores a token, and the slot (continuation id, or global text position for distribution items)
its result accumulates into. Rows are sorted by length and cut into batches that fit a
:class:`~driftwatch.memory.Budget`: tokens (rows × padded width) and, where it is capped, the
estimated bytes of the pass; so padding stays small and no pass outgrows its memory.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

import torch

from driftwatch.memory import Budget

__all__ = [
    "Batch",
    "CachedBatch",
    "GenBatch",
    "Layout",
    "LoglikRequest",
    "Row",
    "Scored",
    "cached_batches",
    "common_prefix",
    "continuation_row",
    "draft_row",
    "generation_batches",
    "loglik_rows",
    "pack_rows",
    "shared_prefix_rows",
]

Layout = Literal["packed", "cached", "concatenated"]
# most of a row's slot that padding may fill before the row starts a batch of its own
MAX_PAD_SHARE = 0.2
Query = tuple[int, int, int]  # (position in row, next token, slot)
Row = tuple[list[int], list[int], list[int], list[Query]]  # tokens, segments, positions, queries
LoglikRequest = tuple[list[int], list[list[int]], int]  # prompt, continuations, first slot


@dataclass
class Scored:
    """The positions of a pass whose next-token distribution is needed, each once, and the
    queries read from them (all options of a prompt read its last position).

    Queries are sorted by position, so the queries of positions ``lo…hi-1`` are
    ``starts[lo]…starts[hi]-1``: the output head can run over a chunk of positions and hand
    on exactly the queries it answers.
    """

    gather: torch.Tensor  # (U,) distinct flat indices into the pass's positions, ascending
    owners: torch.Tensor  # (M,) the row of ``gather`` each query reads
    targets: torch.Tensor  # (M,) the next token of each query (log-lik batches)
    slots: torch.Tensor  # (M,) continuation id (log-lik) or global text position (distribution)
    starts: list[int]  # (U + 1) the first query of each position, then M

    @staticmethod
    def of(queries: list[tuple[int, int, int]], device: torch.device) -> Scored:
        """From ``(flat position, next token, slot)`` queries in any order."""
        positions = sorted({at for at, _, _ in queries})
        row = {at: r for r, at in enumerate(positions)}
        ordered = sorted(queries, key=lambda q: row[q[0]])
        counts = Counter(at for at, _, _ in queries)
        starts = [0, *accumulate(counts[at] for at in positions)]

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        return Scored(
            gather=tensor(positions),
            owners=tensor([row[at] for at, _, _ in ordered]),
            targets=tensor([t for _, t, _ in ordered]),
            slots=tensor([s for _, _, s in ordered]),
            starts=starts,
        )


@dataclass
class Batch:
    """One forward pass: right-padded rows with segment ids (-1 pad, 0 prompt, j>0 option j)."""

    input_ids: torch.Tensor  # (B, L) long
    position_ids: torch.Tensor  # (B, L) long
    segments: torch.Tensor  # (B, L) long
    scored: Scored
    real_tokens: int
    padded_tokens: int


@dataclass
class CachedBatch:
    """The "cached" layout: prompts once with a KV cache, then every option from that cache.

    Scored positions index the concatenation of the prompt pass's ``B * Lp`` positions and the
    option pass's ``R * Lo`` positions.
    """

    prompt_ids: torch.Tensor  # (B, Lp) long, right-padded
    prompt_mask: torch.Tensor  # (B, Lp) long
    expand: torch.Tensor  # (R,) the prompt row each option row continues
    option_ids: torch.Tensor  # (R, Lo) long, right-padded
    option_mask: torch.Tensor  # (R, Lo) long
    option_positions: torch.Tensor  # (R, Lo) long: prompt length + offset
    scored: Scored
    real_tokens: int
    padded_tokens: int


@dataclass
class GenBatch:
    input_ids: torch.Tensor  # (B, L) long, left-padded
    attention_mask: torch.Tensor  # (B, L) long
    items: list[int]  # generate-item ordinal of each row
    max_new_tokens: int  # the longest budget of its rows: decoding runs that far
    real_tokens: int
    budgets: list[int] = field(default_factory=list)  # each row's own max_new_tokens


def pack_rows(
    rows: list[Row],
    budget: Budget,
    pad_id: int,
    device: torch.device,
) -> list[Batch]:
    """Length-sorted batching of rows under a budget (tokens, and bytes where it is capped).

    Each row is ``(tokens, segments, positions, queries)`` where a query is
    ``(position in row, next token, slot)``.
    """
    rows = [_trimmed(row) for row in rows]
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][0]))
    batches: list[Batch] = []
    start = 0
    while start < len(order):
        width = len(rows[order[start]][0])
        count = min(len(order) - start, budget.rows(width))
        # a row joins only if padding it to the batch's width wastes little: on a CPU the
        # cost is the padded tokens, so a few more passes beat one half-empty one
        shortest = math.ceil(width * (1 - MAX_PAD_SHARE))
        count = next(
            (n for n in range(1, count) if len(rows[order[start + n]][0]) < shortest), count
        )
        members = [rows[r] for r in order[start : start + count]]
        start += count
        ids = torch.full((count, width), pad_id, dtype=torch.long)
        seg = torch.full((count, width), -1, dtype=torch.long)
        pos = torch.zeros((count, width), dtype=torch.long)
        flat: list[tuple[int, int, int]] = []
        real = 0
        for b, (tokens, segments, positions, queries) in enumerate(members):
            n = len(tokens)
            real += n
            ids[b, :n] = torch.tensor(tokens)
            seg[b, :n] = torch.tensor(segments)
            pos[b, :n] = torch.tensor(positions)
            flat += [(b * width + at, nxt, slot) for at, nxt, slot in queries]
        batches.append(
            Batch(
                input_ids=ids.to(device),
                position_ids=pos.to(device),
                segments=seg.to(device),
                scored=Scored.of(flat, device),
                real_tokens=real,
                padded_tokens=count * width,
            )
        )
    return batches


def _trimmed(row: Row) -> Row:
    """The row without the tokens after its last scored position: the distribution over a
    text's last token comes from the position before it, and under causal attention no later
    token changes an earlier position's output."""
    tokens, segments, positions, queries = row
    end = max((at for at, _, _ in queries), default=len(tokens) - 1) + 1
    if end >= len(tokens):
        return row
    return tokens[:end], segments[:end], positions[:end], queries


def loglik_rows(requests: list[LoglikRequest], layout: Layout) -> list[Row]:
    """Rows for (prompt, continuations, first continuation id) requests in a layout."""
    rows = []
    for prompt, conts, first_slot in requests:
        groups = (
            [list(enumerate(conts))]
            if layout == "packed"
            else [[(j, c)] for j, c in enumerate(conts)]
        )
        for group in groups:
            tokens, segments, positions = list(prompt), [0] * len(prompt), list(range(len(prompt)))
            queries: list[Query] = []
            for seg_no, (j, cont) in enumerate(group, start=1):
                base = len(tokens)
                for t, tok in enumerate(cont):
                    # the distribution over token t comes from the previous token's position
                    prev = len(prompt) - 1 if t == 0 else base + t - 1
                    queries.append((prev, tok, first_slot + j))
                # so an option's last token is never input: a one-token option costs no
                # position at all, its log-likelihood is read at the prompt's last one
                fed = cont[:-1]
                tokens += fed
                segments += [seg_no] * len(fed)
                positions += list(range(len(prompt), len(prompt) + len(fed)))
            rows.append((tokens, segments, positions, queries))
    return rows


def continuation_row(prompt: list[int], cont: list[int], first_slot: int) -> Row:
    """A prompt followed by the base model's continuation; only the continuation is scored."""
    tokens = prompt + cont
    queries = [(len(prompt) - 1 + t, tok, first_slot + t) for t, tok in enumerate(cont)]
    return tokens, [0] * len(tokens), list(range(len(tokens))), queries


def draft_row(prompt: list[int], draft: list[int], stop: int | None, first_slot: int) -> Row:
    """:func:`continuation_row` of a drafted reply; with ``stop``, one more position scored
    against it (the draft ended there)."""
    tokens, segments, positions, queries = continuation_row(prompt, draft, first_slot)
    if stop is not None:
        queries.append((len(tokens) - 1, stop, first_slot + len(draft)))
    return tokens, segments, positions, queries


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    return next(
        (n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def shared_prefix_rows(rows: list[Row], width: int, key: int = 16) -> list[Row]:
    """Rows of one text each (segment 0, positions from 0) packed several to a row for the
    ``packed`` layout, their common prefix computed once per row.

    Rows whose first ``key`` tokens agree form a group (chat-templated prompts begin with the
    same system prompt); a group's longest common prefix, before any scored position, becomes
    segment 0 of each packed row, and its rows' remainders follow it as segments 1, 2, … with
    positions continuing after the prefix, so under :func:`~driftwatch.runner.kernels.mask4d`
    each sees the prefix and itself only. Remainders fill rows first-fit decreasing, up to
    ``width`` tokens (or the longest single row's, if wider).
    """
    groups: dict[tuple[int, ...], list[Row]] = {}
    for row in map(_trimmed, rows):
        groups.setdefault(tuple(row[0][:key]), []).append(row)
    packed: list[Row] = []
    for members in groups.values():
        first = min(min(at for at, _, _ in row[3]) for row in members)  # first scored position
        common = members[0][0][: first + 1]
        for tokens, _, _, _ in members[1:]:
            common = common[: common_prefix(common, tokens)]
        cut = len(common)
        rests = sorted(members, key=lambda row: -len(row[0]))
        limit = max(width, len(rests[0][0])) - cut
        bins: list[list[Row]] = []
        used: list[int] = []
        for row in rests:
            n = len(row[0]) - cut
            at = next((b for b, u in enumerate(used) if u + n <= limit), None)
            if at is None:
                bins.append([row])
                used.append(n)
            else:
                bins[at].append(row)
                used[at] += n
        for members_of_row in bins:
            tokens, segments, positions = list(common), [0] * cut, list(range(cut))
            queries: list[Query] = []
            for seg_no, (ids, _, pos, qs) in enumerate(members_of_row, start=1):
                # a query at the prefix's last position reads the row's own copy of it
                queries += [
                    (len(tokens) + at - cut if at >= cut else at, nxt, slot) for at, nxt, slot in qs
                ]
                tokens += ids[cut:]
                segments += [seg_no] * (len(ids) - cut)
                positions += pos[cut:]
            packed.append((tokens, segments, positions, queries))
    return packed


def generation_batches(
    prompts: list[tuple[list[int], int, int]], budget: Budget, pad_id: int, device: torch.device
) -> list[GenBatch]:
    """Left-padded batches of ``(prompt ids, max_new_tokens, ordinal)`` under a budget: rows
    × (padded prompt + new tokens) within its tokens, and the KV cache and prompt pass within
    its bytes where it is capped.

    Items with different generation budgets share a batch: a decoding step costs about the
    same for 4 rows as for 24 on a small model (the per-step overhead dominates), so one call
    that decodes to the longest budget beats one call per budget. Each row is cut to its own
    budget afterwards. Rows are sorted by budget, then length, to keep padding small.
    """
    order = sorted(prompts, key=lambda p: (-p[1], -len(p[0])))
    batches: list[GenBatch] = []
    start = 0
    while start < len(order):
        max_new, width, count = order[start][1], len(order[start][0]), 1
        while start + count < len(order):  # later rows have smaller budgets, maybe longer prompts
            wider = max(width, len(order[start + count][0]))
            if not budget.fits_generation(count + 1, wider, max_new):
                break
            width, count = wider, count + 1
        members = order[start : start + count]
        start += count
        ids = torch.full((count, width), pad_id, dtype=torch.long)
        mask = torch.zeros((count, width), dtype=torch.long)
        for b, (tokens, _, _) in enumerate(members):
            ids[b, width - len(tokens) :] = torch.tensor(tokens)
            mask[b, width - len(tokens) :] = 1
        batches.append(
            GenBatch(
                ids.to(device),
                mask.to(device),
                [m[2] for m in members],
                max_new,
                sum(len(m[0]) for m in members),
                [m[1] for m in members],
            )
        )
    return batches


def cached_batches(
    requests: list[LoglikRequest], budget: Budget, pad_id: int, device: torch.device
) -> list[CachedBatch]:
    """Batches for the "cached" layout: requests sorted by length, cut by the budget.

    A batch's cost is counted as its prompt rows plus its option rows, each as wide as the
    prompt and the longest option together (the attention span of the option pass).
    """
    order = sorted(requests, key=lambda r: -(len(r[0]) + max(len(c) for c in r[1])))
    batches: list[CachedBatch] = []
    start = 0
    while start < len(order):
        count = 0
        rows = 0
        width = 0
        while start + count < len(order):
            prompt, conts, _ = order[start + count]
            new_width = max(width, len(prompt) + max(len(c) for c in conts))
            if count and budget.rows(new_width, at_least=0, cached=True) < rows + 1 + len(conts):
                break
            rows, width, count = rows + 1 + len(conts), new_width, count + 1
        members = order[start : start + count]
        start += count
        batches.append(_cached_batch(members, pad_id, device))
    return batches


def _cached_batch(members: list[LoglikRequest], pad_id: int, device: torch.device) -> CachedBatch:
    n_prompts = len(members)
    p_width = max(len(p) for p, _, _ in members)
    o_width = max(len(c) for _, conts, _ in members for c in conts)
    n_options = sum(len(conts) for _, conts, _ in members)
    prompt_ids = torch.full((n_prompts, p_width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((n_prompts, p_width), dtype=torch.long)
    option_ids = torch.full((n_options, o_width), pad_id, dtype=torch.long)
    option_mask = torch.zeros((n_options, o_width), dtype=torch.long)
    option_pos = torch.zeros((n_options, o_width), dtype=torch.long)
    expand: list[int] = []
    queries: list[tuple[int, int, int]] = []
    option_base = n_prompts * p_width  # option-pass positions come after the prompt pass's
    r = 0
    for b, (prompt, conts, first_slot) in enumerate(members):
        prompt_ids[b, : len(prompt)] = torch.tensor(prompt)
        prompt_mask[b, : len(prompt)] = 1
        for j, cont in enumerate(conts):
            option_ids[r, : len(cont)] = torch.tensor(cont)
            option_mask[r, : len(cont)] = 1
            option_pos[r] = torch.arange(len(prompt), len(prompt) + o_width)
            expand.append(b)
            for t, tok in enumerate(cont):
                at = b * p_width + len(prompt) - 1 if t == 0 else option_base + r * o_width + t - 1
                queries.append((at, tok, first_slot + j))
            r += 1
    real = sum(len(p) + sum(len(c) for c in conts) for p, conts, _ in members)
    return CachedBatch(
        prompt_ids=prompt_ids.to(device),
        prompt_mask=prompt_mask.to(device),
        expand=torch.tensor(expand, dtype=torch.long, device=device),
        option_ids=option_ids.to(device),
        option_mask=option_mask.to(device),
        option_positions=option_pos.to(device),
        scored=Scored.of(queries, device),
        real_tokens=real,
        padded_tokens=n_prompts * p_width + n_options * o_width,
    )

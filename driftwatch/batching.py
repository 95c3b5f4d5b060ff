"""Tokenising a suite once and laying its requests out in batches (no model involved).

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

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import TYPE_CHECKING, Literal

import torch

from driftwatch.errors import DriftwatchError, Problem, SuiteError
from driftwatch.memory import Budget
from driftwatch.suite import ProbeItem, ProbeSuite

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "Batch",
    "CachedBatch",
    "CompiledSuite",
    "Encoder",
    "GenBatch",
    "Layout",
    "Requests",
    "Scored",
    "attach_continuations",
    "cached_batches",
    "collect_requests",
    "generation_batches",
    "loglik_rows",
    "pack_rows",
]

logger = logging.getLogger(__name__)

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


@dataclass
class CompiledSuite:
    """A suite tokenised for one tokenizer and laid out in batches on one device."""

    suite: ProbeSuite
    layout: Layout
    budget: Budget
    device: torch.device
    loglik: list[Batch] | list[CachedBatch]  # CachedBatch in the "cached" layout
    dist: list[Batch]
    gen: list[GenBatch]
    # continuation table (log-likelihood kinds): which item and option each continuation is
    cont_item: torch.Tensor  # (C,) index into suite.items
    cont_option: torch.Tensor  # (C,)
    cont_len: torch.Tensor  # (C,) tokens
    cont_choice_row: torch.Tensor  # (C,) row of the continuation's choice item, -1 for targets
    choice_items: list[int]  # suite index of each choice item (row order)
    dist_offsets: torch.Tensor  # (D+1,) text positions of each distribution item, cumulative
    dist_items: list[int]  # suite index of each distribution item
    gen_items: list[int]  # suite index of each generate item
    pad_id: int
    eos_ids: list[int]
    stats: dict[str, int] = field(default_factory=dict)
    # distribution items with a prompt: their rows need the base model's continuation, which
    # the reference records (see attach_continuations)
    dist_rows: list[Row] = field(default_factory=list)  # the text rows, before batching
    pending_prompts: list[tuple[list[int], int, int]] = field(default_factory=list)
    pending_items: list[int] = field(default_factory=list)  # suite index of each
    continuations: list[list[int]] | None = None  # attached base continuations

    @property
    def token_budget(self) -> int:
        return self.budget.tokens

    @property
    def n_dist_positions(self) -> int:
        return int(self.dist_offsets[-1])

    @property
    def needs_continuations(self) -> bool:
        """True while prompt-based distribution items wait for their base continuations."""
        return bool(self.pending_items) and self.continuations is None


@dataclass
class Requests:
    """Every request of a suite, tokenised, before batching."""

    loglik: list[LoglikRequest] = field(default_factory=list)
    cont_item: list[int] = field(default_factory=list)  # suite index of each continuation
    cont_option: list[int] = field(default_factory=list)
    cont_len: list[int] = field(default_factory=list)
    cont_choice_row: list[int] = field(default_factory=list)  # row among choice items, or -1
    choice_items: list[int] = field(default_factory=list)  # suite index of each choice item
    dist_rows: list[Row] = field(default_factory=list)
    dist_offsets: list[int] = field(default_factory=lambda: [0])
    dist_items: list[int] = field(default_factory=list)
    gen_prompts: list[tuple[list[int], int, int]] = field(default_factory=list)  # ids, max, ord
    gen_items: list[int] = field(default_factory=list)
    pending_prompts: list[tuple[list[int], int, int]] = field(default_factory=list)
    pending_items: list[int] = field(default_factory=list)  # distribution items with a prompt


class Encoder:
    """Turns prompts into token ids once per suite, warning once about missing chat templates."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tok = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.warned = False

    def prompt(self, item: ProbeItem) -> tuple[list[int], str]:
        """Token ids of the prompt, and whitespace moved off its end (it belongs to the answer)."""
        text = item.prompt or ""
        if item.chat:
            messages = [{"role": r, "content": c} for r, c in item.history]
            messages.append({"role": "user", "content": text})
            if self.has_template:
                rendered = self.tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
                return list(self.tok(str(rendered), add_special_tokens=False).input_ids), ""
            if not self.warned:
                logger.warning(
                    "the tokenizer has no chat template: chat items are probed as plain text"
                )
                self.warned = True
            if item.history:  # a plain transcript keeps the turns apart
                turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
                text = "\n".join([*turns, "Assistant:"])
        stripped = text.rstrip()
        moved = text[len(stripped) :]
        return list(self.tok(stripped, add_special_tokens=True).input_ids), moved

    def continuation(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False).input_ids)

    def text(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=True).input_ids)


def _problem(item: ProbeItem, field_: str, message: str) -> Problem:
    path, line = item.where()
    return Problem(path, line, field_, f"{item.id}: {message}")


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


def collect_requests(
    suite: ProbeSuite, tokenizer: PreTrainedTokenizerBase, context: int | None
) -> Requests:
    """Tokenise every item once.

    Raises:
        SuiteError: items that tokenise to nothing or exceed the model's ``context``, each
            named by file, line and field.
    """
    enc = Encoder(tokenizer)
    req = Requests()
    problems: list[Problem] = []
    for index, item in enumerate(suite.items):
        if item.kind in ("choice", "target"):
            prompt, moved = enc.prompt(item)
            options = item.choices if item.kind == "choice" else (item.target or "",)
            conts = [enc.continuation(moved + o) for o in options]
            if not prompt or any(not c for c in conts):
                problems.append(
                    _problem(item, "prompt" if not prompt else "choices", "tokenises to no tokens")
                )
                continue
            total = len(prompt) + max(len(c) for c in conts)
            if context is not None and total > context:
                problems.append(
                    _problem(
                        item,
                        "prompt",
                        f"{total} tokens with its longest "
                        f"option, longer than the model's context of "
                        f"{context}",
                    )
                )
                continue
            req.loglik.append((prompt, conts, len(req.cont_item)))
            row = len(req.choice_items) if item.kind == "choice" else -1
            if item.kind == "choice":
                req.choice_items.append(index)
            for j, c in enumerate(conts):
                req.cont_item.append(index)
                req.cont_option.append(j)
                req.cont_len.append(len(c))
                req.cont_choice_row.append(row)
        elif item.kind == "generate" or item.prompt is not None:
            # generate items, and distribution items whose base reply is generated once
            ids, _ = enc.prompt(item)
            if context is not None and len(ids) + item.max_new_tokens > context:
                problems.append(
                    _problem(
                        item,
                        "prompt",
                        f"{len(ids)} tokens plus max_new_tokens={item.max_new_tokens} exceed "
                        f"the model's context of {context}",
                    )
                )
                continue
            if item.kind == "generate":
                req.gen_prompts.append((ids, item.max_new_tokens, len(req.gen_items)))
                req.gen_items.append(index)
            else:
                req.pending_prompts.append((ids, item.max_new_tokens, len(req.pending_items)))
                req.pending_items.append(index)
        elif item.kind == "distribution":
            ids = enc.text(item.text or "")
            if len(ids) < 2:
                problems.append(_problem(item, "text", "needs at least 2 tokens"))
                continue
            if context is not None and len(ids) > context:
                problems.append(
                    _problem(
                        item,
                        "text",
                        f"{len(ids)} tokens, longer than the model's context of {context}",
                    )
                )
                continue
            first = req.dist_offsets[-1]
            queries = [(t, ids[t + 1], first + t) for t in range(len(ids) - 1)]
            req.dist_rows.append((ids, [0] * len(ids), list(range(len(ids))), queries))
            req.dist_offsets.append(first + len(ids) - 1)
            req.dist_items.append(index)
    if problems:
        raise SuiteError(problems)

    return req


def _continuation_row(prompt: list[int], cont: list[int], first_slot: int) -> Row:
    """A prompt followed by the base model's continuation; only the continuation is scored."""
    tokens = prompt + cont
    queries = [(len(prompt) - 1 + t, tok, first_slot + t) for t, tok in enumerate(cont)]
    return tokens, [0] * len(tokens), list(range(len(tokens))), queries


def attach_continuations(
    compiled: CompiledSuite, continuations: Sequence[Sequence[int]]
) -> CompiledSuite:
    """The compiled suite with prompt-based distribution items laid out for scoring.

    Args:
        continuations: the base model's greedy continuation of each pending item, in
            :attr:`CompiledSuite.pending_items` order (as a reference records them).

    Raises:
        DriftwatchError: the count does not match the suite's prompt-based items.
    """
    if not compiled.pending_items:
        return compiled
    if len(continuations) != len(compiled.pending_items):
        raise DriftwatchError(
            f"the reference holds {len(continuations)} base continuations, the suite has "
            f"{len(compiled.pending_items)} prompt-based distribution items; rebuild the "
            "reference for this suite"
        )
    rows = list(compiled.dist_rows)
    offsets = compiled.dist_offsets.tolist()
    fallback = compiled.eos_ids[:1] or [compiled.pad_id]
    for (prompt, _, _), cont in zip(compiled.pending_prompts, continuations, strict=True):
        # an empty reply still has a distribution: the one that chose to stop at once
        cont = list(cont) or fallback
        rows.append(_continuation_row(prompt, cont, offsets[-1]))
        offsets.append(offsets[-1] + len(cont))
    dist = pack_rows(rows, compiled.budget, compiled.pad_id, compiled.device)
    stats = dict(compiled.stats)
    stats["real_tokens"] += sum(b.real_tokens for b in dist) - sum(
        b.real_tokens for b in compiled.dist
    )
    stats["padded_tokens"] += sum(b.padded_tokens for b in dist) - sum(
        b.padded_tokens for b in compiled.dist
    )
    stats["forward_passes"] += len(dist) - len(compiled.dist)
    return replace(
        compiled,
        dist=dist,
        dist_offsets=torch.tensor(offsets, dtype=torch.long),
        dist_items=[*compiled.dist_items, *compiled.pending_items],
        continuations=[list(c) for c in continuations],
    )


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

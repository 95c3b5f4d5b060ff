"""Compiling a suite: every item's request tokenised once and laid out in batches on a device.

Each item's kind builds its request (:meth:`driftwatch.probes.base.ProbeKind.request`); the
compiler checks it against the model's context and lays the requests of each type out in
length-sorted batches that fit a budget (tokens, and the bytes :mod:`driftwatch.memory`
estimates a pass needs). Log-likelihood requests use the fastest layout whose results
reproduce plain forward passes on one item (:func:`driftwatch.runner.checks.choose_layout`):

- ``packed``: one row per item holding the prompt followed by every option, a custom 4-D
  attention mask letting each option see the prompt and itself only, positions restarting
  after the prompt; each prompt is computed once and nothing is padded per option;
- ``cached``: prompts once with a KV cache, the cache re-indexed over their options;
- ``concatenated``: one row per (prompt, option), an ordinary causal mask (any causal LM).

Prompt-based distribution requests wait for the base model's reply, which the reference
records: :meth:`CompiledSuite.with_continuations` lays them out once it is known.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import torch

from driftwatch.errors import DriftwatchError, Problem, SuiteError
from driftwatch.memory import Budget, pass_costs
from driftwatch.probes.base import (
    Generate,
    ItemProblem,
    Loglik,
    ReplyDistribution,
    Request,
    TextDistribution,
)
from driftwatch.probes.registry import get_kind
from driftwatch.runner.checks import choose_layout
from driftwatch.runner.encoding import Encoder
from driftwatch.runner.layout import (
    Batch,
    CachedBatch,
    GenBatch,
    Layout,
    LoglikRequest,
    Row,
    cached_batches,
    continuation_row,
    generation_batches,
    loglik_rows,
    pack_rows,
)
from driftwatch.runner.precision import Compute, detect_compute

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from driftwatch.items import ProbeItem
    from driftwatch.suite import ProbeSuite

__all__ = ["CompiledSuite", "compile_suite"]

logger = logging.getLogger(__name__)

Prompt = tuple[list[int], int, int]  # token ids, max_new_tokens, ordinal


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
    loglik_items: list[int]  # suite index of each log-likelihood request
    loglik_offsets: torch.Tensor  # (R+1,) first continuation id of each request, then C
    cont_len: torch.Tensor  # (C,) tokens of each continuation
    dist_items: list[int]  # suite index of each distribution request being scored
    dist_offsets: torch.Tensor  # (D+1,) first text position of each, then P
    gen_items: list[int]  # suite index of each generate request
    pad_id: int
    eos_ids: list[int]
    stats: dict[str, int] = field(default_factory=dict)
    # distribution requests along the base model's reply: laid out once the reference's
    # continuations are attached (with_continuations)
    dist_rows: list[Row] = field(default_factory=list)  # the fixed-text rows, before batching
    pending_prompts: list[Prompt] = field(default_factory=list)
    pending_items: list[int] = field(default_factory=list)  # suite index of each
    continuations: list[list[int]] | None = None  # the attached base replies
    gen_prompts: list[Prompt] = field(default_factory=list)  # each generate request, by ordinal
    # the precision every forward of a round runs in (runner.precision)
    compute: Compute = field(default_factory=lambda: Compute(torch.float32, False))

    @property
    def token_budget(self) -> int:
        return self.budget.tokens

    @property
    def n_dist_positions(self) -> int:
        return int(self.dist_offsets[-1])

    @property
    def needs_continuations(self) -> bool:
        """True while prompt-based distribution requests wait for the base model's replies."""
        return bool(self.pending_items) and self.continuations is None

    def with_continuations(self, continuations: Sequence[Sequence[int]]) -> CompiledSuite:
        """This suite with the prompt-based distribution requests laid out along the base
        model's replies (one per :attr:`pending_items` entry, as a reference records them).

        Raises:
            DriftwatchError: the count does not match the suite's prompt-based items.
        """
        if not self.pending_items:
            return self
        if len(continuations) != len(self.pending_items):
            raise DriftwatchError(
                f"the reference holds {len(continuations)} base continuations, the suite has "
                f"{len(self.pending_items)} prompt-based distribution items; rebuild the "
                "reference for this suite"
            )
        rows = list(self.dist_rows)
        offsets = self.dist_offsets.tolist()
        fallback = self.eos_ids[:1] or [self.pad_id]
        for (prompt, _, _), cont in zip(self.pending_prompts, continuations, strict=True):
            # an empty reply still has a distribution: the one that chose to stop at once
            cont = list(cont) or fallback
            rows.append(continuation_row(prompt, cont, offsets[-1]))
            offsets.append(offsets[-1] + len(cont))
        dist = pack_rows(rows, self.budget, self.pad_id, self.device)
        stats = dict(self.stats)
        stats["real_tokens"] += sum(b.real_tokens for b in dist) - _real(self.dist)
        stats["padded_tokens"] += sum(b.padded_tokens for b in dist) - _padded(self.dist)
        stats["forward_passes"] += len(dist) - len(self.dist)
        return replace(
            self,
            dist=dist,
            dist_offsets=torch.tensor(offsets, dtype=torch.long),
            dist_items=[*self.dist_items, *self.pending_items],
            stats=stats,
            continuations=[list(c) for c in continuations],
        )


def _real(batches: Sequence[Batch]) -> int:
    return sum(b.real_tokens for b in batches)


def _padded(batches: Sequence[Batch]) -> int:
    return sum(b.padded_tokens for b in batches)


@dataclass
class _Requests:
    """Every request of a suite, tokenised and grouped by type, before batching."""

    loglik: list[LoglikRequest] = field(default_factory=list)
    loglik_items: list[int] = field(default_factory=list)
    cont_len: list[int] = field(default_factory=list)
    dist_rows: list[Row] = field(default_factory=list)
    dist_offsets: list[int] = field(default_factory=lambda: [0])
    dist_items: list[int] = field(default_factory=list)
    gen_prompts: list[Prompt] = field(default_factory=list)
    gen_items: list[int] = field(default_factory=list)
    pending_prompts: list[Prompt] = field(default_factory=list)
    pending_items: list[int] = field(default_factory=list)

    def add(self, index: int, request: Request) -> None:
        if isinstance(request, Loglik):
            self.loglik.append((request.prompt, request.continuations, len(self.cont_len)))
            self.loglik_items.append(index)
            self.cont_len += [len(c) for c in request.continuations]
        elif isinstance(request, Generate):
            self.gen_prompts.append((request.prompt, request.max_new_tokens, len(self.gen_items)))
            self.gen_items.append(index)
        elif isinstance(request, ReplyDistribution):
            ordinal = len(self.pending_items)
            self.pending_prompts.append((request.prompt, request.max_new_tokens, ordinal))
            self.pending_items.append(index)
        else:
            ids, first = request.tokens, self.dist_offsets[-1]
            queries = [(t, ids[t + 1], first + t) for t in range(len(ids) - 1)]
            self.dist_rows.append((ids, [0] * len(ids), list(range(len(ids))), queries))
            self.dist_offsets.append(first + len(ids) - 1)
            self.dist_items.append(index)


def _too_long(request: Request, context: int | None) -> tuple[str, str] | None:
    """``(field, message)`` when the request does not fit the model's context."""
    if context is None:
        return None
    if isinstance(request, Loglik):
        total = len(request.prompt) + max(len(c) for c in request.continuations)
        if total > context:
            return "prompt", (
                f"{total} tokens with its longest option, longer than the model's context of "
                f"{context}"
            )
    elif isinstance(request, (Generate, ReplyDistribution)):
        if len(request.prompt) + request.max_new_tokens > context:
            return "prompt", (
                f"{len(request.prompt)} tokens plus max_new_tokens={request.max_new_tokens} "
                f"exceed the model's context of {context}"
            )
    elif isinstance(request, TextDistribution) and len(request.tokens) > context:
        return "text", f"{len(request.tokens)} tokens, longer than the model's context of {context}"
    return None


def _problem(item: ProbeItem, field_: str, message: str) -> Problem:
    path, line = item.where()
    return Problem(path, line, field_, f"{item.id}: {message}")


def _collect(
    suite: ProbeSuite, tokenizer: PreTrainedTokenizerBase, context: int | None
) -> _Requests:
    """Every item's request, tokenised once.

    Raises:
        SuiteError: items that cannot become a request or exceed the model's ``context``, each
            named by file, line and field.
    """
    encoder = Encoder(tokenizer)
    requests = _Requests()
    problems: list[Problem] = []
    for index, item in enumerate(suite.items):
        try:
            request = get_kind(item.kind).request(item, encoder)
        except ItemProblem as problem:
            problems.append(_problem(item, problem.field, problem.message))
            continue
        too_long = _too_long(request, context)
        if too_long is not None:
            problems.append(_problem(item, *too_long))
            continue
        requests.add(index, request)
    if problems:
        raise SuiteError(problems)
    return requests


def _context_length(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def compile_suite(
    suite: ProbeSuite,
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    *,
    token_budget: int = 4096,
    memory_budget: int | None = None,
    layout: Layout | Literal["auto"] = "auto",
    compute: Compute | None = None,
) -> CompiledSuite:
    """Tokenise ``suite`` once and lay it out in batches on ``model``'s device.

    Args:
        token_budget: most tokens (rows × padded length) in one forward pass.
        memory_budget: most bytes one pass may allocate beyond the weights, by the estimate
            of :func:`driftwatch.memory.pass_costs` (``None``: no byte cap). A model whose
            config gives no estimate is batched by ``token_budget`` alone, with a warning.
        layout: ``"auto"`` picks the first of ``"packed"``, ``"cached"`` and
            ``"concatenated"`` whose results reproduce plain forward passes on one item;
            naming a layout skips the check.
        compute: the precision the model's forwards compute in (default: as
            :func:`~driftwatch.runner.precision.detect_compute` finds it now); the layout check
            runs in it, with a tolerance for it.

    Raises:
        SuiteError: an item is too long for the model's context, or tokenises to nothing.
    """
    if token_budget < 1:
        raise DriftwatchError(f"token_budget: expected a positive integer, found {token_budget}")
    if memory_budget is not None and memory_budget < 1:
        raise DriftwatchError(
            f"memory_budget: expected a positive number of bytes or None, found {memory_budget}"
        )
    costs = pass_costs(model) if memory_budget is not None else None
    if memory_budget is not None and costs is None:
        logger.warning(
            "driftwatch: the model's config does not give the sizes a memory estimate needs "
            "(hidden_size, num_attention_heads, num_hidden_layers, vocab_size); probe batches "
            "are sized by token_budget=%d alone",
            token_budget,
        )
    budget = Budget(token_budget, memory_budget, costs)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    eos = tokenizer.eos_token_id
    req = _collect(suite, tokenizer, _context_length(model))
    compute = compute or detect_compute(model)
    chosen: Layout = layout if layout != "auto" else choose_layout(model, req.loglik, compute)
    loglik: list[Batch] | list[CachedBatch] = (
        cached_batches(req.loglik, budget, pad_id, device)
        if chosen == "cached"
        else pack_rows(loglik_rows(req.loglik, chosen), budget, pad_id, device)
    )
    dist = pack_rows(req.dist_rows, budget, pad_id, device)
    gen = generation_batches(req.gen_prompts, budget, pad_id, device)
    stats = {
        "real_tokens": sum(b.real_tokens for b in [*loglik, *dist, *gen]),
        "padded_tokens": sum(b.padded_tokens for b in [*loglik, *dist])
        + sum(int(b.input_ids.numel()) for b in gen),
        "forward_passes": len(loglik) * (2 if chosen == "cached" else 1) + len(dist),
        "generate_calls": len(gen),
    }
    logger.info(
        "compiled suite %r: %d items, layout=%s, compute=%s, %d forward passes, %d generate calls",
        suite.name,
        len(suite),
        chosen,
        compute.name,
        stats["forward_passes"],
        stats["generate_calls"],
    )
    starts = [first for _, _, first in req.loglik]
    return CompiledSuite(
        suite=suite,
        layout=chosen,
        budget=budget,
        device=device,
        loglik=loglik,
        dist=dist,
        gen=gen,
        loglik_items=req.loglik_items,
        loglik_offsets=torch.tensor([*starts, len(req.cont_len)], dtype=torch.long),
        cont_len=torch.tensor(req.cont_len, dtype=torch.long),
        dist_items=req.dist_items,
        dist_offsets=torch.tensor(req.dist_offsets, dtype=torch.long),
        gen_items=req.gen_items,
        pad_id=int(pad_id),
        eos_ids=[eos] if isinstance(eos, int) else [],
        stats=stats,
        dist_rows=req.dist_rows,
        pending_prompts=req.pending_prompts,
        pending_items=req.pending_items,
        gen_prompts=req.gen_prompts,
        compute=compute,
    )

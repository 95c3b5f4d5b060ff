"""One probe round: run a compiled suite's batches, hand each kind its outputs, collect scores.

:func:`run_probes` runs every batch of each request type under ``torch.inference_mode``, in the
compiled suite's compute precision (:mod:`driftwatch.runner.precision`) and with the model's
state preserved, gathers the results across ranks, cuts them into one output per
item (:mod:`driftwatch.probes.base`) and lets each item's kind score its own items. It returns
per-item values over the whole suite (:class:`ProbeResult`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from driftwatch.distributed import agree, share, sum_into_all
from driftwatch.errors import DriftwatchError
from driftwatch.metrics import item_metrics
from driftwatch.probes.base import DistributionOutput, GenerateOutput, LoglikOutput
from driftwatch.probes.distribution import kl_against_topk
from driftwatch.probes.distribution import record_topk as top_k
from driftwatch.probes.registry import get_kind
from driftwatch.progress import Task, task
from driftwatch.runner.compiler import CompiledSuite
from driftwatch.runner.decoding import Decoded, greedy_replies
from driftwatch.runner.drafts import DraftPlan, draft_replies
from driftwatch.runner.isolation import preserved_state
from driftwatch.runner.kernels import Consume, discard, score_batch
from driftwatch.runner.layout import Batch, CachedBatch, generation_batches
from driftwatch.sharding import no_grad

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ProbeResult", "generate_continuations", "run_probes"]


@dataclass
class ProbeResult:
    """Per-item outcome of one probe round.

    ``values[metric]`` is a ``(N,)`` float64 tensor over ``suite.items`` (NaN where the metric
    does not apply to an item). ``generated`` holds the generated token ids per generate
    request, ``topk`` the distribution top-k (values, ids) when the round was recorded as a
    reference, ``records`` the kinds' extra tensors (``<kind>/<name>``).
    """

    values: dict[str, torch.Tensor]
    records: dict[str, torch.Tensor]
    generated: list[list[int]]
    texts: list[str]
    topk: tuple[torch.Tensor, torch.Tensor] | None
    seconds: float
    tokens: dict[str, int]
    # (N,) True where the model produced NaN/inf log-probabilities for the item; its values
    # are NaN then, so no score is computed from garbage
    nonfinite: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    # how the generate items were decoded: decode_steps (forward passes), decode_seconds,
    # and with drafts decode_matched (replies equal to the base's), decode_near_ties
    decode: dict[str, float] = field(default_factory=dict)

    @property
    def option_logprobs(self) -> torch.Tensor:
        """The choice kind's ``(N_choice, max options)`` summed option log-probs."""
        return self.records.get("choice/option_logprobs", torch.zeros(0, 0))


def run_probes(
    model: PreTrainedModel,
    compiled: CompiledSuite,
    tokenizer: PreTrainedTokenizerBase,
    *,
    base_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    record_topk: int = 0,
    drafts: DraftPlan | None = None,
) -> ProbeResult:
    """Run one probe round.

    Args:
        base_topk: the reference's distribution top-k ``(values, ids)``, each ``(P, k)``;
            needed to score distribution items against the base.
        record_topk: record this many top log-probs per distribution position (building a
            reference) instead of scoring against ``base_topk``.
        drafts: verify the generate items against the base model's replies
            (:mod:`driftwatch.runner.drafts`) instead of decoding each from its prompt.
    """
    if compiled.needs_continuations:
        raise DriftwatchError(
            "the suite has prompt-based distribution items: attach the reference's base "
            "continuations first (compiled.with_continuations(reference.continuations), or "
            "open a driftwatch.session.ProbeSession, which does it)"
        )
    if compiled.dist and base_topk is None and not record_topk:
        raise DriftwatchError(
            "distribution probes need the reference's top-k (base_topk) or "
            "record_topk > 0 when building a reference"
        )
    started = time.perf_counter()
    device = compiled.device
    steps = len(compiled.loglik) + len(compiled.dist) + (1 if compiled.gen_items else 0)
    with (
        preserved_state(model),
        no_grad(model),
        compiled.compute.context(),
        task("probe round", steps) as bar,
    ):
        error: Exception | None = None
        try:
            parts = _score_local(model, compiled, base_topk, record_topk, bar)
        except Exception as err:  # every rank must hear of it before the next collective
            error = err
        agree(error, device)
        sum_into_all(parts)  # each slot was filled by exactly one rank
        cont_lp, cont_miss, kl_pos, top1_pos = (t.cpu() for t in parts[:4])
        topk = (parts[4].cpu(), parts[5].cpu()) if record_topk else None
        bar.note("replies")
        decoded, decode = _generate(model, compiled, drafts)
        bar.advance()
    generated, gen_bad = decoded.replies, decoded.bad
    texts = [str(tokenizer.decode(ids, skip_special_tokens=True)) for ids in generated]
    if topk is not None:  # the base against itself: no drift by definition
        kl_pos, top1_pos = torch.zeros_like(kl_pos), torch.ones_like(top1_pos)
    outputs, bad = _outputs(compiled, cont_lp, cont_miss, kl_pos, top1_pos, generated, texts)
    for ordinal, index in enumerate(compiled.gen_items):
        bad[index] |= bool(gen_bad[ordinal])
    values, records = _score_kinds(compiled, outputs)
    nonfinite = torch.tensor(bad, dtype=torch.bool)
    if bool(nonfinite.any()):
        for tensor in values.values():
            tensor[nonfinite] = float("nan")
    return ProbeResult(
        values=values,
        records=records,
        generated=generated,
        texts=texts,
        topk=topk,
        seconds=time.perf_counter() - started,
        tokens=dict(compiled.stats),
        nonfinite=nonfinite,
        decode=decode,
    )


def _generate(
    model: PreTrainedModel, compiled: CompiledSuite, drafts: DraftPlan | None
) -> tuple[Decoded, dict[str, float]]:
    """The generate items' greedy replies, from drafts or decoded plainly, and the record."""
    if drafts is not None:
        return draft_replies(model, compiled, drafts)
    started = time.perf_counter()
    decoded = greedy_replies(
        model,
        compiled.gen,
        len(compiled.gen_items),
        pad_id=compiled.pad_id,
        eos_ids=compiled.eos_ids,
        device=compiled.device,
    )
    seconds = time.perf_counter() - started
    return decoded, {"decode_steps": float(decoded.steps), "decode_seconds": seconds}


def _outputs(
    compiled: CompiledSuite,
    cont_lp: torch.Tensor,
    cont_miss: torch.Tensor,
    kl_pos: torch.Tensor,
    top1_pos: torch.Tensor,
    generated: Sequence[list[int]],
    texts: Sequence[str],
) -> tuple[dict[int, Any], list[bool]]:
    """Each item's output (by suite index) and whether its log-probabilities were finite."""
    outputs: dict[int, Any] = {}
    bad = [False] * len(compiled.suite.items)
    conts = compiled.loglik_offsets.tolist()
    for r, index in enumerate(compiled.loglik_items):
        a, b = conts[r], conts[r + 1]
        outputs[index] = LoglikOutput(cont_lp[a:b], compiled.cont_len[a:b], cont_miss[a:b])
        bad[index] = not bool(torch.isfinite(cont_lp[a:b]).all())
    positions = compiled.dist_offsets.tolist()
    for d, index in enumerate(compiled.dist_items):
        a, b = positions[d], positions[d + 1]
        outputs[index] = DistributionOutput(kl_pos[a:b], top1_pos[a:b])
        bad[index] = not bool(torch.isfinite(kl_pos[a:b]).all())
    for ordinal, index in enumerate(compiled.gen_items):
        outputs[index] = GenerateOutput(generated[ordinal], texts[ordinal])
    return outputs, bad


def _score_kinds(
    compiled: CompiledSuite, outputs: dict[int, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-item values over the suite and the kinds' records, each kind scoring its items."""
    items = compiled.suite.items
    n = len(items)
    values = {m: torch.full((n,), float("nan"), dtype=torch.float64) for m in item_metrics()}
    records: dict[str, torch.Tensor] = {}
    by_kind: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_kind.setdefault(item.kind, []).append(index)
    for name, indices in by_kind.items():
        kind = get_kind(name)
        mine = [items[i] for i in indices]
        theirs = [outputs[i] for i in indices]
        where = torch.tensor(indices)
        for metric, scores in kind.score(mine, theirs).items():
            values[metric][where] = scores.to(torch.float64)
        records.update({f"{name}/{k}": v for k, v in kind.records(mine, theirs).items()})
    return values, records


def _score_local(
    model: PreTrainedModel,
    compiled: CompiledSuite,
    base_topk: tuple[torch.Tensor, torch.Tensor] | None,
    record_topk: int,
    bar: Task,
) -> list[torch.Tensor]:
    """This rank's share of the log-likelihood and distribution batches.

    Returns ``[cont_lp, cont_miss, kl_pos, top1_pos, *topk]``: slots of other ranks' batches
    stay zero, so a sum over ranks gathers them.
    """
    device = compiled.device
    n_conts = compiled.cont_len.numel()
    cont_lp = torch.zeros(n_conts, dtype=torch.float64, device=device)
    cont_miss = torch.zeros(n_conts, dtype=torch.float64, device=device)

    def loglik(
        lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
    ) -> None:
        cont_lp.index_add_(0, slots, lp[owners, targets].double())
        cont_miss.index_add_(0, slots, (lp.argmax(dim=1)[owners] != targets).double())

    _score_share(model, compiled, compiled.loglik, loglik, bar)
    n_pos = compiled.n_dist_positions
    kl_pos = torch.zeros(n_pos, dtype=torch.float64, device=device)
    top1_pos = torch.zeros(n_pos, dtype=torch.float64, device=device)
    topk: list[torch.Tensor] = []
    if record_topk:
        topk = [
            torch.zeros(n_pos, record_topk, dtype=torch.float32, device=device),
            torch.zeros(n_pos, record_topk, dtype=torch.int32, device=device),
        ]
    base = None if base_topk is None else (base_topk[0].to(device), base_topk[1].to(device))

    def distribution(
        lp: torch.Tensor, _: torch.Tensor, __: torch.Tensor, slots: torch.Tensor
    ) -> None:
        if topk:
            top_values, top_ids = top_k(lp, topk[0].shape[1])
            topk[0][slots] = top_values
            topk[1][slots] = top_ids
        elif base is not None:
            kl, top1 = kl_against_topk(lp, base[0][slots], base[1][slots])
            kl_pos[slots] = kl
            top1_pos[slots] = top1

    _score_share(model, compiled, compiled.dist, distribution, bar)
    return [cont_lp, cont_miss, kl_pos, top1_pos, *topk]


def _score_share(
    model: torch.nn.Module,
    compiled: CompiledSuite,
    batches: Sequence[Batch | CachedBatch],
    consume: Consume,
    bar: Task,
) -> None:
    """Score this rank's share of ``batches``; its dummy passes are computed and discarded
    (they only keep the ranks in step)."""
    for batch, dummy in share(batches):
        score_batch(model, batch, compiled.layout, compiled.budget, discard if dummy else consume)
        bar.advance()


def generate_continuations(model: PreTrainedModel, compiled: CompiledSuite) -> list[list[int]]:
    """The model's greedy continuation of every prompt-based distribution item.

    Building a reference records them; each later round scores the current model's
    next-token distributions along the base model's own reply.
    """
    if not compiled.pending_items:
        return []
    batches = generation_batches(
        compiled.pending_prompts, compiled.budget, compiled.pad_id, compiled.device
    )
    with preserved_state(model), no_grad(model), compiled.compute.context():
        decoded = greedy_replies(
            model,
            batches,
            len(compiled.pending_items),
            pad_id=compiled.pad_id,
            eos_ids=compiled.eos_ids,
            device=compiled.device,
        )
    return decoded.replies

"""The probe runner: the only code that touches the model while probing (DESIGN.md §6).

``compile_suite`` tokenises a suite once and lays its requests out in length-sorted batches
that fit a budget (tokens, and the bytes :mod:`driftwatch.memory` estimates a pass needs), on
the model's device (the layout itself is :mod:`driftwatch.batching`). ``run_probes`` executes
them under ``torch.inference_mode`` and returns per-item scores.

Log-likelihood requests (``choice``, ``target``) use the *packed* layout where the model
accepts a custom 4-D attention mask: one row per item holding the prompt followed by every
option, each option attending to the prompt and to itself only, positions restarting after the
prompt. Each prompt is computed once and nothing is padded per option. Only the positions
whose next-token distribution is needed go through the output head (the full-vocabulary
projection is a large share of a small model's forward: about a fifth of SmolLM2-135M's, see
docs/benchmarks.md). At compile time the packed
result of one item is checked against a plain forward of each option; if the model's attention
does not honour the mask, the runner falls back to the *cached* layout (prompts once with a KV
cache, re-indexed over their options) and, failing that, to one row per (prompt, option) with
an ordinary causal mask. It says so in the log and in :attr:`CompiledSuite.layout`.

Generation requests are batched with left padding and decoded greedily by ``model.generate``.

A probe round changes nothing it does not put back: the train/eval mode of every module,
``config.use_cache``, gradient checkpointing, and the Python, NumPy, CPU and CUDA random
number generator states.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from driftwatch.batching import (
    Batch,
    CachedBatch,
    CompiledSuite,
    Layout,
    LoglikRequest,
    cached_batches,
    collect_requests,
    generation_batches,
    loglik_rows,
    pack_rows,
)
from driftwatch.drift import ITEM_METRICS
from driftwatch.errors import DriftwatchError
from driftwatch.memory import Budget, pass_costs
from driftwatch.probes import choice as choice_probe
from driftwatch.probes import distribution as dist_probe
from driftwatch.probes import generate as generate_probe
from driftwatch.probes import target as target_probe
from driftwatch.suite import ProbeSuite

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CompiledSuite",
    "ProbeResult",
    "ProbeRoundError",
    "compile_suite",
    "generate_continuations",
    "preserved_state",
    "run_probes",
]

logger = logging.getLogger(__name__)

# receives one chunk of u scored positions and the m queries read from them: (log-probs
# (u, V), owners (m,): the row each query reads, next tokens (m,), slots (m,)); distribution
# queries are one per position, so for them owners is arange(u) and rows align with slots
Consume = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
# Model configs whose output head does more than a linear projection (soft-capping, scaling):
# for those the runner uses the model's own forward instead of backbone + lm_head.
_HEAD_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_mult")


@dataclass
class ProbeResult:
    """Per-item outcome of one probe round.

    ``values[metric]`` is a ``(N,)`` float64 tensor over ``suite.items`` (NaN where the metric
    does not apply to an item). ``generated`` holds the generated token ids per generate item,
    ``topk`` the distribution top-k (values, ids) when the round was recorded as a reference.
    """

    values: dict[str, torch.Tensor]
    option_logprobs: torch.Tensor  # (N_choice, max options), -inf padded
    generated: list[list[int]]
    texts: list[str]
    topk: tuple[torch.Tensor, torch.Tensor] | None
    seconds: float
    tokens: dict[str, int]
    # (N,) True where the model produced NaN/inf log-probabilities for the item; its values
    # are NaN then, so no score is computed from garbage
    nonfinite: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))


# ---------------------------------------------------------------------------------- state
@contextlib.contextmanager
def preserved_state(model: torch.nn.Module) -> Iterator[None]:
    """Put the model in eval mode for probing and restore everything a probe round touches."""
    modes = [(m, m.training) for m in model.modules()]
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    checkpointing = _checkpointing(model)
    py_state = random.getstate()
    np_state = _numpy_state()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        if config is not None and use_cache is not None:
            config.use_cache = use_cache
        if checkpointing is not None and _checkpointing(model) != checkpointing:
            verb = "enable" if checkpointing else "disable"
            for prefix in ("activation", "gradient"):
                toggle = getattr(model, f"{prefix}_checkpointing_{verb}", None)
                if toggle is not None:
                    toggle()
                    break
        random.setstate(py_state)
        if np_state is not None:
            import numpy as np

            np.random.set_state(np_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _checkpointing(model: torch.nn.Module) -> bool | None:
    """Gradient (activation) checkpointing state, under its transformers 5 or 4 name."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        # on the instance: a PEFT wrapper forwards the attribute to the model it wraps
        value = getattr(model, name, None)
        if value is not None:
            return bool(value)
    return None


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:
        return None
    return np.random.get_state()


# -------------------------------------------------------------------------------- compile
def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


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
) -> CompiledSuite:
    """Tokenise ``suite`` once and lay it out in batches on ``model``'s device.

    Args:
        token_budget: most tokens (rows × padded length) in one forward pass.
        memory_budget: most bytes one pass may allocate beyond the weights, by the estimate
            of :func:`driftwatch.memory.pass_costs` (``None``: no byte cap). A model whose
            config gives no estimate is batched by ``token_budget`` alone, with a warning.
        layout: ``"auto"`` picks the first of ``"packed"``, ``"cached"`` and
            ``"concatenated"`` whose results reproduce plain forward passes on one item (see
            :func:`_choose_layout`); naming a layout skips the check.

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
    device = _model_device(model)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    eos = tokenizer.eos_token_id
    req = collect_requests(suite, tokenizer, _context_length(model))
    chosen: Layout = layout if layout != "auto" else _choose_layout(model, req.loglik)
    loglik: list[Batch] | list[CachedBatch] = (
        cached_batches(req.loglik, budget, pad_id, device)
        if chosen == "cached"
        else pack_rows(loglik_rows(req.loglik, chosen), budget, pad_id, device)
    )
    dist = pack_rows(req.dist_rows, budget, pad_id, device)
    gen = generation_batches(req.gen_prompts, budget, pad_id, device)
    stats = {
        "real_tokens": sum(b.real_tokens for b in [*loglik, *dist])
        + sum(b.real_tokens for b in gen),
        "padded_tokens": sum(b.padded_tokens for b in [*loglik, *dist])
        + sum(int(b.input_ids.numel()) for b in gen),
        "forward_passes": len(loglik) * (2 if chosen == "cached" else 1) + len(dist),
        "generate_calls": len(gen),
    }
    logger.info(
        "compiled suite %r: %d items, layout=%s, %d forward passes, %d generate calls",
        suite.name,
        len(suite),
        chosen,
        stats["forward_passes"],
        stats["generate_calls"],
    )
    return CompiledSuite(
        suite=suite,
        layout=chosen,
        budget=budget,
        device=device,
        loglik=loglik,
        dist=dist,
        gen=gen,
        cont_item=torch.tensor(req.cont_item, dtype=torch.long),
        cont_option=torch.tensor(req.cont_option, dtype=torch.long),
        cont_len=torch.tensor(req.cont_len, dtype=torch.long),
        cont_choice_row=torch.tensor(req.cont_choice_row, dtype=torch.long),
        choice_items=req.choice_items,
        dist_offsets=torch.tensor(req.dist_offsets, dtype=torch.long),
        dist_items=req.dist_items,
        gen_items=req.gen_items,
        pad_id=int(pad_id),
        eos_ids=[eos] if isinstance(eos, int) else [],
        stats=stats,
        dist_rows=req.dist_rows,
        pending_prompts=req.pending_prompts,
        pending_items=req.pending_items,
    )


def _choose_layout(model: PreTrainedModel, requests: list[LoglikRequest]) -> Layout:
    """The fastest layout whose results match plain per-option forwards on one item.

    ``packed`` needs attention that honours a custom 4-D mask; ``cached`` needs a KV cache
    that can be re-indexed over the batch; ``concatenated`` works with any causal LM.
    """
    probe = next((r for r in requests if len(r[1]) > 1), None)
    if probe is None:
        return "packed"
    prompt, conts, _ = probe
    device = _model_device(model)
    with preserved_state(model), torch.inference_mode():
        plain = []
        for cont in conts:
            ids = torch.tensor([prompt + cont], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
            at = torch.arange(len(prompt) - 1, len(prompt) + len(cont) - 1, device=device)
            plain.append(logits[at, torch.tensor(cont, device=device)].double().sum())
        reference = torch.stack(plain)
        tol = 1e-3 if _model_dtype(model) == torch.float32 else 0.15
        for layout in ("packed", "cached"):
            batch: Batch | CachedBatch = (
                pack_rows(loglik_rows([probe], "packed"), Budget(1 << 30), 0, device)[0]
                if layout == "packed"
                else cached_batches([probe], Budget(1 << 30), 0, device)[0]
            )
            try:
                got = _continuation_logprobs(model, batch, layout, len(conts), probe[2])
            except (RuntimeError, ValueError, TypeError, AttributeError) as err:
                logger.warning("%s layout unavailable for this model (%s)", layout, err)
                continue
            error = float((got - reference).abs().max())
            if error <= tol * max(1.0, float(reference.abs().max())):
                return layout
            logger.warning(
                "%s layout does not reproduce plain forwards (max log-prob error %.3g)",
                layout,
                error,
            )
    logger.warning("using one row per option (the slowest layout)")
    return "concatenated"


def _continuation_logprobs(
    model: torch.nn.Module, batch: Batch | CachedBatch, layout: Layout, count: int, first: int
) -> torch.Tensor:
    """``(count,)`` summed log-probabilities of the continuations ``first…first+count-1``."""
    got = torch.zeros(count, dtype=torch.float64, device=batch.scored.gather.device)

    def add(
        lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
    ) -> None:
        got.index_add_(0, slots - first, lp[owners, targets].double())

    _score_batch(model, batch, layout, Budget(1 << 30), add)
    return got


# ---------------------------------------------------------------------------------- run
def _head_split(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, output head) when logits are a plain projection of the last hidden state."""
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_MODIFIERS):
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


def _mask4d(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) additive mask: a token sees the prompt and earlier tokens of its option."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    keys, queries = segments[:, None, :], segments[:, :, None]
    allowed = causal & (keys >= 0) & ((keys == 0) | (keys == queries))
    # padding attends to itself, so no query row is fully masked (SDPA would return NaN)
    allowed |= torch.eye(width, dtype=torch.bool, device=segments.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _score_batch(
    model: torch.nn.Module,
    batch: Batch | CachedBatch,
    layout: Layout,
    budget: Budget,
    consume: Consume,
) -> None:
    """Float32 log-probabilities at the batch's scored positions, handed to ``consume`` in
    chunks of positions with the queries that read them (see :data:`Consume`).

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
            _mask4d(batch.segments, _model_dtype(model))
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
        rows = _log_softmax_(rows.float())
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
    name = "cache" if "cache" in inspect.signature(net.forward).parameters else "past_key_values"
    second = net(
        input_ids=batch.option_ids,
        attention_mask=torch.cat([batch.prompt_mask[batch.expand], batch.option_mask], dim=1),
        position_ids=batch.option_positions,
        use_cache=True,
        **{name: cache},
    )
    return torch.cat([_flatten(first, hidden=hidden), _flatten(second, hidden=hidden)])


def run_probes(
    model: PreTrainedModel,
    compiled: CompiledSuite,
    tokenizer: PreTrainedTokenizerBase,
    *,
    base_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    record_topk: int = 0,
) -> ProbeResult:
    """Run one probe round.

    Args:
        base_topk: the reference's distribution top-k ``(values, ids)``, each ``(P, k)``;
            needed to score distribution items against the base.
        record_topk: record this many top log-probs per distribution position (building a
            reference) instead of scoring against ``base_topk``.
    """
    if compiled.needs_continuations:
        raise DriftwatchError(
            "the suite has prompt-based distribution items: attach the reference's base "
            "continuations first (batching.attach_continuations(compiled, "
            "reference.continuations))"
        )
    if compiled.dist and base_topk is None and not record_topk:
        raise DriftwatchError(
            "distribution probes need the reference's top-k (base_topk) or "
            "record_topk > 0 when building a reference"
        )
    started = time.perf_counter()
    device = compiled.device
    n_items = len(compiled.suite.items)
    rank, world = process_group()
    with preserved_state(model), torch.inference_mode():
        error: Exception | None = None
        try:
            parts = _score_local(model, compiled, rank, world, base_topk, record_topk)
        except Exception as err:  # every rank must hear of it before the next collective
            error = err
        _agree(error, device, world)
        if world > 1:  # each slot was filled by exactly one rank: a sum gathers them
            for tensor in parts:
                torch.distributed.all_reduce(tensor)
        cont_lp, cont_miss, kl_pos, top1_pos = parts[:4]
        topk = (parts[4], parts[5]) if record_topk else None
        generated, gen_bad = _generate(model, compiled, rank, world)
    texts = [str(tokenizer.decode(ids, skip_special_tokens=True)) for ids in generated]
    nonfinite = torch.zeros(n_items, dtype=torch.bool)
    bad_conts = ~torch.isfinite(cont_lp.cpu())
    nonfinite[compiled.cont_item[bad_conts]] = True
    if compiled.gen_items:
        nonfinite[torch.tensor(compiled.gen_items)[gen_bad]] = True

    values = {
        name: torch.full((n_items,), float("nan"), dtype=torch.float64) for name in ITEM_METRICS
    }
    option_logprobs = _fill_loglik(compiled, cont_lp.cpu(), cont_miss.cpu(), values)
    if compiled.dist_items:
        if topk is not None:  # the base against itself: no drift by definition
            kl_item = torch.zeros(len(compiled.dist_items), dtype=torch.float64)
            top1_item = torch.ones(len(compiled.dist_items), dtype=torch.float64)
        else:
            kl_item = _segment_mean(kl_pos.cpu(), compiled.dist_offsets)
            top1_item = _segment_mean(top1_pos.cpu(), compiled.dist_offsets)
        index = torch.tensor(compiled.dist_items)
        values["kl"][index] = kl_item
        values["top1_agreement"][index] = top1_item
        nonfinite[index[~torch.isfinite(kl_item)]] = True
    if compiled.gen_items:
        checks = [compiled.suite.items[i].check for i in compiled.gen_items]
        index = torch.tensor(compiled.gen_items)
        for name, scored in generate_probe.score(texts, checks).items():
            values[name][index] = scored
    if bool(nonfinite.any()):
        for tensor in values.values():
            tensor[nonfinite] = float("nan")
    seconds = time.perf_counter() - started
    return ProbeResult(
        values=values,
        option_logprobs=option_logprobs,
        generated=generated,
        texts=texts,
        topk=None if topk is None else (topk[0].cpu(), topk[1].cpu()),
        seconds=seconds,
        tokens=dict(compiled.stats),
        nonfinite=nonfinite,
    )


def _score_local(
    model: PreTrainedModel,
    compiled: CompiledSuite,
    rank: int,
    world: int,
    base_topk: tuple[torch.Tensor, torch.Tensor] | None,
    record_topk: int,
) -> tuple[torch.Tensor, ...]:
    """This rank's share of the log-likelihood and distribution batches.

    Returns ``(cont_lp, cont_miss, kl_pos, top1_pos, *topk)``: slots of other ranks' batches
    stay zero, so a sum over ranks gathers them.
    """
    device = compiled.device
    n_conts = compiled.cont_item.numel()
    cont_lp = torch.zeros(n_conts, dtype=torch.float64, device=device)
    cont_miss = torch.zeros(n_conts, dtype=torch.float64, device=device)

    def loglik(
        lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
    ) -> None:
        cont_lp.index_add_(0, slots, lp[owners, targets].double())
        cont_miss.index_add_(0, slots, (lp.argmax(dim=1)[owners] != targets).double())

    _score_share(model, compiled, compiled.loglik, rank, world, loglik)
    n_pos = compiled.n_dist_positions
    kl_pos = torch.zeros(n_pos, dtype=torch.float64, device=device)
    top1_pos = torch.zeros(n_pos, dtype=torch.float64, device=device)
    topk: tuple[torch.Tensor, torch.Tensor] | None = None
    if record_topk:
        k = record_topk
        topk = (
            torch.zeros(n_pos, k, dtype=torch.float32, device=device),
            torch.zeros(n_pos, k, dtype=torch.int32, device=device),
        )
    base_dev = None if base_topk is None else (base_topk[0].to(device), base_topk[1].to(device))

    def distribution(
        lp: torch.Tensor, _: torch.Tensor, __: torch.Tensor, slots: torch.Tensor
    ) -> None:
        if topk is not None:
            top_values, top_ids = dist_probe.record_topk(lp, topk[0].shape[1])
            topk[0][slots] = top_values
            topk[1][slots] = top_ids
        else:
            assert base_dev is not None  # checked above
            kl, top1 = dist_probe.kl_against_topk(lp, base_dev[0][slots], base_dev[1][slots])
            kl_pos[slots] = kl
            top1_pos[slots] = top1

    _score_share(model, compiled, compiled.dist, rank, world, distribution)
    return (cont_lp, cont_miss, kl_pos, top1_pos, *(topk or ()))


class ProbeRoundError(RuntimeError):
    """Another rank of the process group failed its share of a probe round."""


def _agree(error: BaseException | None, device: torch.device, world: int) -> None:
    """Raise on every rank when any rank failed its local share of a round.

    A rank that fails before a collective would leave the others waiting in it forever; so
    each rank reports its outcome first (none, out of memory, other) and all of them raise
    together: the failing rank its own error, the others an out-of-memory error when that was
    the worst outcome anywhere (so every rank retries with the same smaller budget), else
    :class:`ProbeRoundError`.
    """
    if world > 1:
        code = 0 if error is None else 1 if isinstance(error, torch.OutOfMemoryError) else 2
        flag = torch.tensor([code], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        worst = int(flag.item())
        if error is None and worst == 1:
            raise torch.OutOfMemoryError("another rank ran out of memory in this probe round")
        if error is None and worst == 2:
            raise ProbeRoundError("another rank's share of this probe round failed; see its log")
    if error is not None:
        raise error


def _segment_mean(per_position: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    sizes = offsets[1:] - offsets[:-1]
    owner = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    sums = torch.zeros(sizes.numel(), dtype=torch.float64).index_add_(0, owner, per_position)
    return sums / sizes.double()


def _fill_loglik(
    compiled: CompiledSuite,
    cont_lp: torch.Tensor,
    cont_miss: torch.Tensor,
    values: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Scatter continuation log-likelihoods into per-item choice/target metrics."""
    items = compiled.suite.items
    is_choice = compiled.cont_choice_row >= 0
    choice_items = compiled.choice_items
    width = int(compiled.cont_option[is_choice].max()) + 1 if choice_items else 0
    option_lp = torch.full((len(choice_items), width), float("-inf"), dtype=torch.float64)
    option_len = torch.ones((len(choice_items), width), dtype=torch.long)
    if choice_items:
        rows = compiled.cont_choice_row[is_choice]
        cols = compiled.cont_option[is_choice]
        option_lp[rows, cols] = cont_lp[is_choice]
        option_len[rows, cols] = compiled.cont_len[is_choice]
        answer = torch.tensor([items[i].answer or 0 for i in choice_items])
        scores = choice_probe.score(option_lp, option_len, answer)
        index = torch.tensor(choice_items)
        values["score"][index] = scores["score"]
        values["gold_logprob"][index] = scores["gold_logprob"]
    is_target = ~is_choice
    if bool(is_target.any()):
        scores = target_probe.score(
            cont_lp[is_target], compiled.cont_len[is_target], cont_miss[is_target]
        )
        index = compiled.cont_item[is_target]
        values["score"][index] = scores["score"]
        values["logprob"][index] = scores["logprob"]
    return option_lp.float()


def process_group() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _share(batches: Sequence[Any], rank: int, world: int) -> list[tuple[Any, bool]]:
    """This rank's batches as ``(batch, is_dummy)``: its share, padded with dummy repeats of
    the first batch so every rank runs as many passes as the busiest one (FSDP and friends
    hang otherwise)."""
    mine = [(b, False) for b in batches[rank::world]]
    missing = -(-len(batches) // world) - len(mine)
    return mine + [(batches[0], True)] * missing if missing else mine


def _score_share(
    model: torch.nn.Module,
    compiled: CompiledSuite,
    batches: Sequence[Batch] | Sequence[CachedBatch],
    rank: int,
    world: int,
    consume: Consume,
) -> None:
    """Score this rank's share of ``batches``; its dummy passes are computed and discarded
    (they only keep the ranks in step)."""
    for batch, dummy in _share(batches, rank, world):
        _score_batch(model, batch, compiled.layout, compiled.budget, _discard if dummy else consume)


def _discard(
    lp: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
) -> None:
    pass


class _FiniteWatch:
    """A logits processor that notes the rows whose next-token scores were ever NaN or inf.

    It changes nothing and syncs nothing: the flags stay on the device until the batch ends.
    """

    def __init__(self, rows: int, device: torch.device) -> None:
        self.bad = torch.zeros(rows, dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.bad |= ~torch.isfinite(scores).all(dim=-1)
        return scores


def _generate(
    model: PreTrainedModel, compiled: CompiledSuite, rank: int = 0, world: int = 1
) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy continuations of every generate item, in generate-item order, and a ``(G,)``
    bool tensor that is True where the model's scores were non-finite while decoding it.

    In a process group each rank decodes its share of the batches, always for the full
    longest ``max_new_tokens`` of the suite (no early stop at end-of-sequence, so every rank
    makes the same number of forward passes; each text is cut to its own budget and at the
    first end-of-sequence token afterwards), and
    the token ids are gathered so every rank sees every continuation.
    """
    out: list[list[int]] = [[] for _ in compiled.gen_items]
    bad = torch.zeros(len(out), dtype=torch.long, device=compiled.device)
    if not compiled.gen:
        return out, bad.bool().cpu()
    width = max(b.max_new_tokens for b in compiled.gen)
    gathered = torch.full((len(out), width), -1, dtype=torch.long, device=compiled.device)
    error: Exception | None = None
    try:
        _decode_share(model, compiled, rank, world, gathered, bad)
    except Exception as err:  # every rank must hear of it before the all-reduce below
        error = err
    _agree(error, compiled.device, world)
    if world > 1:
        torch.distributed.all_reduce(gathered, op=torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    for ordinal, ids in enumerate(gathered.tolist()):
        out[ordinal] = _until_eos([t for t in ids if t >= 0], compiled.eos_ids, compiled.pad_id)
    return out, bad.bool().cpu()


def _decode_share(
    model: PreTrainedModel,
    compiled: CompiledSuite,
    rank: int,
    world: int,
    gathered: torch.Tensor,
    bad: torch.Tensor,
) -> None:
    """Decode this rank's generation batches into ``gathered`` (token ids, -1 padded) and
    ``bad`` (non-finite scores seen), both indexed by generate-item ordinal."""
    from transformers import GenerationConfig, LogitsProcessorList

    batches = compiled.gen
    width = gathered.shape[1]
    for batch, dummy in _share(batches, rank, world):
        config = GenerationConfig(
            # in a group every batch decodes the longest budget: equal passes on every rank
            max_new_tokens=batch.max_new_tokens if world == 1 else width,
            do_sample=False,
            num_beams=1,
            pad_token_id=compiled.pad_id,
            # [] rather than None: None would fall back to the model's own end-of-sequence id
            eos_token_id=(compiled.eos_ids or None) if world == 1 else [],
            use_cache=True,
        )
        watch = _FiniteWatch(batch.input_ids.shape[0], batch.input_ids.device)
        sequences = cast(Any, model).generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            generation_config=config,
            logits_processor=LogitsProcessorList([watch]),
        )
        if dummy:
            continue
        new = sequences[:, batch.input_ids.shape[1] :][:, : batch.max_new_tokens]
        for row, limit in enumerate(batch.budgets):  # each row stops at its own budget
            new[row, limit:] = -1
        rows = torch.tensor(batch.items, device=new.device)
        gathered[rows, : new.shape[1]] = new
        bad[rows] = watch.bad.long()


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
    view = replace(compiled, gen=batches, gen_items=compiled.pending_items)
    rank, world = process_group()
    with preserved_state(model), torch.inference_mode():
        return _generate(model, view, rank, world)[0]


def _until_eos(ids: Sequence[int], eos_ids: Sequence[int], pad_id: int) -> list[int]:
    for n, tok in enumerate(ids):
        if tok in eos_ids:
            return list(ids[:n])
    return list(ids)

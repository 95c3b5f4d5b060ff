"""The working memory of a probe pass, estimated from the model's config, and the budget it
must fit (docs/benchmarks.md §4).

A probe round runs between training steps, on top of everything training keeps (weights,
gradients, optimizer state), so its own peak should be small against the weights.
:class:`Budget` caps every batch twice: by tokens (rows × padded width) and, where the model's
config lets driftwatch estimate it, by bytes. The estimate is an upper bound of the peak
memory a forward pass allocates beyond the weights, per token and per (query, key) pair, plus
the KV cache of a generation batch; its constants were fitted to exact allocation
measurements of seven decoder families (Llama, Mistral, Qwen2, Qwen3, Gemma, Phi-3, GPT-2,
in float32 and bfloat16) and ``tests/test_memory.py`` checks that it bounds the real peak.

Why per token: in inference mode a decoder layer frees its activations before the next one
starts, so a pass peaks inside one layer, at the larger of its attention block (query, key,
value and their rotary copies) and its MLP block (the ``intermediate_size`` projections, which
dominate). SDPA did not materialise the attention scores in these measurements (CPU, a 4-D
float mask); eager attention does, and is charged for them per pair.
Why the KV cache: on a small model it is large against the weights (SmolLM2-135M: 46 KB per
token in float32, a 24-row generation batch of 97 tokens needs 20% of the weights for it).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace
from typing import Any

import torch

__all__ = ["HEAD_BYTES", "Budget", "PassCosts", "pass_costs", "share_bytes", "weight_bytes"]

logger = logging.getLogger(__name__)

# The output head is applied to as many scored positions at once as fit this many bytes of
# float32 log-probabilities (170 positions of a 49k vocabulary), or half the byte budget when
# that is smaller.
HEAD_BYTES = 32 << 20
# activations computed by one native kernel; any other (gelu_new, quick_gelu, …) is written in
# Python and keeps two more intermediate-size temporaries alive (measured on GPT-2)
_NATIVE_ACTIVATIONS = frozenset(
    {
        "silu",
        "swish",
        "gelu",
        "gelu_pytorch_tanh",
        "gelu_python_tanh",
        "relu",
        "relu6",
        "tanh",
        "sigmoid",
        "leaky_relu",
        "hardswish",
        "linear",
    }
)
# scores, the masked copy and the float32 softmax of eager attention, per head and pair
_EAGER_PAIR_FACTOR = 3


@dataclass(frozen=True)
class PassCosts:
    """Bytes a probe pass allocates beyond the weights, per unit of work (an upper bound)."""

    token: int  # activations per token of a forward pass without a cache
    pair: int  # per (query, key) pair of a batch: the 4-D mask, eager attention's scores
    kv: int  # KV cache per token, all layers together
    layers: int  # decoder layers (a cache update copies one layer's share)
    logit: int  # per vocabulary entry of one scored position: float32 log-probs (+ the logits)
    vocab: int
    prefill_logits: bool  # generate's first pass computes logits at every prompt position

    def forward(self, rows: int, width: int) -> int:
        """Peak of one forward pass over ``rows`` padded rows of ``width`` tokens."""
        return rows * width * (self.token + width * self.pair)

    def generation(self, rows: int, width: int, new: int) -> int:
        """Peak of one generate call: the larger of the prompt pass (its activations while the
        cache fills) and the last decoding step (the whole cache, one layer's copy while it
        grows, the step's logits)."""
        prefill = rows * width * (self.kv + self.token + width * self.pair)
        if self.prefill_logits:
            prefill += rows * width * self.vocab * self.logit
        cache = rows * (width + new) * self.kv
        last = cache + 2 * cache // max(self.layers, 1) + 4 * rows * self.vocab * 4
        return max(prefill, last)


@dataclass(frozen=True)
class Budget:
    """How large one probe pass may be: ``tokens`` (rows × padded width) and, when ``bytes`` and
    ``costs`` are both set, the estimated peak memory of the pass."""

    tokens: int
    bytes: int | None = None
    costs: PassCosts | None = None

    @property
    def capped(self) -> bool:
        """True when the byte cap applies (a budget and an estimate for the model)."""
        return self.bytes is not None and self.costs is not None

    def rows(self, width: int, *, at_least: int = 1, cached: bool = False) -> int:
        """Most rows of ``width`` tokens in one forward pass (never fewer than ``at_least``);
        ``cached``: the rows also hold a KV cache (the "cached" layout)."""
        count = self.tokens // max(width, 1)
        if self.bytes is not None and self.costs is not None:
            per_row = self.costs.forward(1, width) + (width * self.costs.kv if cached else 0)
            count = min(count, self.bytes // max(per_row, 1))
        return max(at_least, count)

    def fits_generation(self, rows: int, width: int, new: int) -> bool:
        """Whether a generate call over ``rows`` prompts padded to ``width`` fits."""
        if rows * (width + new) > self.tokens:
            return False
        if self.bytes is not None and self.costs is not None:
            return self.costs.generation(rows, width, new) <= self.bytes
        return True

    def head_rows(self, vocab: int) -> int:
        """Scored positions per output-head chunk (at least 16)."""
        limit = HEAD_BYTES
        per_row = 4 * vocab
        if self.bytes is not None and self.costs is not None:
            limit = min(limit, self.bytes // 2)
            per_row = self.costs.logit * vocab
        return max(16, limit // max(per_row, 1))

    def halved(self) -> Budget:
        """The budget for a retry after running out of memory."""
        return replace(
            self,
            tokens=max(1, self.tokens // 2),
            bytes=None if self.bytes is None else self.bytes // 2,
        )


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters (for PEFT, the base weights and the adapters)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def share_bytes(model: torch.nn.Module, share: float | None) -> int | None:
    """``share`` of the model's weights in bytes (at least 1), the byte cap of a probe pass;
    ``None`` for no cap."""
    return None if share is None else max(1, int(share * weight_bytes(model)))


def pass_costs(model: torch.nn.Module) -> PassCosts | None:
    """The per-unit costs of a probe pass on ``model``, from its config; ``None`` when the
    config lacks the sizes the estimate needs (``hidden_size``, ``num_attention_heads``,
    ``num_hidden_layers``, ``vocab_size``).

    Activations are counted in the dtype of the model's parameters (a probe round runs in it).
    Mixture-of-experts configs are counted as a dense MLP of ``num_experts_per_tok`` times the
    expert size (not measured).
    """
    # a PEFT wrapper generates through its base model, whose forward names logits_to_keep
    get_base = getattr(model, "get_base_model", None)
    base: Any = get_base() if callable(get_base) else model
    config: Any = getattr(base, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    hidden = _size(config, "hidden_size")
    heads = _size(config, "num_attention_heads")
    layers = _size(config, "num_hidden_layers")
    vocab = _size(config, "vocab_size")
    if hidden is None or heads is None or layers is None or vocab is None:
        return None
    kv_heads = _size(config, "num_key_value_heads") or heads
    head_dim = _size(config, "head_dim") or hidden // heads
    inter = (
        _size(config, "intermediate_size")
        or _size(config, "n_inner")
        or _size(config, "ffn_dim")
        or 4 * hidden
    )
    inter *= _size(config, "num_experts_per_tok") or 1
    act = next(
        (
            getattr(config, name)
            for name in ("hidden_act", "hidden_activation", "activation_function")
            if isinstance(getattr(config, name, None), str)
        ),
        "silu",
    )
    element = next(model.parameters()).element_size()
    queries, keys = heads * head_dim, kv_heads * head_dim
    # the MLP block: residual stream and normed input, the up (and gate) projections, the
    # activation and the product; a fused gate_up projection keeps both halves alive
    mlp = 3 * hidden + 4 * inter
    if any(name.endswith("gate_up_proj") for name, _ in model.named_modules()):
        mlp += inter
    if act not in _NATIVE_ACTIVATIONS:
        mlp += 2 * inter
    # the attention block: query, key and value, their rotary copies, the repeated key and
    # value heads of grouped-query attention, the output
    attention = 2 * hidden + 6 * queries + 4 * keys
    pair = element + 3  # the additive 4-D mask, and the boolean masks it is built from
    if getattr(config, "_attn_implementation", None) == "eager":
        pair += heads * (_EAGER_PAIR_FACTOR * element + 4)
    forward = getattr(base, "forward", None)
    try:
        keeps = forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        keeps = False
    return PassCosts(
        token=element * max(mlp, attention),
        pair=pair,
        kv=2 * layers * keys * element,
        layers=layers,
        logit=4 + (element if element != 4 else 0),
        vocab=vocab,
        prefill_logits=not keeps,
    )


def _size(config: Any, name: str) -> int | None:
    value = getattr(config, name, None)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value

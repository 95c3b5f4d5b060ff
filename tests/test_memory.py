"""The memory estimate bounds what probe passes really allocate, and batches keep to the budget.

Peaks are exact CPU allocator peaks (tests/memtrace.py), not timings.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GenerationConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from driftwatch import DriftMonitor, ProbeBudget, ReferenceSpec
from driftwatch.errors import DriftwatchError
from driftwatch.memory import Budget, PassCosts, pass_costs, weight_bytes
from driftwatch.runner import compile_suite, preserved_state
from driftwatch.runner.kernels import discard, mask4d, score_batch
from driftwatch.suite import ProbeSuite
from tests.conftest import LAYOUT_NOISE, largest_change
from tests.memtrace import allocated_peak

VOCAB = 512
# the families the estimate's constants were fitted to (docs/benchmarks.md §4), at small sizes
# with their real proportions: hidden, intermediate, query heads, key/value heads, head size
CONFIGS = {
    "llama": lambda: LlamaConfig(
        hidden_size=192, intermediate_size=512, num_attention_heads=3, num_key_value_heads=1
    ),
    "mistral": lambda: MistralConfig(
        hidden_size=256, intermediate_size=896, num_attention_heads=4, num_key_value_heads=1
    ),
    "qwen2": lambda: Qwen2Config(
        hidden_size=224, intermediate_size=1216, num_attention_heads=7, num_key_value_heads=1
    ),
    "qwen3": lambda: Qwen3Config(
        hidden_size=256,
        intermediate_size=768,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
    ),
    "gemma": lambda: GemmaConfig(
        hidden_size=128,
        intermediate_size=512,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=64,
    ),
    "phi3": lambda: Phi3Config(
        hidden_size=192,
        intermediate_size=512,
        num_attention_heads=3,
        num_key_value_heads=3,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "gpt2": lambda: GPT2Config(n_embd=192, n_head=3, bos_token_id=1, eos_token_id=2),
}


def _model(
    family: str, dtype: torch.dtype, attention: str = "sdpa", vocab: int = VOCAB
) -> torch.nn.Module:
    config = CONFIGS[family]()
    config.vocab_size = vocab
    config.num_hidden_layers = 2
    config._attn_implementation = attention
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def _costs(model: torch.nn.Module) -> PassCosts:
    costs = pass_costs(model)
    assert costs is not None
    return costs


def _forward_peak(model: torch.nn.Module, rows: int, width: int) -> int:
    """Exact peak of the packed forward pass the runner makes (mask included)."""
    ids = torch.randint(3, VOCAB, (rows, width))
    segments = torch.zeros(rows, width, dtype=torch.long)
    segments[:, width // 2 :] = 1
    positions = torch.arange(width).expand(rows, width)
    backbone = model.get_decoder()
    dtype = next(model.parameters()).dtype

    def run() -> None:
        mask = mask4d(segments, dtype)
        backbone(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=False)

    with torch.inference_mode():
        return allocated_peak(run)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_forward_estimate_bounds_the_real_peak(family, dtype):
    model = _model(family, dtype)
    costs = _costs(model)
    for rows, width in ((16, 32), (2, 256)):
        peak = _forward_peak(model, rows, width)
        estimate = costs.forward(rows, width)
        # an upper bound, and not a wildly loose one (batches would shrink for nothing)
        assert peak <= estimate <= 1.6 * peak, (family, rows, width, peak, estimate)


def test_eager_attention_is_charged_per_pair():
    sdpa, eager = _model("llama", torch.float32), _model("llama", torch.float32, "eager")
    assert _costs(eager).pair > _costs(sdpa).pair
    peak = _forward_peak(eager, 2, 256)
    assert peak <= _costs(eager).forward(2, 256)
    assert peak > _costs(sdpa).forward(2, 256)  # the scores are real: sdpa's bound is too low


@pytest.mark.parametrize("family", ["llama", "gpt2", "phi3"])
def test_generation_estimate_bounds_the_real_peak(family):
    model = _model(family, torch.float32)
    costs = _costs(model)
    rows, width, new = 8, 40, 24
    ids = torch.randint(3, VOCAB, (rows, width))
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[: rows // 2, :7] = 0  # left padding, as the runner batches prompts
    config = GenerationConfig(max_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=[])

    def run() -> None:
        model.generate(input_ids=ids, attention_mask=mask, generation_config=config)

    with torch.inference_mode():
        peak = allocated_peak(run)
    estimate = costs.generation(rows, width, new)
    assert peak <= estimate <= 1.6 * peak, (peak, estimate)


def test_kv_cache_bytes_per_token_match_the_cache_itself():
    model = _model("qwen3", torch.bfloat16)
    with torch.inference_mode():
        out = model(input_ids=torch.randint(3, VOCAB, (3, 10)), use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    held = sum(
        layer.keys.numel() * layer.keys.element_size()
        + layer.values.numel() * layer.values.element_size()
        for layer in cache.layers
    )
    assert _costs(model).kv * 3 * 10 == held


def test_a_config_without_sizes_gives_no_estimate():
    class Bare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

    assert pass_costs(Bare()) is None


def test_budget_rows_and_generation_fit_respect_both_caps():
    costs = PassCosts(
        token=1000, pair=10, kv=500, layers=4, logit=4, vocab=100, prefill_logits=False
    )
    tokens_only = Budget(4096)
    assert tokens_only.rows(64) == 64 and not tokens_only.capped
    capped = Budget(4096, bytes=10 * costs.forward(1, 64), costs=costs)
    assert capped.rows(64) == 10
    assert capped.rows(10_000) == 1  # a row too large still gets a pass of its own
    assert capped.rows(10_000, at_least=0) == 0
    assert capped.fits_generation(2, 32, 16)
    assert not Budget(4096, bytes=costs.generation(2, 32, 16) - 1, costs=costs).fits_generation(
        2, 32, 16
    )
    assert not Budget(2 * 48 - 1).fits_generation(2, 32, 16)  # tokens: rows × (prompt + new)
    half = capped.halved()
    assert (half.tokens, half.bytes) == (2048, capped.bytes // 2)
    assert capped.head_rows(100) == max(16, capped.bytes // 2 // (4 * 100))


def test_compiled_batches_fit_the_memory_budget(tokenizer):
    model = _model("llama", torch.float32, vocab=len(tokenizer))
    suite = ProbeSuite.load("smoke")
    budget = weight_bytes(model) // 20
    wide = compile_suite(suite, tokenizer, model, token_budget=4096)
    capped = compile_suite(suite, tokenizer, model, token_budget=4096, memory_budget=budget)
    costs = _costs(model)
    assert capped.budget.capped and not wide.budget.capped
    for batch in [*capped.loglik, *capped.dist]:
        rows, width = batch.input_ids.shape
        assert rows == 1 or costs.forward(rows, width) <= budget
    for batch in capped.gen:
        rows, width = batch.input_ids.shape
        assert rows == 1 or costs.generation(rows, width, batch.max_new_tokens) <= budget
    assert len(capped.gen) > len(wide.gen)  # the cap binds: more, smaller generate calls
    assert len(capped.loglik) > len(wide.loglik)


def test_a_capped_round_scores_what_an_uncapped_one_does(tokenizer, cache):
    """Smaller batches change how the work is cut, not the results."""
    model = _model("llama", torch.float32, vocab=len(tokenizer))
    refs = ReferenceSpec(cache_dir=cache)
    wide = DriftMonitor("smoke", budget=ProbeBudget(memory_share=None), reference=refs)
    wide.start(model, tokenizer)
    capped = DriftMonitor("smoke", budget=ProbeBudget(memory_share=0.05), reference=refs)
    capped.start(model, tokenizer)  # reuses the reference built from the wide batches
    assert len(capped.session.compiled.gen) > len(wide.session.compiled.gen)
    report, result = capped.measure(model, 0)
    _, expected = wide.measure(model, 0)
    assert result.generated == expected.generated
    for name, values in expected.values.items():
        torch.testing.assert_close(result.values[name], values, equal_nan=True, atol=1e-5, rtol=0)
    assert largest_change(report) <= LAYOUT_NOISE


def test_head_chunks_hold_one_buffer_at_a_time(tokenizer):
    """The output head's peak is one chunk of log-probabilities (and a few rows of scratch),
    not one chunk per consumer and generator step."""
    vocab = 1 << 16  # a large vocabulary, so the head, not the backbone, sets the peak
    model = _model("llama", torch.float32, vocab=vocab)
    compiled = compile_suite(
        ProbeSuite.load("smoke"), tokenizer, model, token_budget=1 << 16, layout="packed"
    )
    batch = max(compiled.dist, key=lambda b: b.scored.gather.numel())
    rows = 40
    chunk = rows * 4 * vocab
    budget = Budget(1 << 16, bytes=2 * chunk, costs=_costs(model))
    assert budget.head_rows(vocab) == rows and batch.scored.gather.numel() > 2 * rows
    with preserved_state(model), torch.inference_mode():
        backbone = _forward_peak(model, *batch.input_ids.shape)
        peak = allocated_peak(lambda: score_batch(model, batch, compiled.layout, budget, discard))
    assert backbone < chunk / 4
    assert peak < backbone + 1.5 * chunk


def test_monitor_validates_memory_share_and_keeps_it_in_its_config():
    with pytest.raises(DriftwatchError, match="memory_share"):
        ProbeBudget(memory_share=0)
    with pytest.raises(DriftwatchError, match="memory_share"):
        ProbeBudget(memory_share=True)
    monitor = DriftMonitor("smoke", budget=ProbeBudget(memory_share=0.2))
    assert monitor.config()["budget"]["memory_share"] == 0.2
    assert DriftMonitor.from_config(monitor.config()).budget.memory_share == 0.2

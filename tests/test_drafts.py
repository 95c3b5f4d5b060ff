"""Draft-verified decoding: the replies of greedy decoding, at the cost of one pass where the
base model's reply still holds; near-ties decoded the plain way; the round's record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from driftwatch import DriftMonitor, ProbeBudget
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.memory import Budget
from driftwatch.runner import compile_suite, run_probes
from driftwatch.runner.drafts import DraftPlan, _resolve, near_tie, plan_drafts
from driftwatch.runner.kernels import score_batch
from driftwatch.runner.layout import draft_row, pack_rows, shared_prefix_rows
from driftwatch.sinks import scalars
from driftwatch.suite import ProbeSuite
from tests.conftest import build_model


def generate_suite() -> ProbeSuite:
    smoke = ProbeSuite.load("smoke")
    items = [i for i in smoke.items if i.kind == "generate"]
    caps = [c for c in smoke.capabilities if c.id in {i.capability for i in items}]
    return ProbeSuite.from_items(items, caps)


def sharp_model(tokenizer, seed: int = 0):
    """The tiny model with logits far apart: its greedy choices are rarely near-ties."""
    model = build_model(tokenizer, seed=seed)
    model.lm_head.weight.data *= 20
    return model


def perturb(model, scale: float, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("layout", ["packed", "concatenated"])
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.3])
def test_draft_replies_equal_greedy_decoding(tokenizer, layout, noise):
    model = sharp_model(tokenizer)
    suite = generate_suite()
    compiled = compile_suite(suite, tokenizer, model, layout=layout)
    base = run_probes(model, compiled, tokenizer)  # the replies a reference records
    perturb(model, noise)
    plan = plan_drafts(compiled, base.generated, torch.float32)
    plain = run_probes(model, compiled, tokenizer)
    drafted = run_probes(model, compiled, tokenizer, drafts=plan)
    assert drafted.generated == plain.generated
    assert drafted.texts == plain.texts
    for metric, values in plain.values.items():
        assert torch.equal(values.isnan(), drafted.values[metric].isnan()), metric
        assert torch.allclose(values.nan_to_num(), drafted.values[metric].nan_to_num()), metric
    record, n = drafted.decode, len(suite)
    assert record["decode_matched"] + record["decode_near_ties"] <= n
    if noise == 0.0:  # the base itself: every reply is its draft, nothing is decoded
        assert record["decode_matched"] + record["decode_near_ties"] == n
        assert record["decode_matched"] >= n - 2
        assert record["decode_steps"] < plain.decode["decode_steps"]
    if noise == 0.3:  # heavy damage: replies moved away from the base's
        assert record["decode_matched"] < n / 2
        assert sum(a != b for a, b in zip(drafted.generated, base.generated, strict=True)) > n / 2
    # the next round verifies only the items whose replies kept to their drafts
    again = run_probes(model, compiled, tokenizer, drafts=plan)
    assert again.generated == plain.generated
    left = sum(not follows for follows in plan.follows)
    assert again.decode["decode_unverified"] == left
    if noise == 0.3:
        assert left > n / 2


def test_shared_prefix_rows_score_as_one_row_per_item(tokenizer):
    model = build_model(tokenizer)
    prefix = list(range(5, 25))
    rows, slot = [], 0
    for k in range(6):
        prompt = prefix + [30 + k] * (1 + k % 3)
        draft = [40 + k, 41, 42 + k][: 1 + k % 3]
        rows.append(draft_row(prompt, draft, 2 if k % 2 else None, slot))
        slot += len(draft) + (k % 2)
    # a prompt that is the prefix itself: its first token is read at the prefix's last position
    rows.append(draft_row(prefix, [50, 51], 2, slot))
    slot += 3
    rows.append(draft_row([7, 8, 9], [10, 11], None, slot))  # another prefix: its own group
    slot += 2

    def scores(batches, layout):
        got = torch.zeros(slot, dtype=torch.float64)

        def keep(lp, owners, targets, slots):
            got[slots] = lp[owners, targets].double()

        for batch in batches:
            score_batch(model, batch, layout, Budget(1 << 20), keep)
        return got

    budget = Budget(1 << 20)
    one_each = pack_rows(rows, budget, 0, torch.device("cpu"))
    merged_rows = shared_prefix_rows(rows, 64)
    merged = pack_rows(merged_rows, budget, 0, torch.device("cpu"))
    assert len(merged_rows) == 2  # the seven chat-like items in one row, the odd one alone
    assert sum(b.real_tokens for b in merged) < sum(b.real_tokens for b in one_each) - 60
    with torch.inference_mode():
        expected, got = scores(one_each, "concatenated"), scores(merged, "packed")
    assert torch.allclose(got, expected, atol=1e-4)


def _plan(drafts, stops, tolerance=1e-3):
    offsets, targets = [0], []
    for draft, stop in zip(drafts, stops, strict=True):
        step = [*draft, 2] if stop else draft
        targets += step
        offsets.append(offsets[-1] + len(step))
    return DraftPlan(
        drafts,
        offsets,
        torch.tensor(targets),
        rows=[],
        tolerance=tolerance,
        layout="packed",
        budget=Budget(1 << 20),
        pad_id=0,
        device=torch.device("cpu"),
    )


def test_near_ties_and_divergences_resolve_as_greedy_decoding_would():
    eos = 2
    prompts = [([1, 5], 4, k) for k in range(6)]
    compiled = SimpleNamespace(gen_prompts=prompts, eos_ids=[eos])
    drafts = [[7, 8, 9], [7, 8, 9], [7, 8, 9], [7, 8, 9], [7, 8, 9], [7, 8, 9, 6]]
    plan = _plan(drafts, [True] * 5 + [False])
    best, margin = plan.targets.clone(), torch.full((plan.offsets[-1],), 5.0, dtype=torch.float64)
    lag = torch.zeros_like(margin)  # not read in fp32

    def at(item, pos):
        return plan.offsets[item] + pos

    best[at(1, 1)] = 4  # item 1 diverges at its second token: decoding resumes after it
    margin[at(2, 1)] = 1e-4  # item 2 has a near-tie: decoded token by token from there
    best[at(3, 0)] = 4  # item 3 diverges at once; its near-tie after that does not matter
    margin[at(3, 2)] = 1e-4
    best[at(4, 1)] = eos  # item 4 stops early
    best[at(5, 3)] = 3  # item 5 (its draft at its budget) differs at its last token
    out = _resolve(compiled, plan, best, margin, set(range(6)), lag)
    assert out.replies == [[7, 8, 9], [7, 4], [7], [4], [7], [7, 8, 9, 3]]
    assert out.resume == [([1, 5, 7, 4], 2, 1), ([1, 5, 7], 3, 2), ([1, 5, 4], 3, 3)]
    assert (out.matched, out.near_ties) == (1, 1)
    margin[at(0, 3)] = float("nan")  # non-finite scores at the stop: decoded from there
    out = _resolve(compiled, plan, best, margin, set(range(6)), lag)
    assert out.resume[0] == ([1, 5, 7, 8, 9], 1, 0) and out.near_ties == 2
    best[at(0, 3)] = 11  # the model no longer stops where the base did
    margin[at(0, 3)] = 5.0
    out = _resolve(compiled, plan, best, margin, set(range(6)), lag)
    assert out.replies[0] == [7, 8, 9, 11]  # at its budget now: nothing left to decode
    assert all(ordinal != 0 for _, _, ordinal in out.resume)
    out = _resolve(compiled, plan, best, margin, {0, 1, 2, 3, 4}, lag)  # item 5 not verified
    assert out.replies[5] == [] and out.resume[-1] == ([1, 5], 4, 5) and out.skipped == 1


def test_in_16_bit_compute_the_draft_is_kept_at_a_near_tie():
    """bf16 noise decides which side of a near-tie greedy decoding takes: the base's token is
    kept wherever it is within the tie margin of the model's best."""
    prompts = [([1, 5], 4, k) for k in range(5)]
    compiled = SimpleNamespace(gen_prompts=prompts, eos_ids=[2])
    plan = _plan([[7, 8, 9]] * 5, [True] * 5, tolerance=0.5)
    plan.keep_ties = True
    n = plan.offsets[-1]
    best, margin = plan.targets.clone(), torch.full((n,), 5.0, dtype=torch.float64)
    lag = torch.zeros(n, dtype=torch.float64)

    def at(item, pos):
        return plan.offsets[item] + pos

    best[at(0, 1)], lag[at(0, 1)], margin[at(0, 1)] = 4, 0.1, 0.1  # the draft's token tied
    best[at(1, 1)], lag[at(1, 1)] = 4, 1.0  # a clear divergence: the model's token
    best[at(2, 1)], lag[at(2, 1)], margin[at(2, 1)] = 4, 1.0, 0.1  # two others tied
    margin[at(3, 0)] = float("nan")  # non-finite scores: decoded from there
    margin[at(4, 2)] = 0.01  # the draft's token is the best, by a hair: kept, no tie
    out = _resolve(compiled, plan, best, margin, set(range(5)), lag)
    assert out.replies == [[7, 8, 9], [7, 4], [7], [], [7, 8, 9]]
    assert out.resume == [([1, 5, 7, 4], 2, 1), ([1, 5, 7], 3, 2), ([1, 5], 4, 3)]
    assert (out.matched, out.near_ties) == (2, 3)
    plan.keep_ties = False  # fp32: the near-ties are decoded token by token
    out = _resolve(compiled, plan, best, margin, set(range(5)), lag)
    assert out.replies == [[7], [7, 4], [7], [], [7, 8]]


def test_items_whose_replies_left_their_drafts_early_are_decoded_plainly_next_round():
    plan = _plan([[7, 8, 9, 10], [7, 8, 9, 10], [], [3]], [False, True, True, True])
    plan.learn([[7, 8, 1, 1], [7, 1, 1], [4], [3]])
    # half the draft kept: verified; a quarter is too little, and so is nothing of an empty
    # draft; a match is verified
    assert plan.follows == [True, False, False, True]
    plan.learn([[7, 8, 1, 1], [7, 8, 9, 10], [], [5]])  # back on their drafts: verified again
    assert plan.follows == [True, True, True, False]


def test_a_near_tie_is_decoded_plainly_and_counted(tokenizer):
    model = sharp_model(tokenizer)
    compiled = compile_suite(generate_suite(), tokenizer, model)
    base = run_probes(model, compiled, tokenizer)
    plan = plan_drafts(compiled, base.generated, torch.float32)
    plan.tolerance = float("inf")  # every position a near-tie
    drafted = run_probes(model, compiled, tokenizer, drafts=plan)
    assert drafted.generated == base.generated
    assert drafted.decode["decode_near_ties"] == len(compiled.gen_items)
    assert drafted.decode["decode_matched"] == 0
    assert near_tie(torch.float32) < near_tie(torch.bfloat16)


def test_drafts_must_match_the_suite(tokenizer):
    model = sharp_model(tokenizer)
    compiled = compile_suite(generate_suite(), tokenizer, model)
    with pytest.raises(DriftwatchError, match="rebuild the reference"):
        plan_drafts(compiled, [[1, 2]], torch.float32)


def test_the_monitor_records_each_round_s_decoding(tokenizer, cache, tmp_path):
    model = sharp_model(tokenizer)
    drafted = DriftMonitor("smoke", every_n_steps=1, logdir=tmp_path / "d")
    plain = DriftMonitor("smoke", every_n_steps=1, budget=ProbeBudget(decode="plain"))
    for monitor in (drafted, plain):
        monitor.start(model, tokenizer)
        monitor.step(model, 1)
        monitor.close()
    extra = drafted.history[-1].extra
    assert extra["decode_matched"] >= 1 and extra["decode_seconds"] > 0
    assert "decode_matched" not in plain.history[-1].extra
    assert plain.history[-1].extra["decode_steps"] > extra["decode_steps"]
    for a, b in zip(
        drafted.history[-1].capabilities.values(),
        plain.history[-1].capabilities.values(),
        strict=True,
    ):
        assert a.headline.now == pytest.approx(b.headline.now, abs=1e-6, nan_ok=True), a.id
    tags = scalars(drafted.history[-1], drafted.policy.decide(drafted.history))
    assert {"driftwatch_meta/decode_matched", "driftwatch_meta/decode_steps"} <= set(tags)
    history = (tmp_path / "d" / "driftwatch_history.jsonl").read_text()
    assert '"decode_matched"' in history
    assert DriftMonitor.from_config(plain.config()).budget.decode == "plain"


def test_decode_settings_are_checked():
    with pytest.raises(ConfigError, match=r"ProbeBudget\.decode"):
        ProbeBudget(decode="fast")  # type: ignore[arg-type]
    assert ProbeBudget().decode == "draft"

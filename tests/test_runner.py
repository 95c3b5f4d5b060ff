"""The runner: batched results equal a plain per-item computation; a round changes nothing."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import LlamaModel

from driftwatch.errors import SuiteError
from driftwatch.runner import compile_suite, preserved_state, run_probes
from driftwatch.suite import ProbeItem, ProbeSuite
from tests.conftest import build_model


def plain_option_logprobs(model, tokenizer, item: ProbeItem) -> list[float]:
    """Reference computation: one unbatched, unpadded forward per (prompt, option)."""
    stripped = item.prompt.rstrip()
    moved = item.prompt[len(stripped) :]
    prompt = tokenizer(stripped).input_ids
    out = []
    for option in item.choices or (item.target,):
        cont = tokenizer(moved + option, add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + cont])
        with torch.no_grad():
            lp = model(ids).logits[0].float().log_softmax(-1)
        out.append(sum(float(lp[len(prompt) - 1 + t, c]) for t, c in enumerate(cont)))
    return out


def choice_rows(suite, result):
    """item id -> option log-probs, from a ProbeResult."""
    ids = [i.id for i in suite.items if i.kind == "choice"]
    return {
        i: [v for v in row.tolist() if v != float("-inf")]
        for i, row in zip(ids, result.option_logprobs, strict=True)
    }


@pytest.mark.parametrize("budget", [8, 64, 4096])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batched_choice_logprobs_equal_unbatched(model, tokenizer, budget, shuffle):
    suite = ProbeSuite.load("smoke")
    items = [i for i in suite.items if i.kind in ("choice", "target")]
    if shuffle:
        random.Random(budget).shuffle(items)
    sub = ProbeSuite.from_items(items)
    compiled = compile_suite(sub, tokenizer, model, token_budget=budget)
    assert compiled.layout == "packed"
    result = run_probes(model, compiled, tokenizer)
    rows = choice_rows(sub, result)
    for item in items:
        expected = plain_option_logprobs(model, tokenizer, item)
        if item.kind == "choice":
            assert rows[item.id] == pytest.approx(expected, abs=1e-4), item.id
            k = sub.items.index(item)
            predicted = int(np.argmax(expected))
            assert result.values["score"][k] == float(predicted == item.answer)


def test_an_option_s_last_token_is_never_fed(model, tokenizer):
    """Each option's log-likelihood needs the positions before its tokens, not its last one:
    one-token options cost no position beyond their prompt, longer ones one fewer each; the
    options of a prompt share the head's work at its last position."""
    one = [" A", " C", " 7"]
    assert all(len(tokenizer(o, add_special_tokens=False).input_ids) == 1 for o in one)
    items = [
        ProbeItem("one", "C1", "choice", prompt="Pick a letter:", choices=one, answer=0),
        ProbeItem(
            "mixed", "C1", "choice", prompt="Name a city:", choices=[" A", " Paris"], answer=1
        ),
        ProbeItem("cloze", "C1", "target", prompt="The capital is", target=" Paris"),
    ]
    suite = ProbeSuite.from_items(items)
    compiled = compile_suite(suite, tokenizer, model, layout="packed")
    prompts = [len(tokenizer(i.prompt.rstrip()).input_ids) for i in items]
    paris = len(tokenizer(" Paris", add_special_tokens=False).input_ids)
    assert paris == 3
    assert compiled.stats["real_tokens"] == sum(prompts) + 2 * (paris - 1)
    # and the output head runs once per position, however many options read it
    scored = [b.scored for b in compiled.loglik]
    assert sum(s.targets.numel() for s in scored) == 3 + (1 + paris) + paris
    assert sum(s.gather.numel() for s in scored) == 1 + paris + paris
    result = run_probes(model, compiled, tokenizer)
    rows = choice_rows(suite, result)
    for item in items[:2]:
        expected = plain_option_logprobs(model, tokenizer, item)
        assert rows[item.id] == pytest.approx(expected, abs=1e-4), item.id
    cloze = plain_option_logprobs(model, tokenizer, items[2])[0] / paris  # a per-token mean
    assert float(result.values["logprob"][2]) == pytest.approx(cloze, abs=1e-4)


@pytest.mark.parametrize("layout", ["cached", "concatenated"])
@pytest.mark.parametrize("budget", [16, 4096])
def test_every_layout_gives_the_packed_results(model, tokenizer, layout, budget):
    suite = ProbeSuite.load("smoke")
    packed = compile_suite(suite, tokenizer, model, layout="packed")
    other = compile_suite(suite, tokenizer, model, layout=layout, token_budget=budget)
    assert other.layout == layout
    if layout == "concatenated":
        assert packed.stats["real_tokens"] < other.stats["real_tokens"], "prompts computed once"
    a = run_probes(model, packed, tokenizer, record_topk=8)
    b = run_probes(model, other, tokenizer, record_topk=8)
    torch.testing.assert_close(a.option_logprobs, b.option_logprobs, atol=1e-4, rtol=0)
    for name in ("score", "gold_logprob", "logprob"):
        torch.testing.assert_close(
            a.values[name], b.values[name], atol=1e-4, rtol=0, equal_nan=True
        )
    torch.testing.assert_close(a.topk[0], b.topk[0], atol=1e-4, rtol=0)


class _NoCustomMasks(LlamaModel):
    """A decoder whose attention refuses custom 4-D masks (as some kernels do)."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            raise ValueError("this attention kernel takes 2-D padding masks only")
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


def test_auto_layout_falls_back_to_the_kv_cache_form(model, tokenizer, caplog):
    fallback = build_model(tokenizer)
    decoder = _NoCustomMasks(fallback.config)
    decoder.load_state_dict(fallback.model.state_dict())
    fallback.model = decoder
    suite = ProbeSuite.load("smoke")
    with caplog.at_level("WARNING"):
        compiled = compile_suite(suite, tokenizer, fallback)
    assert compiled.layout == "cached"
    assert "packed layout unavailable" in caplog.text
    expected = run_probes(model, compile_suite(suite, tokenizer, model), tokenizer, record_topk=8)
    got = run_probes(fallback, compiled, tokenizer, record_topk=8)
    assert compile_suite(suite, tokenizer, model).layout == "packed"
    torch.testing.assert_close(got.option_logprobs, expected.option_logprobs, atol=1e-4, rtol=0)


def test_target_exact_match_equals_greedy_generation(model, tokenizer):
    # Sharpen the random model's logits so greedy decoding has no near-ties.
    model.lm_head.weight.data *= 40
    items = [i for i in ProbeSuite.load("smoke").items if i.kind == "target"]
    # Make some targets the model's own greedy continuation, so both outcomes occur.
    greedy_items = []
    for item in items[:3]:
        ids = tokenizer(item.prompt, return_tensors="pt").input_ids
        out = model.generate(
            ids, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        greedy_items.append(
            replace(item, id=item.id + "-greedy", target=tokenizer.decode(out[0, ids.shape[1] :]))
        )
    suite = ProbeSuite.from_items(items + greedy_items)
    result = run_probes(model, compile_suite(suite, tokenizer, model), tokenizer)
    for k, item in enumerate(suite.items):
        ids = tokenizer(item.prompt.rstrip(), return_tensors="pt").input_ids
        target = tokenizer(item.target, add_special_tokens=False).input_ids
        out = model.generate(
            ids, max_new_tokens=len(target), do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        matched = out[0, ids.shape[1] :].tolist() == target
        assert result.values["score"][k] == float(matched), item.id
    assert result.values["score"][len(items) :].sum() >= 1


def test_batched_generation_equals_one_at_a_time(model, tokenizer):
    model.lm_head.weight.data *= 40
    suite = ProbeSuite.from_items(
        [i for i in ProbeSuite.load("smoke").items if i.kind == "generate"]
    )
    compiled = compile_suite(suite, tokenizer, model, token_budget=4096)
    assert len(compiled.gen) < len(suite)  # really batched
    result = run_probes(model, compiled, tokenizer)
    for item, got in zip(suite.items, result.generated, strict=True):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": item.prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(
            ids,
            max_new_tokens=item.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        expected = out[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in expected:
            expected = expected[: expected.index(tokenizer.eos_token_id)]
        assert got == expected, item.id


def test_probe_round_restores_modes_checkpointing_cache_and_rng(tokenizer):
    model = build_model(tokenizer, dropout=0.1)
    model.train()
    model.model.layers[1].eval()  # a mixed state must come back exactly
    # transformers 5.24's name; the older one (gradient_checkpointing_enable) warns there
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()
    model.config.use_cache = False
    modes = {name: m.training for name, m in model.named_modules()}
    compiled = compile_suite(ProbeSuite.load("smoke"), tokenizer, model)

    torch.manual_seed(123)
    random.seed(7)
    np.random.seed(7)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(7)
    np.random.seed(7)
    run_probes(model, compiled, tokenizer, record_topk=4)
    after = (torch.rand(3), random.random(), np.random.rand())

    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.is_activation_checkpointing
    assert model.config.use_cache is False
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]
    assert all(p.grad is None for p in model.parameters())


def test_preserved_state_restores_even_when_probing_fails(tokenizer):
    model = build_model(tokenizer)
    model.train()
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError), preserved_state(model):
        torch.rand(10)
        raise RuntimeError("boom")
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), state)


def _train(tokenizer, steps: int, hook) -> dict[str, torch.Tensor]:
    model = build_model(tokenizer, dropout=0.1, seed=3)
    model.train()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(tokenizer), (2, 24), generator=gen) for _ in range(steps)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(99)
    hook("start", model, 0)
    for step, ids in enumerate(batches, start=1):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        hook("step", model, step)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_warn_mode_leaves_training_bit_identical(tokenizer, cache):
    from driftwatch.monitor import DriftMonitor

    baseline = _train(tokenizer, 6, lambda *a: None)
    monitor = DriftMonitor("smoke", every_n_steps=2, action="warn")
    probed = []

    def attach(event, model, step):
        if event == "start":
            monitor.start(model, tokenizer)
        else:
            probed.append(monitor.step(model, step).probed)

    watched = _train(tokenizer, 6, attach)
    assert probed == [False, True, False, True, False, True]
    assert all(torch.equal(baseline[k], watched[k]) for k in baseline)

    # The comparison is sensitive: one stray draw from the RNG changes the trajectory.
    disturbed = _train(tokenizer, 6, lambda e, m, s: torch.rand(1) if s == 2 else None)
    assert not all(torch.equal(baseline[k], disturbed[k]) for k in baseline)


def test_bfloat16_model_probes_and_matches_itself(tokenizer):
    model = build_model(tokenizer, dtype=torch.bfloat16)
    suite = ProbeSuite.load("smoke")
    compiled = compile_suite(suite, tokenizer, model)
    base = run_probes(model, compiled, tokenizer, record_topk=8)
    now = run_probes(model, compiled, tokenizer, base_topk=base.topk)
    kl = now.values["kl"][~now.values["kl"].isnan()]
    assert kl.abs().max() <= 1e-6
    assert torch.equal(base.values["score"].nan_to_num(), now.values["score"].nan_to_num())


def test_item_longer_than_context_names_file_line_and_field(tmp_path, tokenizer):
    model = build_model(tokenizer, context=32)
    root = tmp_path / "s"
    root.mkdir()
    long_prompt = "The weather today is mild " * 20
    lines = [
        {"id": "short", "capability": "C1", "kind": "target", "prompt": "Hi", "target": " x"},
        {"id": "long", "capability": "C1", "kind": "target", "prompt": long_prompt, "target": " x"},
    ]
    (root / "c1.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    (root / "manifest.json").write_text(
        json.dumps(
            {"format": 1, "capabilities": [{"id": "C1", "group": "CAN", "files": ["c1.jsonl"]}]}
        )
    )
    with pytest.raises(SuiteError) as info:
        compile_suite(ProbeSuite.load(root), tokenizer, model)
    (problem,) = info.value.problems
    assert problem.path.endswith("c1.jsonl") and problem.line == 2 and problem.field == "prompt"
    assert "longer than the model's context of 32" in problem.message


def test_chat_items_fall_back_to_plain_text_with_a_warning(model, caplog):
    from tests.conftest import build_tokenizer

    plain = build_tokenizer(chat_template=None)
    suite = ProbeSuite.from_items([i for i in ProbeSuite.load("smoke").items if i.chat][:2])
    with caplog.at_level("WARNING"):
        compiled = compile_suite(suite, plain, model)
    assert "no chat template" in caplog.text
    assert compiled.gen[0].input_ids.shape[0] == 2

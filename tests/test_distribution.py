"""Distribution drift: KL(base‖now) from the cached top-k plus tail mass."""

from __future__ import annotations

import pytest
import torch

from driftwatch.probes.distribution import kl_against_topk, record_topk
from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite
from tests.conftest import build_model


def coarse_kl_loop(p_base: torch.Tensor, p_now: torch.Tensor, k: int) -> float:
    """Reference: KL over the base's top-k tokens plus one "everything else" outcome."""
    top = p_base.topk(k).indices.tolist()
    kl = 0.0
    for t in top:
        kl += float(p_base[t]) * (float(p_base[t].log()) - float(p_now[t].log()))
    tail_b = 1.0 - sum(float(p_base[t]) for t in top)
    tail_n = 1.0 - sum(float(p_now[t]) for t in top)
    return kl + tail_b * (torch.tensor(tail_b).log() - torch.tensor(tail_n).log()).item()


@pytest.mark.parametrize("k", [1, 4, 32])
def test_topk_kl_matches_reference_and_bounds_full_kl(k):
    gen = torch.Generator().manual_seed(k)
    base = torch.randn(6, 50, generator=gen, dtype=torch.float64).log_softmax(-1)
    now = (base + 0.3 * torch.randn(6, 50, generator=gen, dtype=torch.float64)).log_softmax(-1)
    values, ids = record_topk(base.float(), k)
    kl, top1 = kl_against_topk(now.float(), values, ids)
    full = (base.exp() * (base - now)).sum(-1)
    for p in range(6):
        assert kl[p].item() == pytest.approx(
            coarse_kl_loop(base[p].exp(), now[p].exp(), k), abs=1e-5
        )
    assert bool((kl <= full + 1e-6).all()), "coarse-graining never increases KL"
    assert torch.equal(top1, (now.argmax(-1) == base.argmax(-1)).double())


def sharp_model(tokenizer):
    """A tiny model whose next-token distributions are peaked, like a trained model's."""
    model = build_model(tokenizer)
    model.lm_head.weight.data *= 20
    return model


def test_model_against_its_own_reference_has_zero_kl_and_perturbation_grows_it(tokenizer):
    suite = ProbeSuite.from_items(
        [i for i in ProbeSuite.load("smoke").items if i.kind == "distribution"]
    )
    model = sharp_model(tokenizer)
    compiled = compile_suite(suite, tokenizer, model)
    ref = run_probes(model, compiled, tokenizer, record_topk=32)
    same = run_probes(model, compiled, tokenizer, base_topk=ref.topk)
    assert same.values["kl"].abs().max() <= 1e-6
    assert bool((same.values["top1_agreement"] == 1.0).all())

    # a different batch layout changes nothing beyond float noise
    other = compile_suite(suite, tokenizer, model, token_budget=16)
    assert other.stats["forward_passes"] > compiled.stats["forward_passes"]
    again = run_probes(model, other, tokenizer, base_topk=ref.topk)
    assert again.values["kl"].abs().max() <= 1e-6

    kls = []
    for scale in (0.01, 0.1, 0.5):
        noisy = sharp_model(tokenizer)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(scale * p.std() * torch.randn(p.shape, generator=gen))
        kls.append(
            float(run_probes(noisy, compiled, tokenizer, base_topk=ref.topk).values["kl"].mean())
        )
    assert kls[0] > 1e-4
    assert kls[0] < kls[1] < kls[2]


def prompt_suite() -> ProbeSuite:
    from driftwatch.suite import Capability, ProbeItem

    items = [
        ProbeItem("d-text", "D", "distribution", text="The weather today is mild and calm."),
        ProbeItem(
            "d-ask-1",
            "D",
            "distribution",
            prompt="Describe the ocean.",
            chat=True,
            max_new_tokens=6,
        ),
        ProbeItem(
            "d-ask-2", "D", "distribution", prompt="Name a fruit.", chat=True, max_new_tokens=4
        ),
    ]
    return ProbeSuite.from_items(items, [Capability("D", "output distribution", "other", "kl")])


def test_prompt_items_follow_the_base_continuation_recorded_in_the_reference(tokenizer, tmp_path):
    from driftwatch.reference import Reference, probe_settings
    from driftwatch.session import load_or_build

    suite = prompt_suite()
    model = sharp_model(tokenizer)
    compiled = compile_suite(suite, tokenizer, model)
    assert compiled.needs_continuations
    with pytest.raises(Exception, match="attach the reference's base continuations"):
        run_probes(model, compiled, tokenizer, record_topk=8)

    ref, _ = load_or_build(
        model, tokenizer, compiled, settings=probe_settings(topk=8), cache_dir=tmp_path
    )
    assert [len(c) for c in ref.continuations] == [6, 4]  # the budget, no early stop here
    again = Reference.load(ref.path)
    assert again.continuations == ref.continuations  # round-trips through the file

    # the continuation is the base model's own greedy reply
    prompt_ids = compiled.pending_prompts[0][0]
    out = model.generate(
        torch.tensor([prompt_ids]),
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=[],
        pad_token_id=tokenizer.pad_token_id,
    )
    assert out[0, len(prompt_ids) :].tolist() == ref.continuations[0]

    ready = compiled.with_continuations(again.continuations)
    same = run_probes(model, ready, tokenizer, base_topk=again.topk)
    assert same.values["kl"].abs().max() <= 1e-6
    # scored positions: the text's next tokens plus one per continuation token
    n_text = len(tokenizer("The weather today is mild and calm.").input_ids) - 1
    assert ready.n_dist_positions == n_text + 6 + 4

    noisy = sharp_model(tokenizer)
    with torch.no_grad():
        noisy.lm_head.weight.add_(0.2 * torch.randn_like(noisy.lm_head.weight))
    drifted = run_probes(noisy, ready, tokenizer, base_topk=again.topk)
    assert bool((drifted.values["kl"] > 1e-4).all())

    with pytest.raises(Exception, match="holds 1 base continuations"):
        compiled.with_continuations(again.continuations[:1])

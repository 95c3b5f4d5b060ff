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

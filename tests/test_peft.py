"""PEFT LoRA: the reference can come from the base model with adapters disabled, and
snapshots / rollback cover the adapter weights only."""

from __future__ import annotations

import warnings

import pytest
import torch

from driftwatch import DriftMonitor, Policy, ReferenceSpec, Threshold
from driftwatch.errors import DriftwatchError
from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite
from tests.conftest import build_model

peft = pytest.importorskip("peft")


def lora(tokenizer):
    base = build_model(tokenizer)
    base.lm_head.weight.data *= 20  # peaked distributions, so adapter changes show in KL
    # init_lora_weights=False: random A and B, so the adapters really change the outputs
    config = peft.LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    torch.manual_seed(1)
    with warnings.catch_warnings():
        # PEFT's own __init__ reads transformers' deprecated `is_gradient_checkpointing`
        # (driftwatch reads `is_activation_checkpointing`); not ours to fix, nor to show
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return peft.get_peft_model(base, config)


def test_reference_from_base_disables_the_adapters(tokenizer, cache):
    model = lora(tokenizer)
    base, own = ReferenceSpec(build_from="base"), ReferenceSpec(build_from="model")
    from_base = DriftMonitor("smoke", every_n_steps=1, thresholds=[], reference=base)
    from_model = DriftMonitor("smoke", every_n_steps=1, thresholds=[], reference=own)
    ref_base = from_base.start(model, tokenizer)
    ref_model = from_model.start(model, tokenizer)
    assert ref_base.path != ref_model.path

    # the base reference is what the plain base model measures
    plain = build_model(tokenizer)
    plain.lm_head.weight.data *= 20
    compiled = compile_suite(ProbeSuite.load("smoke"), tokenizer, plain)
    own = run_probes(plain, compiled, tokenizer, base_topk=ref_base.topk)
    assert own.values["kl"].nan_to_num().abs().max() <= 1e-6

    # and the adapted model drifts from it, while matching the reference it was built from
    assert from_base.step(model, 1).probed and from_model.step(model, 1).probed
    assert from_base.history[-1].capabilities["D"].headline.now > 1e-4
    assert from_model.history[-1].capabilities["D"].headline.now <= 1e-6


def test_snapshots_hold_adapters_only_and_rollback_restores_them(tokenizer, cache):
    model = lora(tokenizer)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.5)
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=1,
        policy=Policy([Threshold("D", max_kl=1e-4)], action="rollback", significance=False),
    )
    monitor.start(model, tokenizer, optimizer=optimizer)
    assert set(monitor.snapshots.last.names) == set(adapters)

    ids = torch.randint(0, len(tokenizer), (2, 16), generator=torch.Generator().manual_seed(0))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    decision = monitor.step(model, 1, optimizer=optimizer)
    assert decision.stop and decision.rolled_back_to == 0
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in adapters.items())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())


def test_reference_from_base_needs_a_peft_model(tokenizer, cache):
    monitor = DriftMonitor("smoke", every_n_steps=1, reference=ReferenceSpec(build_from="base"))
    with pytest.raises(DriftwatchError, match="needs a PEFT model"):
        monitor.start(build_model(tokenizer), tokenizer)

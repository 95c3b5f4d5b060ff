"""Mixed precision: the compute precision is found, every forward of a session runs in it, the
layout check keeps packed rows under autocast yet still catches a model that ignores its mask,
and a reference of another compute precision is refused unless asked for by name."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import LlamaModel

from driftwatch import DriftMonitor
from driftwatch.cli import main
from driftwatch.errors import ConfigError, DriftwatchError, ReferenceMismatchError
from driftwatch.reference import FINGERPRINT_PARTS, Reference, cache_path, fingerprint
from driftwatch.runner import (
    Compute,
    compile_suite,
    detect_compute,
    generate_continuations,
    run_probes,
)
from driftwatch.session import ProbeSession
from driftwatch.settings import ProbeBudget, ReferenceSpec
from driftwatch.suite import ProbeSuite
from tests.conftest import LAYOUT_NOISE, build_model, largest_change
from tests.test_runner import choice_rows, plain_option_logprobs

BF16 = Compute(torch.bfloat16, True)
# Summed option log-probs of a round under bf16 autocast against plain per-option forwards
# under the same autocast: the tiny model's largest error, measured, is below 2e-3 nats.
BF16_TOLERANCE = 0.02


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


class _IgnoresMasks(LlamaModel):
    """A decoder that drops a custom 4-D mask and attends causally over the whole row."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


def _ready(model, compiled):
    return compiled.with_continuations(generate_continuations(model, compiled))


# ---- detection --------------------------------------------------------------------------
def test_the_compute_precision_is_found_where_training_sets_it(model):
    assert detect_compute(model).name == "float32"
    with bf16():
        assert detect_compute(model).name == "autocast-bfloat16"
        assert detect_compute(model, "off").name == "float32"  # named: wins
    with torch.autocast("cpu", dtype=torch.float16):
        assert detect_compute(model).name == "autocast-float16"
    assert detect_compute(model, "fp16").name == "autocast-float16"
    # the framework's mixed precision (Trainer bf16=True, Lightning bf16-mixed)
    assert detect_compute(model, hint="bf16").name == "autocast-bfloat16"
    assert detect_compute(model.to(torch.bfloat16), hint="bf16").name == "bfloat16"
    model.float()
    with pytest.raises(ConfigError, match="expected auto, off, bf16 or fp16"):
        detect_compute(model, "bf8")


def test_accelerate_s_autocast_wrapped_forward_is_found(tokenizer):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    model = build_model(tokenizer)
    AcceleratorState._reset_state(True)  # one per process: a Trainer test may have made one
    try:
        prepared = Accelerator(cpu=True, mixed_precision="bf16").prepare(model)
    finally:
        AcceleratorState._reset_state(True)
    assert detect_compute(prepared).name == "autocast-bfloat16"
    assert detect_compute(build_model(tokenizer)).name == "float32"


def test_the_context_switches_an_outer_autocast_off():
    with bf16():
        with Compute(torch.float32, False).context():
            assert not torch.is_autocast_enabled("cpu")
        with BF16.context():
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16


# ---- the layout check --------------------------------------------------------------------
@pytest.mark.parametrize("suite_name", ["smoke", "quick"])
def test_packed_is_kept_under_bf16_autocast_and_matches_plain_forwards(
    model, tokenizer, suite_name, caplog
):
    suite = ProbeSuite.load(suite_name)
    with caplog.at_level(logging.WARNING):
        compiled = compile_suite(suite, tokenizer, model, compute=BF16)
    assert compiled.layout == "packed", caplog.text
    assert compiled.compute == BF16
    result = run_probes(model, _ready(model, compiled), tokenizer, record_topk=8)
    got = choice_rows(suite, result)
    items = [i for i in suite.items if i.kind == "choice"]
    with bf16():
        for item in items:
            expected = plain_option_logprobs(model, tokenizer, item)
            assert got[item.id] == pytest.approx(expected, abs=BF16_TOLERANCE), item.id
    # and the round really computed in bf16: not the fp32 numbers
    fp32 = compile_suite(suite, tokenizer, model)
    fp32 = run_probes(model, _ready(model, fp32), tokenizer, record_topk=8)
    assert not torch.equal(fp32.option_logprobs, result.option_logprobs)


def test_a_model_that_ignores_the_mask_is_still_caught_under_bf16(tokenizer, caplog):
    model = build_model(tokenizer)
    decoder = _IgnoresMasks(model.config)
    decoder.load_state_dict(model.model.state_dict())
    model.model = decoder
    with caplog.at_level(logging.WARNING):
        compiled = compile_suite(ProbeSuite.load("smoke"), tokenizer, model, compute=BF16)
    assert compiled.layout == "cached"
    assert "packed layout does not reproduce plain forwards in autocast-bfloat16" in caplog.text


# ---- the reference's compute precision ---------------------------------------------------
def test_a_bf16_round_against_a_bf16_reference_is_zero_and_fp32_is_refused(
    model, tokenizer, cache, caplog
):
    suite = ProbeSuite.load("smoke")
    with bf16():  # a plain loop that starts the monitor inside its autocast
        session = ProbeSession.open(model, tokenizer, suite)
    assert session.reference.metadata["compute"] == "autocast-bfloat16"
    assert session.compiled.layout == "packed"
    report, _ = session.measure(model, step=0)  # outside any autocast: still bf16
    assert largest_change(report) <= LAYOUT_NOISE

    fp32 = ProbeSession.open(model, tokenizer, suite)  # another cache entry, not this one
    assert fp32.reference.metadata["compute"] == "float32"
    assert fp32.reference.path != session.reference.path
    with pytest.raises(ReferenceMismatchError) as refused:
        ProbeSession.open(
            model,
            tokenizer,
            suite,
            reference=ReferenceSpec(path=str(fp32.reference.path)),
            compute=BF16,
        )
    message = str(refused.value)
    assert refused.value.part == "compute"
    assert "compute='float32'" in message and "compute='autocast-bfloat16'" in message
    assert "driftwatch reference MODEL --autocast bf16" in message and "--autocast off" in message
    assert "cross_precision='float32'" in message

    # asked for by name: the comparison runs, and its drift is the precision's alone
    spec = ReferenceSpec(path=str(fp32.reference.path), cross_precision="float32")
    with caplog.at_level(logging.WARNING):
        crossed = ProbeSession.open(model, tokenizer, suite, reference=spec, compute=BF16)
    assert "the drift includes the change of precision" in caplog.text
    report, _ = crossed.measure(model, step=0)
    assert largest_change(report) > LAYOUT_NOISE
    wrong = ReferenceSpec(path=str(fp32.reference.path), cross_precision="float16")
    with pytest.raises(DriftwatchError, match="was built in 'float32'"):
        ProbeSession.open(model, tokenizer, suite, reference=wrong, compute=BF16)


def test_cross_precision_needs_a_reference_file():
    with pytest.raises(ConfigError, match="set path= too"):
        ReferenceSpec(cross_precision="float32")
    with pytest.raises(ConfigError, match=r"ProbeBudget\.autocast"):
        ProbeBudget(autocast="bf8")  # type: ignore[arg-type]


def test_references_written_before_the_compute_precision_still_load_and_keep_their_key(
    model, tokenizer, tmp_path
):
    from driftwatch import tensorfile

    suite = ProbeSuite.load("smoke")
    fp = fingerprint(suite, tokenizer, model, {})
    assert fp["compute"] == fp["precision"] == "float32"
    legacy = {k: v for k, v in fp.items() if k != "compute"}
    # the key of an fp32 fingerprint is the one it had before "compute" was a part
    import hashlib

    old_parts = [p for p in FINGERPRINT_PARTS if p != "compute"]
    old_key = hashlib.sha256(
        json.dumps({k: fp[k] for k in old_parts}, sort_keys=True).encode()
    ).hexdigest()[:20]
    assert cache_path(fp, "smoke", tmp_path).name == f"smoke-{old_key}.safetensors"
    assert cache_path({**fp, "compute": "autocast-bfloat16"}, "smoke", tmp_path) != cache_path(
        fp, "smoke", tmp_path
    )
    path = tmp_path / "old.safetensors"
    session = ProbeSession.open(model, tokenizer, suite, reference=ReferenceSpec())
    tensorfile.save(path, session.reference.tensors(), {**legacy, "suite_name": "smoke"})
    assert Reference.load(path).metadata["compute"] == "float32"


def _probed_in_bf16(monitor, steps):
    """The run built its reference and probed in bf16 autocast, packed, with no drift (the
    model did not change)."""
    assert monitor.reference is not None and monitor.session is not None
    assert monitor.reference.metadata["compute"] == "autocast-bfloat16"
    assert monitor.session.compiled.layout == "packed"
    assert [r.step for r in monitor.history] == steps
    assert all(largest_change(r) <= LAYOUT_NOISE for r in monitor.history)


# ---- integrations -----------------------------------------------------------------------
def test_the_monitor_probes_in_the_budget_s_autocast(model, tokenizer, cache):
    monitor = DriftMonitor("smoke", budget=ProbeBudget(autocast="bf16"), thresholds=[])
    reference = monitor.start(model, tokenizer)
    assert reference.metadata["compute"] == "autocast-bfloat16"
    assert DriftMonitor.from_config(monitor.config()).budget.autocast == "bf16"
    decision = monitor.probe(model, 1)
    assert decision.probed and largest_change(monitor.history[-1]) <= LAYOUT_NOISE


def test_hf_trainer_with_bf16_builds_and_probes_in_bf16(tokenizer, tmp_path, cache):
    from transformers import Trainer, TrainingArguments

    from driftwatch.callbacks.hf import attach
    from tests.test_callbacks_hf import dataset

    model = build_model(tokenizer).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=0.0,  # the model does not change: every round must show no drift
        bf16=True,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset(tokenizer, 8), processing_class=tokenizer
    )
    monitor = DriftMonitor("smoke", every_n_steps=1, thresholds=[])
    attach(trainer, monitor)
    trainer.train()
    _probed_in_bf16(monitor, [1, 2])


def test_trl_sft_with_its_defaults_builds_and_probes_in_bf16(tokenizer, tmp_path, cache):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from driftwatch.callbacks.hf import attach
    from driftwatch.tasks import chat_examples

    data = Dataset.from_list([{"messages": c} for c in chat_examples("atlas", 4)])
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=0.0,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        # TRL's default, under the name transformers 5.24 keeps (the old one warns)
        **_checkpointing_on(),
    )
    assert config.bf16 and config.gradient_checkpointing  # TRL's defaults, even on CPU
    trainer = SFTTrainer(
        model=build_model(tokenizer), args=config, train_dataset=data, processing_class=tokenizer
    )
    monitor = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    attach(trainer, monitor)
    trainer.train()
    _probed_in_bf16(monitor, [2])


def test_lightning_bf16_mixed_builds_and_probes_in_bf16(tokenizer, tmp_path, cache):
    import lightning.pytorch as pl

    from driftwatch.callbacks.lightning import DriftCallback
    from tests.test_callbacks_lightning import LM, loader

    module = LM(build_model(tokenizer), lr=0.0)
    monitor = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DriftCallback(monitor, tokenizer)],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader(tokenizer, 4))
    _probed_in_bf16(monitor, [2])


def test_cli_reference_with_autocast_and_the_refusal_of_an_fp32_probe(model_dir, cache, capsys):
    assert main(["reference", str(model_dir), "--autocast", "bf16"]) == 0
    ref = capsys.readouterr().out.strip()
    assert Reference.load(ref).metadata["compute"] == "autocast-bfloat16"

    assert main(["probe", str(model_dir), "--reference", ref]) == 2
    err = capsys.readouterr().err
    assert "reference compute mismatch" in err and "--autocast bf16" in err

    assert main(["probe", str(model_dir), "--reference", ref, "--autocast", "bf16", "--json"]) == 0
    assert largest_change(json.loads(capsys.readouterr().out)) <= LAYOUT_NOISE
    crossed = ["probe", str(model_dir), "--reference", ref, "--json"]
    assert main([*crossed, "--cross-precision", "autocast-bfloat16"]) == 0
    assert largest_change(json.loads(capsys.readouterr().out)) > LAYOUT_NOISE


def _checkpointing_on() -> dict[str, bool]:
    from transformers import TrainingArguments

    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__:
        return {"activation_checkpointing": True}
    return {"gradient_checkpointing": True}

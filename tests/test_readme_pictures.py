"""``driftwatch compare`` and ``report`` on the bundled SmolLM2-135M-Instruct: the README's
pictures come from here.

The demo fine-tunes SmolLM2 on the narrow ``atlas`` task (SFT) with driftwatch attached in
warn mode and saves the damaged weights; TRL's ``DPOTrainer`` learns the same facts from
preference pairs. ``compare`` probes both against the base's ``quick`` reference and takes
the demo's own history as a third entry; ``report`` renders the demo run. With
``DRIFTWATCH_README_IMAGES=DIR`` the heatmap, the spider plot and a screenshot of the report
are copied there (``docs/images`` for the README).
"""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import pytest

from driftwatch.compare import compare_models, write_comparison
from driftwatch.demo import run_demo
from driftwatch.formatting import value
from driftwatch.report import write_report
from tests.browser import rendered_text, screenshot
from tests.conftest import REAL_MODEL

pytestmark = REAL_MODEL

STEPS, EVERY, LR = 8, 4, 3e-5  # the demo's learning rate; rounds at steps 4 and 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo in warn mode: it trains all its steps and keeps the damaged weights."""
    return run_demo(
        steps=STEPS,
        lr=LR,
        every=EVERY,
        action="warn",
        logdir=tmp_path_factory.mktemp("runs"),
        save_model=True,
        stream=io.StringIO(),
    )


@pytest.fixture(scope="module")
def dpo(tmp_path_factory):
    """SmolLM2 after DPO on the atlas facts, as many steps as the demo's SFT, saved."""
    pytest.importorskip("trl", reason="the 'trl' extra")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from driftwatch.models import load_model
    from driftwatch.tasks import preference_pairs

    out = tmp_path_factory.mktemp("dpo")
    model, tokenizer = load_model("smollm2")
    trainer = DPOTrainer(
        model=model,
        args=DPOConfig(
            output_dir=str(out / "trainer"),
            max_steps=STEPS,
            per_device_train_batch_size=4,
            learning_rate=LR,
            lr_scheduler_type="constant",
            beta=0.1,
            max_length=128,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            # TRL turns checkpointing on by default, under the name transformers 5.24 warns of;
            # off here (no memory to save on a 135M model)
            activation_checkpointing=False,
            disable_tqdm=True,
            seed=0,
        ),
        train_dataset=Dataset.from_list(preference_pairs(STEPS * 4)),
        processing_class=tokenizer,
    )
    with warnings.catch_warnings():
        # TRL 1.16's DPO loss reads transformers' deprecated `is_gradient_checkpointing`
        # (driftwatch reads `is_activation_checkpointing`); not ours to fix, nor to show
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        trainer.train()
    trainer.save_model(str(out / "model"))
    return out / "model"


def _keep(source: Path, name: str) -> None:
    target = os.environ.get("DRIFTWATCH_README_IMAGES")
    if target:
        shutil.copyfile(source, Path(target) / name)


def test_compare_the_demo_and_a_dpo_checkpoint_against_the_base(demo, dpo, tmp_path):
    assert demo.model_dir is not None
    labels, reports = compare_models(
        [demo.model_dir, dpo, demo.logdir],
        base="smollm2",
        suite="quick",
        labels=[f"SFT atlas, step {STEPS}", f"DPO atlas, step {STEPS}", "live"],
    )
    sft, _, live = reports
    # probed offline, the demo's weights give what the live round at the same step measured
    # (another batch layout: equal within float noise; KL here is ~1e-1 nats)
    assert live.step == STEPS
    assert sft.capabilities["D"].value == pytest.approx(live.capabilities["D"].value, rel=1e-4)
    for cid in ("C1", "C4"):
        assert sft.capabilities[cid].value == pytest.approx(live.capabilities[cid].value, abs=1e-6)
    # the SFT forgot: its distribution moved, significantly (the README's numbers are these)
    assert sft.capabilities["D"].value > 0.05
    result = write_comparison(labels[:2], reports[:2], tmp_path / "compare")
    table = (tmp_path / "compare" / "comparison.md").read_text()
    print(table)
    assert value(sft.capabilities["D"]) in table
    for name in ("heatmap.png", "spider.png"):
        assert (tmp_path / "compare" / name) in result.files
        _keep(tmp_path / "compare" / name, f"compare_{name}")


def test_report_of_the_demo_run_renders_in_chromium(demo, tmp_path):
    page = write_report(demo.logdir)
    shot = tmp_path / "report.png"
    screenshot(page.as_uri(), shot, size="1100,1500")
    seen = rendered_text(page.as_uri())
    last = demo.rounds[-1][0]
    assert f"Last round (step {last.step})" in seen
    for report, decision in demo.rounds:
        assert f">{report.step}<" in seen and decision.action in seen
    assert value(last.capabilities["D"]) in seen
    _keep(shot, "report.png")

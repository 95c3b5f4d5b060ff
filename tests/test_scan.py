"""driftwatch scan: every checkpoint of a finished run against the base, after the fact."""

from __future__ import annotations

import json

import pytest
import torch

from driftwatch.cli import main
from driftwatch.errors import DriftwatchError
from driftwatch.scan import find_checkpoints, scan
from tests.conftest import build_model


@pytest.fixture
def run_dir(tmp_path, tokenizer):
    base = tmp_path / "base"
    build_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    run = tmp_path / "run"
    for step, noise in ((10, 0.0), (2, 0.5)):  # written out of order on purpose
        model = build_model(tokenizer)
        with torch.no_grad():
            model.lm_head.weight.add_(noise * torch.randn_like(model.lm_head.weight))
        model.save_pretrained(run / f"checkpoint-{step}")
    (run / "checkpoint-99").mkdir()  # no weights: not a checkpoint
    (run / "runs").mkdir()
    return run, base


def test_checkpoints_are_found_in_step_order(run_dir):
    run, _ = run_dir
    assert [s for s, _ in find_checkpoints(run)] == [2, 10]


def test_missing_or_empty_run_dirs_are_named(tmp_path):
    with pytest.raises(DriftwatchError, match="no such run directory"):
        find_checkpoints(tmp_path / "nope")
    with pytest.raises(DriftwatchError, match="no checkpoint-<step> folders"):
        find_checkpoints(tmp_path)


def test_scan_measures_each_checkpoint(run_dir, cache):
    run, base = run_dir
    result = scan(run, base=base, suite="smoke")
    assert [r.step for r in result.history] == [2, 10]
    kl = [r.capabilities["D"].headline.delta for r in result.history]
    assert kl[0] > 1e-3 and kl[1] == pytest.approx(0.0, abs=1e-6)  # step 10 is the base again
    lines = (result.out / "driftwatch_history.jsonl").read_text().splitlines()
    assert [json.loads(x)["report"]["step"] for x in lines] == [2, 10]
    assert {p.name for p in result.plots} == {"trajectory.png", "radar.png"}


def test_cli_scan_prints_the_trajectory(run_dir, cache, capsys):
    run, base = run_dir
    assert main(["scan", str(run), "--base", str(base), "--suite", "smoke"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:2] == ["step", "C1"] and rows[1][0] == "2" and rows[2][0] == "10"
    assert "driftwatch_scan" in out
    assert main(["scan", str(run / "runs"), "--base", str(base)]) == 2

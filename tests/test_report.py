"""driftwatch report: one self-contained HTML page of a run, looked at in headless Chromium."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch

from driftwatch import DriftMonitor, Policy, Threshold
from driftwatch.cli import main
from driftwatch.errors import DriftwatchError
from driftwatch.formatting import value
from driftwatch.report import build_report, write_report
from tests.browser import rendered_text, screenshot
from tests.conftest import build_model


@pytest.fixture
def run(tmp_path, tokenizer, cache):
    """A run's logdir: the model drifts every round; a warn (patience), then a stop."""
    logdir = tmp_path / "run"
    model = build_model(tokenizer)
    policy = Policy([Threshold("D", max_kl=1e-3, significance=False)], action="stop", patience=2)
    monitor = DriftMonitor("smoke", every_n_steps=2, policy=policy, logdir=logdir)
    monitor.start(model, tokenizer)
    decisions = []
    for step in range(1, 7):
        with torch.no_grad():
            model.lm_head.weight.add_(0.1 * torch.randn_like(model.lm_head.weight))
        decision = monitor.step(model, step)
        if decision.probed:
            decisions.append(decision)
        if decision.stop:
            break
    monitor.close()
    assert [d.action for d in decisions] == ["warn", "stop"]
    return logdir, monitor, decisions


def _text(page: str) -> str:
    """What a reader sees: the page without its tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_page_holds_the_decisions_the_last_round_and_the_settings(run):
    logdir, monitor, decisions = run
    page = build_report(logdir)
    text = _text(page)
    for decision in decisions:
        assert decision.message in text
    last = monitor.history[-1]
    for cap in last.capabilities.values():
        assert value(cap) in text
    assert f"Last round (step {last.step})" in text
    settings = json.loads((logdir / "driftwatch_config.json").read_text())
    assert settings == monitor.config()
    assert '"every_n_steps": 2' in text
    assert page.count("data:image/png;base64,") == 2  # trajectory and heatmap, embedded


def test_the_page_needs_no_other_file_and_no_network(run):
    logdir, _, _ = run
    page = build_report(logdir)
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    assert "<script" not in page and "<link" not in page


def test_chromium_renders_the_report(run, tmp_path):
    logdir, monitor, decisions = run
    out = write_report(logdir)
    assert out == logdir / "report.html"
    screenshot(out.as_uri(), tmp_path / "report.png", size="1200,1600")
    seen = _text(rendered_text(out.as_uri()))
    assert decisions[-1].message in seen
    assert value(monitor.history[-1].capabilities["D"]) in seen


def test_cli_report_writes_the_page_and_prints_its_path(run, tmp_path, capsys):
    logdir, _, _ = run
    target = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(logdir), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_a_run_written_before_the_settings_file_still_gets_a_page(run):
    logdir, _, _ = run
    (logdir / "driftwatch_config.json").unlink()
    assert "driftwatch_config.json not found" in _text(build_report(logdir))


def test_a_folder_without_a_history_is_named(tmp_path):
    with pytest.raises(DriftwatchError, match=r"no driftwatch_history\.jsonl"):
        build_report(tmp_path)
    (tmp_path / "driftwatch_history.jsonl").write_text("")
    with pytest.raises(DriftwatchError, match="no probe round yet"):
        build_report(tmp_path)

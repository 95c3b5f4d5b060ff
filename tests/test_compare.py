"""driftwatch compare: several models (or runs' histories) against one base, CapTrack's view."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from driftwatch import DriftMonitor
from driftwatch.cli import main
from driftwatch.compare import compare_models, write_comparison
from driftwatch.errors import DriftwatchError
from driftwatch.formatting import value
from tests.conftest import LAYOUT_NOISE, build_model, largest_change

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def folders(tmp_path, tokenizer):
    """A base model, an unchanged copy of it and a damaged one (noise on the output head)."""
    base = tmp_path / "base"
    build_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    same = tmp_path / "same"
    build_model(tokenizer).save_pretrained(same)
    damaged = tmp_path / "damaged"
    model = build_model(tokenizer)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5 * torch.randn_like(model.lm_head.weight))
    model.save_pretrained(damaged)
    return base, same, damaged


@pytest.fixture
def history(tmp_path, tokenizer, cache):
    """A run's logdir: a monitor probed a drifting model at steps 2 and 4."""
    logdir = tmp_path / "run"
    model = build_model(tokenizer)
    monitor = DriftMonitor("smoke", every_n_steps=2, thresholds=[], logdir=logdir)
    monitor.start(model, tokenizer)
    for step in (2, 4):
        with torch.no_grad():
            model.lm_head.weight.add_(0.2 * torch.randn_like(model.lm_head.weight))
        monitor.probe(model, step)
    monitor.close()
    return logdir, monitor.history


def test_models_and_histories_side_by_side(folders, history, cache):
    base, same, damaged = folders
    logdir, rounds = history
    labels, reports = compare_models([same, damaged, logdir], base=base, suite="smoke")
    assert labels == ["same", "damaged", "run@4"]  # a history is named by its last round
    assert largest_change(reports[0].to_dict()) <= LAYOUT_NOISE  # the base's own weights
    assert reports[1].capabilities["D"].value > 1e-3  # the damaged head moved the distribution
    # a history's last round is taken as it was recorded, not probed again
    assert reports[2].to_dict() == rounds[-1].to_dict()


def test_written_tables_and_pictures_hold_the_same_numbers(folders, history, cache, tmp_path):
    base, _, damaged = folders
    logdir, _ = history
    labels, reports = compare_models(
        [damaged, logdir / "driftwatch_history.jsonl"],
        base=base,
        suite="smoke",
        labels=["noisy head", "live run"],
    )
    result = write_comparison(labels, reports, tmp_path / "out")
    assert {p.name for p in result.files} == {
        "comparison.csv",
        "comparison.md",
        "heatmap.png",
        "spider.png",
    }
    for name in ("heatmap.png", "spider.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "comparison.csv").read_text())))
    assert len(rows) == sum(len(r.capabilities) for r in reports)
    for label, report in zip(labels, reports, strict=True):
        for cid, cap in report.capabilities.items():
            (row,) = [r for r in rows if r["model"] == label and r["capability"] == cid]
            if cap.delta_pct is None:  # KL: no percentage
                assert float(row["kl"]) == pytest.approx(cap.value, rel=1e-5)
            else:
                assert float(row["delta_pct"]) == pytest.approx(cap.delta_pct, rel=1e-5)
    table = (tmp_path / "out" / "comparison.md").read_text().splitlines()
    assert table[0] == "| capability | group | noisy head | live run |"
    d_row = next(line for line in table if line.startswith("| D |"))
    assert value(reports[0].capabilities["D"]) in d_row


def test_cli_compare_prints_the_table_and_writes_the_files(folders, cache, tmp_path, capsys):
    base, same, damaged = folders
    out = tmp_path / "cmp"
    argv = ["compare", str(same), str(damaged), "--base", str(base), "--suite", "smoke"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "| capability | group | same | damaged |"
    assert "heatmap.png" in printed and (out / "heatmap.png").is_file()


@pytest.mark.parametrize(
    ("entries", "kwargs", "message"),
    [
        ([], {}, "name at least one"),
        (["nowhere"], {}, "neither a model folder"),
        (["MODEL"], {}, "pass --base"),
        (["MODEL"], {"labels": ["a", "b"]}, "2 labels for 1 entries"),
    ],
)
def test_bad_entries_are_named(entries, kwargs, message, folders, tmp_path):
    _, same, _ = folders
    paths = [same if e == "MODEL" else tmp_path / e for e in entries]
    with pytest.raises(DriftwatchError, match=message):
        compare_models(paths, **kwargs)


def test_a_history_without_rounds_is_an_error(tmp_path):
    empty = tmp_path / "driftwatch_history.jsonl"
    empty.write_text("")
    with pytest.raises(DriftwatchError, match="no probe round yet"):
        compare_models([empty])

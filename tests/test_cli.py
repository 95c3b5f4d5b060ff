"""The driftwatch command on a tiny local model directory."""

from __future__ import annotations

import json

import torch

from driftwatch.cli import main
from tests.conftest import LAYOUT_NOISE, build_model, largest_change


def test_reference_then_probe_prints_zero_drift(model_dir, cache, capsys):
    assert main(["reference", str(model_dir), "--suite", "smoke"]) == 0
    out, err = capsys.readouterr()
    ref = out.strip()
    assert ref.endswith(".safetensors") and "built reference" in err

    assert main(["reference", str(model_dir), "--suite", "smoke"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == ref and "reused cached reference" in err

    assert main(["probe", str(model_dir), "--reference", ref]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["capability", "group", "metric"]
    for cap in ("C1", "C2", "C5a", "W1", "H1", "D"):
        assert any(line.startswith(cap + " ") for line in table.splitlines())
    for part in ("unsafe_refusal", "benign_compliance"):  # a row of its own under W1
        assert any(line.startswith(f" └ {part} ") for line in table.splitlines())

    assert main(["probe", str(model_dir), "--reference", ref, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert largest_change(report) <= LAYOUT_NOISE
    w1 = report["capabilities"]["W1"]
    assert (w1["metric"], w1["parts"]) == ("mean", ["unsafe_refusal", "benign_compliance"])
    assert abs(w1["metrics"]["mean"]["delta_pct"]) <= 100 * LAYOUT_NOISE


def test_probe_of_a_changed_model_shows_drift(model_dir, tmp_path, tokenizer, cache, capsys):
    assert main(["reference", str(model_dir)]) == 0
    ref = capsys.readouterr().out.strip()
    changed = tmp_path / "changed"
    model = build_model(tokenizer)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * p.std() * torch.randn_like(p))
    model.save_pretrained(changed)
    tokenizer.save_pretrained(changed)
    assert main(["probe", str(changed), "--reference", ref, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["capabilities"]["D"]["metrics"]["kl"]["now"] > 0.0


def test_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["reference", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftwatch: error: ") and "Traceback" not in err
    assert "not a model directory" in err
    assert main(["probe", str(tmp_path), "--reference", str(tmp_path / "x.safetensors")]) == 2
    assert "no such reference file" in capsys.readouterr().err


def test_validate_reports_every_problem_and_exit_status(tmp_path, capsys):
    from tests.test_suite import GOOD_CHOICE, write_suite

    good = write_suite(tmp_path / "good", [GOOD_CHOICE])
    bad = write_suite(tmp_path / "bad", [dict(GOOD_CHOICE, answer=4), "{oops"])
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok"
    assert main(["validate", str(bad), str(good)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("c1.jsonl:1: answer: expected an index in 0..1, found 4")
    assert ":2: line: invalid JSON" in lines[1]
    assert lines[2] == f"{good}: ok"


def test_a_cli_reference_serves_a_training_run(model_dir, cache, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from driftwatch import DriftMonitor

    assert main(["reference", str(model_dir)]) == 0
    ref = capsys.readouterr().out.strip()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    monitor = DriftMonitor("smoke", every_n_steps=1, reference=ref)  # a path: the spec's
    assert str(monitor.start(model, tokenizer).path) == ref
    assert monitor.step(model, 1).action == "continue"


def test_probe_with_a_memory_cap_matches_the_uncapped_reference(model_dir, cache, capsys):
    """A capped probe cuts the work into smaller passes and measures the same thing (within
    float noise: other passes sum in another order; exactly 0 on some CPUs, 1.8e-10 nats of KL
    on an AMD EPYC)."""
    assert main(["reference", str(model_dir), "--suite", "smoke"]) == 0
    ref = capsys.readouterr().out.strip()
    args = ["probe", str(model_dir), "--reference", ref, "--json", "--memory-share", "0.05"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert largest_change(report) <= LAYOUT_NOISE


def test_a_bad_memory_share_is_refused(model_dir, capsys):
    for bad in ("0", "-1", "lots"):
        try:
            main(["probe", str(model_dir), "--reference", "x.safetensors", "--memory-share", bad])
        except SystemExit as exit_:
            assert exit_.code == 2
        assert "--memory-share: expected a positive number or 'none'" in capsys.readouterr().err


def test_probe_decodes_with_drafts_or_plainly_to_the_same_values(
    model_dir, tmp_path, tokenizer, cache, capsys
):
    assert main(["reference", str(model_dir), "--suite", "smoke"]) == 0
    ref = capsys.readouterr().out.strip()
    changed = tmp_path / "changed"  # some replies still the base's, some not
    model = build_model(tokenizer)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
    model.save_pretrained(changed)
    tokenizer.save_pretrained(changed)
    reports = {}
    for mode in ("draft", "plain"):
        args = ["probe", str(changed), "--reference", ref, "--json", "--decode", mode]
        assert main(args) == 0
        reports[mode] = json.loads(capsys.readouterr().out)
    draft, plain = reports["draft"], reports["plain"]
    assert draft["capabilities"] == plain["capabilities"]
    assert "decode_matched" in draft["extra"] and "decode_matched" not in plain["extra"]


def test_progress_bars_show_on_request_and_not_by_default(model_dir, cache, capsys):
    """Under pytest stderr is no terminal, so bars are off unless ``--progress`` asks."""
    assert main(["reference", str(model_dir), "--suite", "smoke"]) == 0
    ref = capsys.readouterr().out.strip()
    assert main(["probe", str(model_dir), "--reference", ref, "--json"]) == 0
    quiet = capsys.readouterr()
    assert "probe round" not in quiet.err
    json.loads(quiet.out)  # the bars never mix into the output a script reads
    assert main(["--progress", "probe", str(model_dir), "--reference", ref, "--json"]) == 0
    shown = capsys.readouterr()
    assert "probe round:" in shown.err  # cleared when done (a round is an inner step)
    json.loads(shown.out)

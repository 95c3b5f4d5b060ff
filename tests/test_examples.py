"""Every example runs to its end on the tiny offline model (the CI form of each example)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CASES = {
    "hf_trainer": "stopped early: True",
    "plain_loop": "rollbacks: 1",
    "lightning_loop": "stopped at step 3",
    "peft_lora": "rollbacks: 1",
    "trl_sft": "rounds: 1",
    "offline_scan": "checkpoint-6:",
}


def test_every_example_is_covered():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_on_the_tiny_model(name, tmp_path):
    env = {**os.environ, "DRIFTWATCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--tiny", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert CASES[name] in proc.stdout, proc.stdout[-2000:]
    if name == "offline_scan":
        scan = tmp_path / "out" / "offline_scan" / "driftwatch_scan"
        assert (scan / "driftwatch_history.jsonl").read_text().count("\n") == 2
        assert (scan / "trajectory.png").stat().st_size > 1000

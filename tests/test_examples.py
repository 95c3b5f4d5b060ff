"""Every example runs to its end on the tiny offline model (the CI form of each example)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# what each example prints at its end (the probe rounds ran; whether the tiny model's drift
# crosses a default threshold in 6 steps is not the examples' business: tests/test_demo.py,
# test_callbacks_*.py and test_monitor.py pin the stop and rollback behaviour)
CASES = {
    "hf_trainer": r"probed [1-9]\d* rounds; last at step \d+",
    "plain_loop": r"rollbacks: \d+; rounds: [1-9]",
    "lightning_loop": r"rounds: [1-9]\d*; stopped at step \d+",
    "peft_lora": r"rounds: [1-9]\d*; rollbacks: \d+",
    "trl_sft": r"probed in autocast-bfloat16 with the packed layout\nrounds: [1-9]\d*; last "
    r"groups: \{'CAN'",
    "offline_scan": r"checkpoint-6: C1 ",
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
    assert re.search(CASES[name], proc.stdout), proc.stdout[-2000:]
    if name == "offline_scan":
        scan = tmp_path / "out" / "offline_scan" / "driftwatch_scan"
        assert (scan / "driftwatch_history.jsonl").read_text().count("\n") == 2
        assert (scan / "trajectory.png").stat().st_size > 1000

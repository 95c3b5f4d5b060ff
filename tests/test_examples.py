"""Every example runs to its end on the tiny offline model (the CI form of each example)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_distributed import _free_port

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
    "accelerate_loop": r"process 0/1: rounds: [1-9]\d*; rollbacks: \d+; stopped at step \d+",
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


@pytest.mark.slow
def test_accelerate_example_runs_two_processes_that_agree(tmp_path):
    """``accelerate launch`` with two processes on this CPU (gloo). accelerate 1.16 starts its
    ``--cpu`` launcher's processes only through ``mpirun`` (``--mpirun_hostfile``): without it
    ``accelerate launch --cpu --num_processes 2`` runs one process. Its torchrun launcher
    (``--multi_gpu``) with ``ACCELERATE_USE_CPU=true`` starts two CPU processes, which
    ``Accelerator`` joins into a gloo group."""
    env = {
        **os.environ,
        "DRIFTWATCH_CACHE": str(tmp_path / "cache"),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={_free_port()}",
        str(EXAMPLES / "accelerate_loop.py"),
        "--tiny",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False
    )  # a hang fails here instead of blocking CI
    assert proc.returncode == 0, proc.stderr[-3000:]
    ends = dict(re.findall(r"^process (\d)/2: (.*)$", proc.stdout, re.MULTILINE))
    assert set(ends) == {"0", "1"}, proc.stdout[-2000:]
    assert ends["0"] == ends["1"]  # the same rounds, rollbacks and stop step on both
    history = tmp_path / "out" / "accelerate_loop" / "driftwatch_history.jsonl"
    rounds = int(re.search(r"rounds: (\d+)", ends["0"]).group(1))
    assert history.read_text().count("\n") == rounds  # written once, by the main process

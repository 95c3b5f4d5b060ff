"""The benchmark scripts keep working (a tiny run; the numbers themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
    ]
    packed, concatenated = rows[0], rows[4]
    assert packed["real_tokens"] < concatenated["real_tokens"]  # each prompt computed once
    assert all(r["probe_s"] > 0 and r["bare_forward_s"] > 0 for r in rows)
    assert "probe/bare" in proc.stdout

"""A real TensorBoard serves a demo run's driftwatch tags; headless Chromium screenshots it.

The screenshot is checked for being a real, non-blank page (``tests/browser.py``).
``DRIFTWATCH_SCREENSHOT=path`` keeps a copy (that is how the README's picture is made, from a
SmolLM2 demo run given by ``DRIFTWATCH_TB_LOGDIR``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from driftwatch.demo import run_demo
from tests.browser import screenshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode("utf-8"))


@pytest.fixture
def logdir(tmp_path, model_dir, cache):
    given = os.environ.get("DRIFTWATCH_TB_LOGDIR")
    if given:
        return Path(given)
    result = run_demo(
        model=model_dir,
        steps=9,
        lr=5e-2,
        every=3,
        action="warn",
        logdir=tmp_path / "runs",
        suite="smoke",
        batch_size=2,
        stream=io.StringIO(),
    )
    return result.logdir.parent


@pytest.mark.slow
def test_tensorboard_serves_driftwatch_tags_and_chromium_renders_them(logdir, tmp_path):
    port = free_port()
    tb = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        tags: dict = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
            except OSError:
                tags = {}
            if any(any(t.startswith("driftwatch/") for t in run) for run in tags.values()):
                break
            time.sleep(1)
        names = {t for run in tags.values() for t in run}
        assert "driftwatch/CAN/mean" in names or "driftwatch/CAN/C1" in names, sorted(names)[:20]
        assert any(t.startswith("driftwatch_meta/") for t in names)
        assert any(t.startswith("train/") for t in names), "the Trainer's loss sits beside drift"
        run, tag = next((r, t) for r, ts in tags.items() for t in ts if t.startswith("driftwatch/"))
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
        assert len(points) >= 1 and len(points[0]) == 3  # [wall time, step, value]

        shot = tmp_path / "tensorboard.png"
        screenshot(
            f"{base}/?darkMode=false#scalars&_smoothingWeight=0"
            "&tagFilter=driftwatch%2F(WILL%7Cother%7CCAN%2Fmean%7CHOW%2Fmean)",
            shot,
        )
        keep = os.environ.get("DRIFTWATCH_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)
    finally:
        tb.terminate()
        tb.wait(timeout=30)

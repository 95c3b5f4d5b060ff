"""The commands that need no model start without torch or transformers: ``import driftwatch``,
``driftwatch --help``, ``validate`` and ``suites`` (without ``--tokenizer``). Each runs in a
fresh interpreter, and the test reads which heavy packages it loaded; the time this saves is
measured in docs/benchmarks.md, not here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftwatch.suite_files import BUILTIN_ROOT

HEAVY = ("torch", "transformers", "numpy", "nltk", "matplotlib")


def _loaded(code: str) -> list[str]:
    probe = f"""
import contextlib, io, json, sys
with contextlib.redirect_stdout(io.StringIO()):
{code}
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "    import driftwatch",
        "    import driftwatch.cli as c\n    try:\n        c.main(['--help'])\n"
        "    except SystemExit:\n        pass",
        "    import driftwatch.cli as c\n"
        f"    assert c.main(['validate', {str(BUILTIN_ROOT / 'quick')!r}]) == 0",
        "    import driftwatch.cli as c\n    assert c.main(['suites']) == 0",
    ],
    ids=["import", "help", "validate", "suites"],
)
def test_commands_without_a_model_load_no_torch(code):
    assert _loaded(code) == []


def test_the_public_names_still_resolve():
    import driftwatch

    for name in driftwatch.__all__:
        assert getattr(driftwatch, name) is not None, name
    assert "DriftMonitor" in dir(driftwatch)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        driftwatch.Nope  # noqa: B018

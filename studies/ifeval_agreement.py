"""Agreement of driftwatch's checks with the reference IFEval scorer, per instruction.

Scores the seeded replies of ``tests/test_ifeval_reference.py`` (which asserts the same
numbers) with lm-evaluation-harness's IFEval checkers and with driftwatch's checks, and
prints one row per IFEval instruction. ``--old FILE`` also scores an earlier
``driftwatch/probes/verifiers.py`` (e.g. ``git show 1a3498f:driftwatch/probes/verifiers.py``)
on the instructions it had a check for, which is how docs/suites.md's "before" column was made.

    .venv/bin/python studies/ifeval_agreement.py [--old /tmp/old_verifiers.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_ifeval_reference as t

from driftwatch.probes import ifeval_map
from driftwatch.probes.verifiers import run_check


class _Dirs:
    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name))


def _load(path: str):
    spec = importlib.util.spec_from_file_location("old_verifiers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_verifiers"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="an earlier verifiers.py to score beside the current one")
    args = parser.parse_args()
    old = _load(args.old) if args.old else None
    score = next(t.reference._get_wrapped_function()(_Dirs()))
    print(f"| IFEval instruction | replies | agreement | {'before | ' if old else ''}")
    print(f"|---|---|---|{'---|' if old else ''}")
    for instruction in ifeval_map.INSTRUCTIONS:
        rng = random.Random(f"ifeval/{instruction}")
        n = same = old_n = old_same = 0
        for reply in t._replies():
            kwargs = t._kwargs(instruction, reply, rng)
            check = ifeval_map.check_for(instruction, kwargs)
            want = score(instruction, kwargs, reply)
            n += 1
            same += want == run_check(check, reply)
            if old is not None:
                plain = check["checks"][0] if check["type"] == "all_of" else check
                spec = old.CHECK_TYPES.get(plain["type"])
                if spec is not None and all(k == "type" or k in spec.params for k in plain):
                    old_n += 1
                    old_same += want == old.run_check(plain, reply)
        before = (f"{100 * old_same / old_n:.1f}% | " if old_n else "— | ") if old else ""
        print(f"| `{instruction}` | {n} | {100 * same / n:.1f}% | {before}")


if __name__ == "__main__":
    main()

"""Start-up time of the commands that need no model, against an earlier commit, in turns.

    python benchmarks/startup.py --before 71f5b28        # the commit before lazy imports

Each case runs in a fresh interpreter (``python -m driftwatch.cli ...``, or ``-c "import
driftwatch"``) with ``PYTHONPATH`` set to this tree or to a temporary git worktree of
``--before``; the two trees alternate, and the median of ``--repeats`` turns is reported with
their ratio. Both sides use this interpreter and its packages, so only driftwatch's own code
differs. Without ``--before`` only this tree is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "driftwatch" / "probes" / "suites" / "quick"
CASES = {
    "import driftwatch": ["-c", "import driftwatch"],
    "driftwatch --help": ["-m", "driftwatch.cli", "--help"],
    "driftwatch validate quick/": ["-m", "driftwatch.cli", "validate", str(QUICK)],
    "driftwatch suites": ["-m", "driftwatch.cli", "suites"],
}


def _time(root: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], env=env, cwd=tempfile.gettempdir(), capture_output=True, check=True
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="a git commit to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/startup.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"now": REPO}
        if args.before:
            old = Path(scratch) / "before"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.before],
                check=True,
                capture_output=True,
            )
            trees = {"before": old, "now": REPO}
        try:
            times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in CASES}
            for _ in range(args.repeats):
                for case, case_args in CASES.items():
                    for tree, root in trees.items():
                        times[case][tree].append(_time(root, case_args))
        finally:
            if args.before:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                    check=False,
                    capture_output=True,
                )
    medians = {c: {t: statistics.median(v) for t, v in by.items()} for c, by in times.items()}
    print("| command | " + " | ".join(trees) + (" | ratio |" if args.before else " |"))
    for case, by in medians.items():
        cells = [f"{by[t]:.2f} s" for t in trees]
        if args.before:
            cells.append(f"{by['before'] / by['now']:.1f}x")
        print(f"| `{case}` | " + " | ".join(cells) + " |")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import write_results

    write_results(args.out, args, seconds=medians, before=args.before)


if __name__ == "__main__":
    main()

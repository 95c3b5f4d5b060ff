"""driftwatch against lm-evaluation-harness on the same multiple-choice items.

The seeded four-option items of ``probe_speed.py`` (word problems and capitals, mostly
one-token options), or with ``--suite`` a built-in suite's plain-text multiple-choice items
(real benchmark items, longer options), are written to a local JSONL file with a task YAML
next to it; lm-evaluation-harness (the optional extra ``bench``: ``pip install -e
".[bench]"``) runs them through ``HFLM(pretrained=model, batch_size=16)`` on the same
in-memory model that driftwatch probes. Reported:

* ``harness``          — ``simple_evaluate`` on the task (its task index is built beforehand,
                         outside the timed region; bootstrap off);
* ``driftwatch``       — one probe round on the compiled items, what a training run pays each
                         round (the suite is compiled once when the monitor starts);
* ``driftwatch+compile`` — tokenising and batching the items as well, for a one-off evaluation.

The two are timed in turns (harness, driftwatch, harness, …), so that a change in the
machine's speed during the run (±25% on a shared 2-core CPU) falls on both; medians are
reported.

The driftwatch token budget is 16 times the longest packed row, so no forward pass holds more
items than the harness's batch of 16 would at that length (``--memory-share`` caps it further,
as the monitor does by default). Agreement: the option with the highest log-likelihood (the
harness's ``acc``) must be the same for every item, and every option's log-likelihood must
agree within ``--tolerance``.

``--profile`` also runs one harness ``loglikelihood`` call and one driftwatch round under the
PyTorch profiler and splits each one's time: the output head (matrix products with the
vocabulary as a dimension), the log-softmax, the rest of the model's operators, and what
lies outside any operator (Python: request handling, batching, tokenising, copying).

    pip install -e ".[bench]"
    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 python benchmarks/vs_harness.py --items 300

Writes ``benchmarks/results/vs_harness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, memory_budget, sync, write_results
from probe_speed import make_items

from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite

TASK = "driftwatch_bench_choice"
HARNESS_BATCH = 16


def write_task(items: list[Any], folder: Path) -> None:
    """A local JSONL file and the task YAML that reads it."""
    data = folder / "items.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for it in items:
            record = {"prompt": it.prompt, "choices": list(it.choices), "answer": it.answer}
            f.write(json.dumps(record) + "\n")
    (folder / f"{TASK}.yaml").write_text(
        "\n".join(
            [
                f"task: {TASK}",
                "dataset_path: json",
                "dataset_kwargs:",
                "  data_files:",
                f"    test: {data}",
                "test_split: test",
                "output_type: multiple_choice",
                'doc_to_text: "{{prompt}}"',
                "doc_to_choice: choices",
                "doc_to_target: answer",
                'target_delimiter: ""',  # the options carry their own leading space
                "metric_list:",
                "  - metric: acc",
                "",
            ]
        ),
        encoding="utf-8",
    )


def time_split(fn: Any, vocab: int) -> dict[str, float]:
    """Seconds of ``fn`` by where they go, from the profiler's self times of each operator."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    split = {"output head": 0.0, "log-softmax": 0.0, "rest of the model": 0.0}
    for event in prof.key_averages(group_by_input_shape=True):
        seconds = event.self_cpu_time_total / 1e6
        shapes = [dim for shape in event.input_shapes or [] for dim in (shape or [])]
        if event.key in ("aten::mm", "aten::addmm", "aten::bmm") and vocab in shapes:
            split["output head"] += seconds
        elif "log_softmax" in event.key or "logsumexp" in event.key:
            split["log-softmax"] += seconds
        else:
            split["rest of the model"] += seconds
    split["outside operators"] = max(0.0, wall - sum(split.values()))
    split["wall"] = wall
    return split


class Harness:
    """lm-evaluation-harness on the task, set up and warmed up; ``trial`` times one run."""

    def __init__(self, model: Any, tokenizer: Any, folder: Path) -> None:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        self.model = model
        self.lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=HARNESS_BATCH,
            device=str(next(model.parameters()).device),
        )
        manager = TaskManager(include_path=str(folder))  # indexes every task: ~5 s, not timed
        self.inner: list[float] = []  # time inside HFLM.loglikelihood: its model work alone
        self.times: list[float] = []
        self.loglikelihood = self.lm.loglikelihood

        def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.loglikelihood(*a, **k)
            finally:
                sync(model.device)
                self.inner.append(time.perf_counter() - start)

        self.lm.loglikelihood = timed  # type: ignore[method-assign]
        self.evaluate = lambda: lm_eval.simple_evaluate(
            model=self.lm,
            tasks=[TASK],
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=True,
            verbosity="ERROR",
        )
        self.out = self.evaluate()  # warm-up (also caches the dataset)
        self.inner.clear()

    def trial(self) -> None:
        sync(self.model.device)
        start = time.perf_counter()
        self.out = self.evaluate()
        sync(self.model.device)
        self.times.append(time.perf_counter() - start)

    def summary(self, profile: bool) -> dict[str, Any]:
        samples = sorted(self.out["samples"][TASK], key=lambda s: s["doc_id"])
        loglik = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
        split = None
        if profile:  # the harness's own model work: its loglikelihood call on the same requests
            requests: list[Any] = []

            def collect(reqs: list[Any], *a: Any, **k: Any) -> list[tuple[float, bool]]:
                requests.extend(reqs)
                return [(0.0, False)] * len(reqs)

            timed = self.lm.loglikelihood
            self.lm.loglikelihood = collect  # type: ignore[method-assign]
            self.evaluate()
            self.lm.loglikelihood = timed  # type: ignore[method-assign]
            vocab = self.model.config.vocab_size
            split = time_split(lambda: self.loglikelihood(requests), vocab)
        return {
            "seconds": statistics.median(self.times),
            "loglikelihood_seconds": statistics.median(self.inner),
            "loglik": loglik,
            "split": split,
        }


class Driftwatch:
    """The items compiled as a monitor would (and warmed up); ``trial`` times one round, and
    compiling them again as well."""

    def __init__(
        self, model: Any, tokenizer: Any, items: list[Any], share: float | None = None
    ) -> None:
        self.model, self.tokenizer, self.items = model, tokenizer, items
        suite = ProbeSuite.from_items(items)
        # the longest packed row decides the budget: 16 such rows per pass, like the harness
        probe = compile_suite(suite, tokenizer, model, token_budget=1 << 30)
        self.budget = HARNESS_BATCH * max(loglik_rows_of(probe))
        self.compile = lambda: compile_suite(
            suite,
            tokenizer,
            model,
            token_budget=self.budget,
            memory_budget=memory_budget(model, share),
            layout=probe.layout,
        )
        self.compiled = self.compile()
        self.result = run_probes(model, self.compiled, tokenizer)  # warm-up
        self.rounds: list[float] = []
        self.both: list[float] = []

    def trial(self) -> None:
        sync(self.model.device)
        start = time.perf_counter()
        compiled = self.compile()
        middle = time.perf_counter()
        self.result = run_probes(self.model, compiled, self.tokenizer)
        sync(self.model.device)
        end = time.perf_counter()
        self.rounds.append(end - middle)
        self.both.append(end - start)

    def summary(self, profile: bool) -> dict[str, Any]:
        compiled, items = self.compiled, self.items
        split = (
            time_split(
                lambda: run_probes(self.model, compiled, self.tokenizer),
                self.model.config.vocab_size,
            )
            if profile
            else None
        )
        return {
            "split": split,
            "seconds": statistics.median(self.rounds),
            "seconds_with_compile": statistics.median(self.both),
            "layout": compiled.layout,
            "budget": self.budget,
            "forward_passes": compiled.stats["forward_passes"],
            "real_tokens": compiled.stats["real_tokens"],
            "padded_tokens": compiled.stats["padded_tokens"],
            "loglik": [
                [float(v) for v in row[: len(items[i].choices)]]
                for i, row in zip(choice_items(compiled), self.result.option_logprobs, strict=True)
            ],
        }


def choice_items(compiled: Any) -> list[int]:
    """Suite index of each choice item, in the order of the choice kind's option table."""
    return [i for i, item in enumerate(compiled.suite.items) if item.kind == "choice"]


def loglik_rows_of(compiled: Any) -> list[int]:
    """Lengths of the compiled suite's log-likelihood rows (one pass holds them all)."""
    return [int(n) for b in compiled.loglik for n in (b.segments >= 0).sum(dim=1).tolist()]


def suite_items(name: str) -> list[Any]:
    """A suite's multiple-choice items that are plain text (the harness task renders no chat)."""
    from driftwatch.suite import ProbeSuite

    found = [it for it in ProbeSuite.load(name).items if it.kind == "choice" and not it.chat]
    if not found:
        raise SystemExit(f"--suite {name}: no plain-text choice items")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--items", type=int, default=300, help="seeded items (no --suite)")
    parser.add_argument(
        "--suite", default=None, help="instead: the plain-text choice items of this suite"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--profile", action="store_true", help="split each side's time")
    parser.add_argument("--out", default="benchmarks/results/vs_harness.json")
    args = parser.parse_args()

    model, tokenizer = load(args.model, args.device, args.dtype)
    model.eval()
    items = suite_items(args.suite) if args.suite else make_items("choice", args.items, seed=1234)
    args.items = len(items)
    with tempfile.TemporaryDirectory() as tmp:
        write_task(items, Path(tmp))
        sides = (
            Harness(model, tokenizer, Path(tmp)),
            Driftwatch(model, tokenizer, items, args.memory_share),
        )
        for _ in range(args.repeats):  # interleaved: a change in the machine's speed hits both
            for side in sides:
                side.trial()
        harness, ours = (side.summary(args.profile) for side in sides)

    pred_h = [max(range(len(r)), key=r.__getitem__) for r in harness["loglik"]]
    pred_d = [max(range(len(r)), key=r.__getitem__) for r in ours["loglik"]]
    diffs = [
        abs(a - b)
        for rh, rd in zip(harness["loglik"], ours["loglik"], strict=True)
        for a, b in zip(rh, rd, strict=True)
    ]
    same = sum(a == b for a, b in zip(pred_h, pred_d, strict=True))
    summary = {
        "items": args.items,
        "harness_s": harness["seconds"],
        "harness_loglikelihood_s": harness["loglikelihood_seconds"],
        "driftwatch_s": ours["seconds"],
        "driftwatch_with_compile_s": ours["seconds_with_compile"],
        "speedup": harness["seconds"] / ours["seconds"],
        "speedup_with_compile": harness["seconds"] / ours["seconds_with_compile"],
        "speedup_model_work": harness["loglikelihood_seconds"] / ours["seconds"],
        "same_predictions": same,
        "max_loglik_diff": max(diffs),
        "within_tolerance": sum(d <= args.tolerance for d in diffs),
        "options": len(diffs),
        "accuracy_harness": sum(p == it.answer for p, it in zip(pred_h, items, strict=True))
        / len(items),
        "accuracy_driftwatch": sum(p == it.answer for p, it in zip(pred_d, items, strict=True))
        / len(items),
        **{k: ours[k] for k in ("layout", "budget", "forward_passes", "real_tokens")},
        "padding_waste": ours["padded_tokens"] / ours["real_tokens"],
        "split_harness": harness["split"],
        "split_driftwatch": ours["split"],
    }
    print("| | seconds | harness ÷ this |")
    print("|---|---|---|")
    print(f"| lm-evaluation-harness (batch {HARNESS_BATCH}) | {harness['seconds']:.2f} | 1.00 |")
    print(
        f"| its loglikelihood call alone | {harness['loglikelihood_seconds']:.2f} | "
        f"{harness['seconds'] / harness['loglikelihood_seconds']:.2f} |"
    )
    print(f"| driftwatch round | {ours['seconds']:.2f} | {summary['speedup']:.2f} |")
    print(
        f"| driftwatch compile + round | {ours['seconds_with_compile']:.2f} | "
        f"{summary['speedup_with_compile']:.2f} |"
    )
    print(
        f"predictions identical: {same}/{args.items}; log-likelihoods within "
        f"{args.tolerance:g}: {summary['within_tolerance']}/{len(diffs)} "
        f"(max |Δ| {summary['max_loglik_diff']:.2e}); accuracy {summary['accuracy_harness']:.3f}"
        f" vs {summary['accuracy_driftwatch']:.3f}"
    )
    if args.profile:
        print("| seconds (profiled) | " + " | ".join(harness["split"]) + " |")
        print("|---|" + "---|" * len(harness["split"]))
        for name, split in (
            ("harness loglikelihood", harness["split"]),
            ("driftwatch", ours["split"]),
        ):
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in split.values()) + " |")
    from importlib.metadata import version

    write_results(args.out, args, summary=summary, lm_eval=version("lm_eval"))
    if same != args.items or summary["within_tolerance"] != len(diffs):
        sys.exit("driftwatch and the harness disagree (see above)")


if __name__ == "__main__":
    main()

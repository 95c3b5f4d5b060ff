"""What each ``driftwatch`` command does, once :mod:`driftwatch.cli` has parsed it.

Every handler takes the parsed arguments and returns the exit status; each imports what it
needs when it runs, so the commands that need no model start without torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftwatch.items import Capability

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed command."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "validate": lambda a: _validate(a.paths),
        "suites": _suites,
        "import": _import,
        "demo": _demo,
        "scan": _scan,
        "compare": _compare,
        "report": _report,
        "reference": _reference,
        "probe": _probe,
    }
    return handlers[args.command](args)


def _validate(paths: Sequence[str]) -> int:
    from driftwatch.suite import validate_path

    failed = 0
    for path in paths:
        problems = validate_path(path)
        for problem in problems:
            print(problem)
        if problems:
            failed += 1
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _suites(args: argparse.Namespace) -> int:
    from driftwatch.suite import ProbeSuite, builtin_suites, round_tokens

    count = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        from driftwatch.models import resolve_model_dir

        tok = AutoTokenizer.from_pretrained(resolve_model_dir(args.tokenizer))
        count = lambda text: len(tok(text, add_special_tokens=False).input_ids)  # noqa: E731
    unit = "tokens" if count else "≈tokens"
    for name in args.suites or builtin_suites():
        suite = ProbeSuite.load(name)
        rows = [("capability", "group", "metric", "items", "kinds", unit)]
        total = 0
        for cap in suite.capabilities:
            items = suite.items_of(cap.id)
            tokens = round_tokens(items, count)
            total += tokens
            kinds = ",".join(sorted({i.kind for i in items}))
            rows.append(
                (
                    f"{cap.id} {cap.name}",
                    cap.group,
                    _headline(cap),
                    str(len(items)),
                    kinds,
                    f"{tokens:,}",
                )
            )
        print(f"{suite.name}: {len(suite)} items, {total:,} {unit} per round — {suite.path}")
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        print()
    return 0


def _headline(cap: Capability) -> str:
    """A capability's headline metric: ``score``, or ``mean(a, b)`` over named metrics."""
    return f"mean({', '.join(d.name for d in cap.metrics)})" if cap.metrics else cap.metric


def _scan(args: argparse.Namespace) -> int:
    from driftwatch.formatting import trajectory
    from driftwatch.scan import scan

    result = scan(args.run_dir, base=args.base, suite=args.suite, out=args.out, device=args.device)
    print(trajectory(result.history, result.decisions))
    print("(Δ% against the base model; D in nats/token; * = past a default threshold)")
    print(f"wrote {result.out}: driftwatch_history.jsonl, TensorBoard events", end="")
    print("".join(f", {p.name}" for p in result.plots))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from driftwatch.demo import format_summary, run_demo

    result = run_demo(
        model=args.model,
        steps=args.steps,
        lr=args.lr,
        every=args.every,
        action=args.action,
        logdir=args.logdir,
        device=args.device,
        suite=args.suite,
        task=args.task,
        batch_size=args.batch_size,
        seed=args.seed,
        save_model=args.save_model,
    )
    print(format_summary(result))
    return 0


def _import(args: argparse.Namespace) -> int:
    from driftwatch.importers import import_suite

    suite, dropped = import_suite(
        args.files,
        args.to,
        source=args.source,
        name=args.name,
        capability=args.capability,
        skip_invalid=args.skip_invalid,
    )
    for problem in dropped:
        print(f"skipped {problem}", file=sys.stderr)
    caps = ", ".join(f"{c.id} ({len(suite.items_of(c.id))})" for c in suite.capabilities)
    print(f"wrote {args.to}: {len(suite)} items — {caps}")
    return 0


def _session(args: argparse.Namespace, suite: Any, reference: Any) -> Any:
    """The model, and a probe session of ``suite`` on it against ``reference`` (a spec)."""
    from driftwatch.models import load_model
    from driftwatch.runner import detect_compute
    from driftwatch.session import ProbeSession

    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    session = ProbeSession.open(
        model,
        tokenizer,
        suite,
        reference=reference,
        token_budget=args.token_budget,
        memory_share=args.memory_share,
        decode=getattr(args, "decode", "draft"),
        compute=detect_compute(model, args.autocast),
    )
    return model, session


def _reference(args: argparse.Namespace) -> int:
    from driftwatch.settings import ReferenceSpec
    from driftwatch.suite import ProbeSuite

    spec = ReferenceSpec(cache_dir=args.cache_dir, topk=args.topk)
    _, session = _session(args, ProbeSuite.load(args.suite), spec)
    state = "reused cached reference" if session.reused else "built reference"
    print(f"{state}: {session.reference.path}", file=sys.stderr)
    print(session.reference.path)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from driftwatch.formatting import table
    from driftwatch.reference import Reference
    from driftwatch.settings import ReferenceSpec
    from driftwatch.suite import ProbeSuite

    head = Reference.load(args.reference)
    suite = ProbeSuite.load(args.suite or head.metadata.get("suite_name", ""))
    settings = json.loads(head.metadata["settings"])
    spec = ReferenceSpec(
        path=args.reference,
        topk=settings.get("topk", 32),
        build_from=settings.get("reference_from", "model"),
        cross_precision=args.cross_precision,
    )
    model, session = _session(args, suite, spec)
    report, _ = session.measure(model, step=0)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(table(report))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from driftwatch.compare import compare_models, write_comparison
    from driftwatch.formatting import comparison_table

    labels, reports = compare_models(
        args.models,
        base=args.base,
        suite=args.suite,
        labels=args.labels,
        device=args.device,
        token_budget=args.token_budget,
    )
    result = write_comparison(labels, reports, args.out)
    print(comparison_table(labels, reports))
    print("(headline Δ% against the base; KL in nats/token; * = 95% interval excludes 0)")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from driftwatch.report import write_report

    print(write_report(args.run_dir, args.out))
    return 0

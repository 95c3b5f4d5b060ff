"""The ``driftwatch`` command.

    driftwatch reference MODEL_DIR --suite smoke          build (or find) a base reference
    driftwatch probe MODEL_DIR --reference PATH [--json]  per-capability drift of a model
    driftwatch validate PATH [PATH ...]                   check probe files / suite manifests
    driftwatch suites [--tokenizer MODEL_DIR]             list suites, capabilities, sizes
    driftwatch import FILE... --to DIR --source captrack  convert benchmark files to a suite
    driftwatch demo [--steps N --lr LR --every N ...]     fine-tune SmolLM2, watch it forget
    driftwatch scan RUN_DIR --base MODEL_DIR              drift of every saved checkpoint

``MODEL_DIR`` is a local Hugging Face model directory, or ``smollm2`` for the bundled
SmolLM2-135M-Instruct. Errors are printed as one clear line (exit status 2); ``validate``
exits with 1 when it finds problems.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from driftwatch.errors import DriftwatchError

if TYPE_CHECKING:
    from driftwatch.items import Capability

__all__ = ["main"]

logger = logging.getLogger("driftwatch")


def _memory_share(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'none', found {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftwatch", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "model",
            metavar="MODEL_DIR",
            help="local model directory, or 'smollm2' for the bundled model",
        )
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
        p.add_argument(
            "--autocast",
            default="off",
            choices=["off", "bf16", "fp16"],
            help="run every probe forward under torch.autocast in this dtype, as mixed-precision "
            "training does (bf16 for HF bf16=True, TRL's default, Lightning bf16-mixed); the "
            "reference records it (default: off, the weights' dtype)",
        )
        p.add_argument(
            "--token-budget",
            type=int,
            default=4096,
            help="most tokens in one probe forward pass (default: 4096)",
        )
        p.add_argument(
            "--memory-share",
            type=_memory_share,
            default=None,
            help="most memory one probe pass may use beyond the weights, as a share of them "
            "(a training run's monitor uses 0.1); default: none, no training shares the memory",
        )

    ref = sub.add_parser("reference", help="build or find the base reference of a model")
    model_args(ref)
    ref.add_argument("--suite", default="smoke", help="suite name or folder (default: smoke)")
    ref.add_argument("--cache-dir", default=None, help="reference cache folder")
    ref.add_argument("--topk", type=int, default=32, help="top-k kept per distribution position")

    probe = sub.add_parser("probe", help="measure a model's drift against a reference")
    model_args(probe)
    probe.add_argument("--reference", required=True, help="reference .safetensors file")
    probe.add_argument(
        "--suite", default=None, help="suite name or folder (default: the one the reference names)"
    )
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.add_argument(
        "--decode",
        choices=["draft", "plain"],
        default="draft",
        help="greedy replies verified against the reference's base replies, decoding only "
        "past a divergence (draft, default), or decoded token by token (plain); the same "
        "replies either way",
    )
    probe.add_argument(
        "--cross-precision",
        default=None,
        metavar="COMPUTE",
        help="accept a reference built in this other compute precision (its fingerprint's "
        "'compute', e.g. float32): the drift then includes the change of precision",
    )

    val = sub.add_parser("validate", help="check probe files or suite manifests")
    val.add_argument("paths", nargs="+", metavar="PATH")

    suites = sub.add_parser("suites", help="list suites: capabilities, items, tokens per round")
    suites.add_argument(
        "suites", nargs="*", metavar="SUITE", help="names or folders (default: built-in)"
    )
    suites.add_argument(
        "--tokenizer",
        metavar="MODEL_DIR",
        default=None,
        help="count tokens with this model's tokenizer ('smollm2' for the bundled one) instead "
        "of estimating 4 characters per token",
    )

    imp = sub.add_parser("import", help="convert CapTrack or lm-eval files into a suite folder")
    imp.add_argument("files", nargs="+", metavar="FILE", help="JSONL (or parquet for captrack)")
    imp.add_argument("--to", required=True, metavar="DIR", help="suite folder to write")
    imp.add_argument("--source", required=True, choices=["captrack", "lm-eval"])
    imp.add_argument("--name", default=None, help="suite name (default: the folder's name)")
    imp.add_argument(
        "--capability", default="C1", help="capability id of lm-eval items (default: C1)"
    )
    imp.add_argument(
        "--skip-invalid", action="store_true", help="drop rows that cannot become probes"
    )
    scan = sub.add_parser("scan", help="probe every checkpoint-<step> folder of a finished run")
    scan.add_argument("run_dir", metavar="RUN_DIR", help="the Trainer's output_dir")
    scan.add_argument("--base", required=True, help="the base model folder, or 'smollm2'")
    scan.add_argument("--suite", default="quick", help="probe suite (default: quick)")
    scan.add_argument(
        "--out", default=None, help="output folder (default: RUN_DIR/driftwatch_scan)"
    )
    scan.add_argument("--device", default="cpu", help="torch device (default: cpu)")

    demo = sub.add_parser(
        "demo", help="fine-tune the bundled model on a narrow task and watch drift live"
    )
    demo.add_argument("--model", default="smollm2", help="local model directory (default: smollm2)")
    demo.add_argument("--steps", type=int, default=40, help="training steps (default: 40)")
    demo.add_argument("--lr", type=float, default=3e-5, help="learning rate (default: 3e-5)")
    demo.add_argument("--every", type=int, default=4, help="probe every N steps (default: 4)")
    demo.add_argument(
        "--action",
        default="rollback",
        choices=["warn", "stop", "rollback"],
        help="what a breach does (default: rollback, then stop)",
    )
    demo.add_argument("--logdir", default="runs/demo", help="TensorBoard root (default: runs/demo)")
    demo.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    demo.add_argument("--suite", default="quick", help="probe suite (default: quick)")
    demo.add_argument("--task", default="atlas", choices=["atlas", "labels"], help="narrow task")
    demo.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose and args.command != "validate":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "suites":
            return _suites(args)
        if args.command == "import":
            return _import(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "scan":
            return _scan(args)
        if args.command == "reference":
            return _reference(args)
        return _probe(args)
    except DriftwatchError as err:
        print(f"driftwatch: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ImportError) as err:
        print(f"driftwatch: error: {err}", file=sys.stderr)
        return 2


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


if __name__ == "__main__":
    raise SystemExit(main())

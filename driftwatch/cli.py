"""The ``driftwatch`` command.

    driftwatch reference MODEL_DIR --suite smoke          build (or find) a base reference
    driftwatch probe MODEL_DIR --reference PATH [--json]  per-capability drift of a model
    driftwatch validate PATH [PATH ...]                   check probe files / suite manifests
    driftwatch suites [--tokenizer MODEL_DIR]             list suites, capabilities, sizes
    driftwatch import FILE... --to DIR --source captrack  convert benchmark files to a suite
    driftwatch demo [--steps N --lr LR --every N ...]     fine-tune SmolLM2, watch it forget
    driftwatch scan RUN_DIR --base MODEL_DIR              drift of every saved checkpoint
    driftwatch compare MODEL... --base MODEL_DIR          several models against one base
    driftwatch report RUN_DIR                             one HTML page of a run

``MODEL_DIR`` is a local Hugging Face model directory, or ``smollm2`` for the bundled
SmolLM2-135M-Instruct. Errors are printed as one clear line (exit status 2); ``validate``
exits with 1 when it finds problems.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from driftwatch import commands
from driftwatch.errors import DriftwatchError
from driftwatch.progress import shown

__all__ = ["main"]

_LOADS_A_MODEL = ("reference", "probe", "demo", "scan", "compare")

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
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
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

    cmp = sub.add_parser(
        "compare",
        help="several fine-tuned models against one base: heatmap, spider plot, CSV, Markdown",
    )
    cmp.add_argument(
        "models",
        nargs="+",
        metavar="MODEL_OR_HISTORY",
        help="fine-tuned model folders (full or PEFT adapters), probed against --base; or a "
        "run's driftwatch_history.jsonl (or its folder), whose last round is used",
    )
    cmp.add_argument("--base", default=None, help="the base model folder, or 'smollm2'")
    cmp.add_argument("--suite", default="quick", help="probe suite (default: quick)")
    cmp.add_argument("--labels", nargs="+", default=None, help="one column name per entry")
    cmp.add_argument("--out", default="driftwatch_compare", help="output folder")
    cmp.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    cmp.add_argument("--token-budget", type=int, default=4096, help="tokens per forward pass")

    rep = sub.add_parser("report", help="one self-contained HTML page of a run")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="the run's logdir (its history file)")
    rep.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")

    demo = sub.add_parser(
        "demo", help="fine-tune the bundled model on a narrow task and watch drift live"
    )
    demo.add_argument("--model", default="smollm2", help="local model directory (default: smollm2)")
    demo.add_argument("--steps", type=int, default=24, help="training steps (default: 24)")
    demo.add_argument("--lr", type=float, default=2.5e-6, help="learning rate (default: 2.5e-6)")
    demo.add_argument("--every", type=int, default=2, help="probe every N steps (default: 2)")
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
    demo.add_argument(
        "--save-model",
        action="store_true",
        help="save the weights training ended with in LOGDIR/<run>/model (for compare, scan)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose and args.command in _LOADS_A_MODEL:
        # transformers' own bars (weights loading) are noise beside ours; not imported for
        # the commands that need no model, which start in well under a second
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        with shown(sys.stderr if show else None):
            return commands.run(args)
    except DriftwatchError as err:
        print(f"driftwatch: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ImportError) as err:
        print(f"driftwatch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Post-hoc: save checkpoints during an ordinary run, then probe them all with driftwatch scan.

    python examples/offline_scan.py [--tiny]

The same as ``driftwatch scan RUN_DIR --base smollm2`` on the command line. It writes
``RUN_DIR/driftwatch_scan/``: the drift trajectory (``driftwatch_history.jsonl``,
TensorBoard events) and ``trajectory.png`` / ``radar.png``.
"""

from __future__ import annotations

from _common import parser, setup, train_rows
from transformers import Trainer, TrainingArguments

from driftwatch.scan import scan
from driftwatch.tasks import PadCollator


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    tok = run["tokenizer"]
    out = f"{args.out}/offline_scan"
    base = f"{out}/base"
    run["model"].save_pretrained(base)  # the starting weights, to compare against
    tok.save_pretrained(base)
    Trainer(  # an ordinary run, no driftwatch attached: it only saves checkpoints
        model=run["model"],
        args=TrainingArguments(
            output_dir=out,
            max_steps=run["steps"],
            per_device_train_batch_size=run["batch"],
            learning_rate=run["lr"],
            report_to=[],
            save_strategy="steps",
            save_steps=run["every"],
            save_only_model=True,
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=train_rows(tok, run["steps"] * run["batch"]),
        data_collator=PadCollator(tok.pad_token_id),
        processing_class=tok,
    ).train()
    result = scan(out, base=base, suite=run["suite"])
    for report in result.history:
        changes = ", ".join(
            f"{cid} {c.delta_pct:+.0f}%"
            if c.delta_pct is not None
            else f"{cid} {c.headline.delta:.3f}"
            for cid, c in report.capabilities.items()
        )
        print(f"checkpoint-{report.step}: {changes}")
    print(f"wrote {result.out}: {[p.name for p in result.plots]}")


if __name__ == "__main__":
    main()

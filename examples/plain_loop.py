"""A plain PyTorch loop: monitor.start() once, monitor.step() after each optimizer step.

python examples/plain_loop.py [--tiny]
"""

from __future__ import annotations

import torch
from _common import parser, setup, train_rows

from driftwatch import DriftMonitor
from driftwatch.tasks import PadCollator


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    model, tok = run["model"], run["tokenizer"]
    rows = train_rows(tok, run["steps"] * run["batch"])
    collate = PadCollator(tok.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run["lr"])

    monitor = DriftMonitor(
        run["suite"],
        every_n_steps=run["every"],
        action="rollback",  # restore the last healthy weights, then stop
        logdir=f"{args.out}/plain_loop",
    )
    monitor.start(model, tok, optimizer=optimizer)  # builds (or reuses) the base reference
    model.train()
    for step in range(1, run["steps"] + 1):
        batch = collate(rows[(step - 1) * run["batch"] : step * run["batch"]])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        decision = monitor.step(model, step, optimizer=optimizer)
        if decision.probed:
            print(f"step {step}: loss {loss.item():.3f}, {decision.message}")
        if decision.stop:
            break
    monitor.finish(model, step)  # a last round at the final step, if not just probed
    monitor.close()
    print(f"rollbacks: {monitor.rollbacks}; rounds: {len(monitor.history)}")


if __name__ == "__main__":
    main()

"""A plain loop with Hugging Face Accelerate: driftwatch watches the unwrapped model.

accelerate launch --cpu --num_processes 2 examples/accelerate_loop.py [--tiny]
python examples/accelerate_loop.py [--tiny]          (one process)

``Accelerator.prepare`` wraps the model for data parallelism (DDP over gloo on CPU, NCCL on
GPUs); driftwatch is given ``accelerator.unwrap_model(model)``, the same parameters without
the wrapper, because a probe round needs no gradient synchronisation. In a process group the
monitor shares each round's batches between the processes, gathers the results, and every
process takes the same decision, so they all stop at the same step. Only the main process
writes TensorBoard and the history.
"""

from __future__ import annotations

import torch
from _common import parser, setup, train_rows
from accelerate import Accelerator
from torch.utils.data import DataLoader

from driftwatch import DriftMonitor
from driftwatch.tasks import PadCollator


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    accelerator = Accelerator()
    run = setup(args)
    model, tok = run["model"], run["tokenizer"]
    rows = train_rows(tok, run["steps"] * run["batch"] * accelerator.num_processes)
    loader = DataLoader(rows, batch_size=run["batch"], collate_fn=PadCollator(tok.pad_token_id))
    optimizer = torch.optim.AdamW(model.parameters(), lr=run["lr"])
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    net = accelerator.unwrap_model(model)  # what the monitor probes, snapshots and restores

    monitor = DriftMonitor(
        run["suite"],
        every_n_steps=run["every"],
        action="rollback",  # restore the last healthy weights on every process, then stop
        logdir=f"{args.out}/accelerate_loop",
    )
    monitor.start(net, tok, optimizer=optimizer)
    model.train()
    step, decision = 0, None
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        decision = monitor.step(net, step, optimizer=optimizer)
        if decision.probed:
            accelerator.print(f"step {step}: loss {loss.item():.3f}, {decision.message}")
        if decision.stop or step >= run["steps"]:
            break
    monitor.finish(net, step)  # a last round at the final step, if not just probed
    monitor.close()
    # every process prints its own line: the test checks that they agree
    print(
        f"process {accelerator.process_index}/{accelerator.num_processes}: "
        f"rounds: {len(monitor.history)}; rollbacks: {monitor.rollbacks}; stopped at step {step}"
    )
    # leave together: a process that tears down its gloo group while its peer has already
    # exited can abort in the teardown ("terminate called without an active exception")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()

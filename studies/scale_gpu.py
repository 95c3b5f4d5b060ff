"""The realistic-scale study on a lent GPU: the matrix in parallel, and a null of weight noise.

    python studies/scale_gpu.py null --scale 0.006 --draws 8   # one null job
    python studies/scale_gpu.py smoke                           # every code path, a tiny model
    python studies/scale_gpu.py drive --minutes 7.5             # the whole plan, on the GPU

``drive`` is what ``studies/gpu_scale.sh`` runs on the device machine. It converts the bundled
model once, builds the ``quick`` and ``standard`` references on the GPU, then runs
:data:`PLAN` in priority order, ``--workers`` jobs at a time, each in its own process
(``scale_study.py run --standard-live``: the ``standard`` evaluation at every live round, on
the weights the live probe saw, instead of checkpoints). At ``--minutes`` it stops the jobs
still running (their rounds so far are kept: every round is appended as it finishes) and packs
the results into ``$OUT/scale-gpu.tar.gz``, as it does every 30 seconds before that.

``null`` is the measurement docs/calibration.md asked for before formatting swings can be
called forgetting: the base model's weights with Gaussian noise added (each tensor's noise
``scale`` times its root mean square), probed with ``standard`` and ``quick`` exactly as a
fine-tuned run is. Nothing is learned and nothing is forgotten, so whatever the criteria or
the live policy find on these draws is the resolution limit of the instruments at that KL.
A scale of 0.004–0.009 gives a KL of about 0.002–0.01 nats/token on SmolLM2 (measured on
CPU: 130·scale²), the range of the useful runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NULL_SCALES = (0.004, 0.006, 0.009)
# priority order. The null and the first rounds of most rows ran on 2026-12-04
# (docs/calibration.md, "On a GPU"). First the useful rows no machine has classified yet
# (what the CPU settled is in studies/recorded/scale_runs.json), then the rest. The null
# (`null-<scale>` jobs) is run only when named with --jobs.
PLAN: tuple[str, ...] = (
    *(f"mix-{m}-s{s}" for s in (1, 2) for m in ("lora2e-4", "full1e-5")),
    *(f"mix-lora1e-4-s{s}" for s in range(8)),
    *(f"mix3-lora1e-4-s{s}" for s in (0, 1, 2)),
    *(f"mixlist-lora1e-4-s{s}" for s in (0, 1, 2)),
    "mix3-lora2e-4-s0",
    "mix3-lora2e-4-s1",
    "mix3-lora2e-4-s2",
    "mix3-full1e-5-s0",
    "mix3-full1e-5-s1",
    "mix3-full1e-5-s2",
    "mix-lora2e-4-s0",
    "labels-full2e-5",
    "json-full2e-5",
    "atlas-full2e-5",
    "atlas-lora2e-4",
    "atlas-dpo-full2e-5",
    "atlas-full2e-6-slow",
)


def null_one(scale: float, draws: int, args: argparse.Namespace) -> None:
    """``draws`` noisy copies of the base weights, each probed with standard and quick."""
    import torch
    from scale_study import budget  # type: ignore[import-not-found]

    from driftwatch.models import load_model
    from driftwatch.monitor import DriftMonitor

    folder = Path(args.results) / f"null-{scale:g}"
    if (folder / "run.json").is_file():
        print(f"{folder.name}: done already")
        return
    started = time.perf_counter()
    model, tokenizer = load_model(args.model, device=args.device)
    monitors = {
        suite: DriftMonitor(
            suite, every_n_steps=1, action="warn", logdir=folder / suite, budget=budget(args)
        )
        for suite in ("standard", "quick")
    }
    for monitor in monitors.values():
        monitor.start(model, tokenizer)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    noise = torch.Generator(device=args.device)
    for draw in range(1, draws + 1):
        noise.manual_seed(int(scale * 1e6) * 1000 + draw)
        with torch.no_grad():
            for p in model.parameters():
                rms = p.float().pow(2).mean().sqrt()
                p.add_(torch.randn(p.shape, generator=noise, device=p.device) * scale * rms)
        for monitor in monitors.values():
            monitor.probe(model, draw)
        model.load_state_dict(base)
        print(f"{folder.name}: draw {draw} ({time.perf_counter() - started:.0f}s)", flush=True)
    for monitor in monitors.values():
        monitor.close()
    record = {
        "run": {"name": folder.name, "kind": "null", "scale": scale, "draws": draws},
        "seconds": time.perf_counter() - started,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
    }
    tmp = folder / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "run.json")


# ------------------------------------------------------------------------------ the driver
def _command(job: str, args: argparse.Namespace) -> list[str]:
    common = ["--model", args.model, "--results", args.results, "--device", args.device]
    if job.startswith("null-"):
        scale = job.removeprefix("null-")
        return [sys.executable, str(HERE / "scale_gpu.py"), "null", "--scale", scale,
                "--draws", str(args.draws), *common]  # fmt: skip
    return [sys.executable, str(HERE / "scale_study.py"), "run", "--only", job,
            "--standard-live", "--steps", str(args.steps), "--every", str(args.every),
            "--token-budget", str(args.token_budget), *common]  # fmt: skip


def pack(results: Path, dest: Path) -> None:
    """The results folder, less TensorBoard files, as one tar.gz written atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(results.rglob("*")):
            if path.is_file() and "tfevents" not in path.name and "trainer" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(results.parent)))
    os.replace(tmp, dest)


def prepare(args: argparse.Namespace) -> None:
    """The model converted once and both references built on the device, before any job."""
    from scale_study import budget

    from driftwatch.models import load_model
    from driftwatch.monitor import DriftMonitor

    began = time.perf_counter()
    model, tokenizer = load_model(args.model, device=args.device)
    for suite in ("quick", "standard"):
        DriftMonitor(suite, action="warn", budget=budget(args)).start(model, tokenizer)
        print(f"prepare: {suite} reference at {time.perf_counter() - began:.0f}s", flush=True)
    del model
    if args.device == "cuda":
        import torch

        torch.cuda.empty_cache()


def drive(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.minutes * 60
    results = Path(args.results)
    logs = results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = Path(os.environ.get("OUT", results.parent)) / "scale-gpu.tar.gz"
    prepare(args)
    jobs = [j for j in (args.jobs.split(",") if args.jobs else PLAN) if j]
    running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    done: dict[str, Any] = {}
    stop = threading.Event()

    def packer() -> None:
        while not stop.wait(30):
            pack(results, out)

    packing = threading.Thread(target=packer, daemon=True)
    packing.start()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    while (jobs or running) and time.monotonic() < deadline:
        while jobs and len(running) < args.workers:
            job = jobs.pop(0)
            with (logs / f"{job}.log").open("wb") as log:
                proc = subprocess.Popen(_command(job, args), stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=HERE.parent)  # fmt: skip
            running[job] = (proc, time.monotonic())
            print(f"start {job}", flush=True)
        time.sleep(2)
        for job, (proc, began) in list(running.items()):
            if proc.poll() is not None:
                done[job] = {"rc": proc.returncode, "seconds": round(time.monotonic() - began)}
                del running[job]
                print(f"end {job}: {done[job]}", flush=True)
    for job, (proc, began) in running.items():
        proc.kill()
        done[job] = {"rc": "stopped at the deadline", "seconds": round(time.monotonic() - began)}
        print(f"stopped {job} after {done[job]['seconds']}s", flush=True)
    for proc, _ in running.values():
        proc.wait()
    (results / "jobs.json").write_text(
        json.dumps({"done": done, "not_started": jobs}, indent=1), encoding="utf-8"
    )
    stop.set()
    packing.join()  # a pack in progress writes the same .tmp file as the last one below
    for folder in sorted(p for p in results.iterdir() if (p / "quick").is_dir()):
        rounds = {
            suite: len((folder / suite / "driftwatch_history.jsonl").read_text().splitlines())
            if (folder / suite / "driftwatch_history.jsonl").is_file()
            else 0
            for suite in ("quick", "standard")
        }
        print(f"{folder.name}: rounds {rounds}, finished {(folder / 'run.json').is_file()}")
    for log in sorted(logs.glob("*.log")):  # a failed job's traceback, where the output shows it
        lines = log.read_text(errors="replace").splitlines()
        if any("Traceback" in x or "Error" in x for x in lines):
            print(f"--- {log.name}", *lines[-25:], sep="\n")
    pack(results, out)
    print(f"packed {out} ({out.stat().st_size} bytes); not started: {jobs}", flush=True)
    return 0


def smoke(args: argparse.Namespace) -> int:
    """Every code path of ``drive`` on a two-layer random model of SmolLM2's shape: two steps,
    a round at each, one null draw. What it proves is that the real call will not crash."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    assets = Path(args.assets)
    tiny = Path(args.results).parent / "tiny-smollm2"
    config = AutoConfig.from_pretrained(assets)
    config.num_hidden_layers = 2
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(assets).save_pretrained(tiny)
    args.model, args.steps, args.every, args.draws = str(tiny), 2, 1, 1
    args.jobs = args.jobs or "null-0.006,mix-lora2e-4-s0,atlas-dpo-full2e-5,mix3-full1e-5-s0"
    return drive(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("null", "drive", "smoke"))
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--results", default=str(HERE / "results" / "scale-gpu"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--scale", type=float, default=0.006)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--token-budget", type=int, default=8192)
    # 3 lets a run finish: rounds are launch-bound, and 8 processes slowed each one 3-fold
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=7.5)
    parser.add_argument("--jobs", default="", help="comma-separated jobs instead of PLAN")
    parser.add_argument("--assets", default=".gpu/assets", help="smoke: SmolLM2's tokenizer")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from scale_study import default_device

    args.device = args.device or default_device()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.mode == "null":
        null_one(args.scale, args.draws, args)
        return 0
    return smoke(args) if args.mode == "smoke" else drive(args)


if __name__ == "__main__":
    sys.exit(main())

"""The realistic-scale calibration study (docs/calibration.md, "At realistic scale").

    python studies/scale_study.py replay            # the base model's sampled replay replies
    python studies/scale_study.py run [--only N]    # skips finished runs, resumes cut-off ones
    python studies/scale_study.py offline [--only N] [--offline-steps 20,40,60 | settle]
    python studies/scale_study.py progress --only N  # task progress alone, retrained (SFT/DPO)
    python studies/scale_study.py status            # what is done, per run and step
    python studies/scale_study.py analyse           # tables and plot (scale_analysis.py)

``run`` fine-tunes SmolLM2-135M-Instruct (CPU, fp32) once per row of :data:`MATRIX`, for
``--steps`` (60) optimizer steps of ``--batch`` (4) conversations, with the ``quick`` suite
attached live in warn mode every ``--every`` (4) steps: 15 live rounds. Warn mode leaves the
trajectory a user would get without a monitor. At every round the run also records

* the **task progress**: greedy exact match of the target on a fixed set of the run's task
  (:func:`task_set`) and the target's mean log-prob per token, read off one teacher-forced
  forward pass, as driftwatch's ``target`` probes read theirs;
* the **weights**, through the Trainer's own checkpoints (``<run>/trainer/checkpoint-<step>``:
  full weights or LoRA adapters), so that the offline evaluation sees exactly the weights the
  live probe saw. The newest also keeps the optimizer state, so that a run cut off (a run
  with a slow ``quick`` can outlast a two-core session) resumes from it (:func:`run_one`).

On a GPU (``--standard-live``, what ``studies/scale_gpu.py`` runs) the ``standard`` suite is
attached too and probes the same weights at every round; no checkpoints are written.

``offline`` runs the ``standard`` suite on those checkpoints after training, as
``driftwatch scan`` does (CapTrack compares checkpoints post hoc), one checkpoint at a time
and resumable: each round is appended to ``<run>/standard/driftwatch_history.jsonl`` as it
finishes, and steps already there are skipped. On 2 CPU cores a standard round takes 3–7
minutes, ten times a live round, so it runs apart from the training.

The rows (``kind`` is the intent; whether a run *is* benign is decided by the offline
evaluation, with the criteria in docs/calibration.md):

``mix-lora{1,2}e-4-sN``  useful: the ``labels`` task (one-word sentiment labels) mixed 1:1 with
                         replay, the base model's own *sampled*, multi-sentence replies to
                         diverse prompts; LoRA r 16 on every linear layer of the decoder, lr
                         1e-4 or 2e-4; seeds 0–2, and 3–4 at 1e-4. (A pilot mixed ``atlas``
                         instead: 36 invented capitals are not learned in 60 steps,
                         docs/calibration.md.)
``mix-full1e-5-sN``      useful: the same data, full fine-tune at lr 1e-5; seeds 0–2.
``mix3-lora2e-4-sN``,    useful: one task row in four instead of one in two (more replay, the
``mix3-full1e-5-sN``     same learning rates); seeds 0–2. Added before any of them ran.
``mix3-lora1e-4-sN``     useful: the same, LoRA at 1e-4; seeds 0–2 (added 2026-12-05).
``mixlist-lora1e-4-sN``  useful: one task row in four, the other three from the replay replies
                         to the 96 prompts that ask for a list (numbered facts, bullet points,
                         steps, tips, a checklist); LoRA at 1e-4; seeds 0–2 (added 2026-12-05,
                         after every other design lost formatting in some seed, before any of
                         them ran).
``atlas-full2e-5``       harmful: narrow SFT on ``atlas`` alone, full fine-tune, lr 2e-5.
``labels-full2e-5``      harmful: one-word sentiment labels, another format.
``json-full2e-5``        harmful: the atlas questions answered as one-line JSON.
``atlas-lora2e-4``       harmful: narrow ``atlas`` SFT through LoRA, lr 2e-4.
``atlas-full2e-6-slow``  harmful, slow: narrow ``atlas`` at lr 2e-6, so that forgetting builds
                         over many rounds and detection delay can be measured.
``atlas-dpo-full2e-5``   SFT against DPO: the atlas data as preference pairs, TRL's
                         ``DPOTrainer`` (β 0.1, fp32 like the SFT rows), the lr of
                         ``atlas-full2e-5``; the two are compared at equal task progress, not at
                         equal steps: the share of facts whose right reply the model prefers
                         (``progress``; under DPO the target's log-prob falls as it learns).

``progress`` retrains a row with only the task progress attached (no monitor, no
checkpoints: 3–5 minutes here) and records, at every round, greedy exact match, the
target's log-prob, and on ``atlas`` the share of facts whose right reply has the higher
log-prob than the next country's and the mean margin
(:func:`driftwatch.tasks.preference_progress`), in ``studies/recorded/scale_progress.json``
with the largest log-prob difference from the monitored run's record.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "scale"
SUITES = ("quick", "standard")  # the live monitor's suite, and the offline evaluation's
# when each part of a run started, and the step it resumed from: written by every run that
# saves checkpoints, so a folder with it and no run.json is one that `run` resumes
PARTS = "parts.json"
# the replay replies, sampled once and committed: every run of the study, on any machine,
# trains on the same text (sampling on another CPU may draw other tokens), and a fresh
# checkout does not spend 9–12 minutes sampling them again
REPLAY = Path(__file__).resolve().parent / "recorded" / "replay.json"
REPLAY_TOKENS = 256
# task progress retrained without a monitor (``progress``): SFT against DPO at equal progress
PROGRESS = Path(__file__).resolve().parent / "recorded" / "scale_progress.json"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Run:
    name: str
    kind: str  # useful | harmful | dpo
    # mix (the task 1:1 with replay) | mix3 (1:3) | mixlist (1:3, replay on list prompts only)
    # | task (the task alone)
    data: str
    task: str  # atlas | labels | json: what is learned, and what the task accuracy reads
    method: str  # full | lora | dpo
    lr: float
    seed: int = 0


MATRIX: tuple[Run, ...] = (
    # one of each first, so that a partial matrix already spans it; then the other seeds
    Run("mix-lora2e-4-s0", "useful", "mix", "labels", "lora", 2e-4, 0),
    Run("atlas-full2e-5", "harmful", "task", "atlas", "full", 2e-5),
    Run("mix-full1e-5-s0", "useful", "mix", "labels", "full", 1e-5, 0),
    Run("labels-full2e-5", "harmful", "task", "labels", "full", 2e-5),
    Run("atlas-full2e-6-slow", "harmful", "task", "atlas", "full", 2e-6),
    Run("mix-lora1e-4-s0", "useful", "mix", "labels", "lora", 1e-4, 0),
    Run("json-full2e-5", "harmful", "task", "json", "full", 2e-5),
    Run("atlas-lora2e-4", "harmful", "task", "atlas", "lora", 2e-4),
    Run("atlas-dpo-full2e-5", "dpo", "task", "atlas", "dpo", 2e-5),
    *(
        Run(f"mix-{m}{lr}-s{s}", "useful", "mix", "labels", m, float(lr), s)
        for s in (1, 2)
        for m, lr in (("lora", "2e-4"), ("full", "1e-5"), ("lora", "1e-4"))
    ),
    # more replay: one task row in four (added 2026-12-04, before any of them ran)
    *(
        Run(f"mix3-{m}{lr}-s{s}", "useful", "mix3", "labels", m, float(lr), s)
        for s in (0, 1, 2)
        for m, lr in (("lora", "2e-4"), ("full", "1e-5"))
    ),
    # more seeds of the one setting benign in all its runs so far (added 2026-12-05, before
    # either ran); s5 and s6 added the evening of 2026-12-05, when it was benign in 4 of 5
    # seeds, before either ran; s7 added the night of 2026-12-06, when it was benign in 6 of 7,
    # before it ran
    *(Run(f"mix-lora1e-4-s{s}", "useful", "mix", "labels", "lora", 1e-4, s) for s in range(3, 8)),
    # the gentler LoRA rate with more replay: every setting so far lost formatting in some
    # seed by step 60 (added 2026-12-05, after mix-lora1e-4-s3, before any of them ran)
    *(Run(f"mix3-lora1e-4-s{s}", "useful", "mix3", "labels", "lora", 1e-4, s) for s in (0, 1, 2)),
    # replay that holds formatting: four of the six benign runs lost half the W3b formatting
    # by step 60 and every setting lost it in some seed (added 2026-12-05, before any ran)
    *(
        Run(f"mixlist-lora1e-4-s{s}", "useful", "mixlist", "labels", "lora", 1e-4, s)
        for s in (0, 1, 2)
    ),
)


# ------------------------------------------------------------------------------ data
_TOPICS = (
    "photosynthesis", "compound interest", "the water cycle", "black holes", "vaccines",
    "the French Revolution", "machine learning", "climate change", "the stock market",
    "volcanoes", "sleep", "recycling", "the immune system", "electric cars", "coffee",
    "the Roman Empire", "gravity", "inflation", "honeybees", "the internet", "meditation",
    "solar panels", "the printing press", "earthquakes", "chess", "jazz", "DNA", "rainbows",
    "public libraries", "the Moon landing",
)  # fmt: skip
_TASKS = (  # none is a topic of the W3a or W3b probes (the first replay's six were)
    "fix a leaky tap", "set up a home aquarium", "learn to juggle", "paint a room",
    "start a podcast", "write a short story", "look after a cast-iron pan", "plan a camping trip",
    "learn to play the guitar", "back up a laptop", "sew on a button", "start birdwatching",
)  # fmt: skip
_TEMPLATES = (
    "Explain {t} to a beginner in a few sentences.",
    "Give me three interesting facts about {t}, as a numbered list.",
    "Write a short paragraph about {t}.",
    "What are the main advantages and disadvantages of {t}? Use bullet points.",
    "Summarise what people should know about {t} in about 80 words.",
    "Why does {t} matter? Answer in two short paragraphs.",
)
_HOWTO = (
    "How do I {k}? List the steps.",
    "Give me five tips to {k}.",
    "I want to {k}. Where should I start?",
    "Write a short checklist for anyone who wants to {k}.",
)
# the templates that ask for a list: the base model formats most of its replies to them
_LIST_TEMPLATES = (_TEMPLATES[1], _TEMPLATES[3])
_LIST_HOWTO = (_HOWTO[0], _HOWTO[1], _HOWTO[3])


def replay_prompts() -> list[str]:
    """Diverse chat prompts that ask for multi-sentence, formatted replies (228 of them).

    Written for this study; none is a probe item, so replaying them does not train on the suite.
    Ordered template by template, so that a generation batch holds replies of similar length.
    """
    prompts = [t.format(t=topic) for t in _TEMPLATES for topic in _TOPICS]
    prompts += [t.format(k=k) for t in _HOWTO for k in _TASKS]
    return prompts


def list_prompts() -> frozenset[str]:
    """The replay prompts that ask for a list (96 of 228): the ``mixlist`` rows replay only
    the base model's replies to these.

    Chosen by the prompt, never by the reply: the replies kept are every sample the base drew
    for these prompts, formatted or not, so the replay is still the base's own distribution
    on them and its expected gradient at the base weights is still zero. Keeping only the
    replies that came out formatted would select on the outcome and train formatting *up*.
    """
    topics = {t.format(t=topic) for t in _LIST_TEMPLATES for topic in _TOPICS}
    howtos = {t.format(k=k) for t in _LIST_HOWTO for k in _TASKS}
    return frozenset(topics | howtos)


REPLAY_SAMPLING = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


def make_replay(model_name: str) -> list[dict[str, Any]]:
    """The base model's own reply to every replay prompt, sampled from its distribution
    unchanged (:data:`REPLAY_SAMPLING`: temperature 1, no top-p or top-k cut), at most
    :data:`REPLAY_TOKENS` tokens. Each record holds ``prompt``, ``reply`` and ``ended``
    (whether the model ended the reply itself).

    Why unchanged: a sample of the base's own distribution is the one replay whose expected
    gradient at the base weights is zero, so that replay holds the model where it was instead
    of pulling it somewhere. The second replay sampled at temperature 0.7 and top-p 0.9, which
    sharpens the distribution towards its mode; training on it, like training on greedy
    replies in the first calibration, lost formatting the base model shows in a third of its
    replies (docs/calibration.md). For the same reason a reply the limit cut is kept whole and
    trained on as a prefix, without an end-of-turn token (:func:`replay_features`): cutting it
    back to a whole line and ending it there, as the second replay did, teaches shorter
    replies. Read from :data:`REPLAY` (committed) when it is there; sampled and written there
    when it is not.
    """
    import torch

    from driftwatch.models import load_model

    if REPLAY.is_file():
        cached = json.loads(REPLAY.read_text(encoding="utf-8"))
        if not isinstance(cached, dict) or cached.get("sampling") != REPLAY_SAMPLING:
            raise SystemExit(f"{REPLAY}: made by an earlier harness; move it away to resample")
        replies: list[dict[str, Any]] = cached["replies"]
        return replies
    model, tokenizer = load_model(model_name)
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    prompts, replies = replay_prompts(), []
    started = time.perf_counter()
    for k in range(0, len(prompts), 16):
        batch = prompts[k : k + 16]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in batch
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=REPLAY_TOKENS, **REPLAY_SAMPLING)
        for prompt, row in zip(batch, out[:, enc.input_ids.shape[1] :], strict=True):
            ended = bool((row == tokenizer.eos_token_id).any())
            text = tokenizer.decode(row, skip_special_tokens=True)
            replies.append(
                {"prompt": prompt, "reply": text.strip() if ended else text, "ended": ended}
            )
        print(f"  replay: {k + len(batch)}/{len(prompts)} ({time.perf_counter() - started:.0f}s)")
    cut = sum(not r["ended"] for r in replies)
    print(
        f"  replay: {len(replies)} replies, {cut} cut at {REPLAY_TOKENS} tokens (kept as prefixes)"
    )
    REPLAY.parent.mkdir(parents=True, exist_ok=True)
    tmp = REPLAY.with_suffix(".tmp")
    record = {"sampling": REPLAY_SAMPLING, "tokens": REPLAY_TOKENS, "replies": replies}
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, REPLAY)
    return replies


def replay_features(tokenizer: Any, record: dict[str, Any]) -> dict[str, list[int]]:
    """One replay reply as a training row, the loss on the reply only.

    A reply the model ended is rendered whole by the chat template, its end-of-turn token
    included. A reply the token limit cut is the prompt and the reply's tokens, nothing after:
    the model is trained to continue it as it did, not to end it there.
    """
    from driftwatch.tasks import chat_features

    conv = [
        {"role": "user", "content": record["prompt"]},
        {"role": "assistant", "content": record["reply"]},
    ]
    if record["ended"]:
        return chat_features(tokenizer, [conv])[0]
    prompt = tokenizer.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(str(prompt), add_special_tokens=False).input_ids
    r_ids = tokenizer(record["reply"], add_special_tokens=False).input_ids
    return {"input_ids": p_ids + r_ids, "labels": [-100] * len(p_ids) + r_ids}


def _json_examples(n: int, seed: int) -> list[list[dict[str, str]]]:
    """The atlas questions answered as one line of JSON: a narrow output format."""
    from driftwatch.tasks import chat_examples

    out = []
    for conv in chat_examples("atlas", n, seed=seed):
        country = next(c for c in _countries() if c in conv[0]["content"])
        answer = json.dumps({"country": country, "capital": conv[1]["content"].rstrip(".")})
        out.append([conv[0], {"role": "assistant", "content": answer}])
    return out


def _countries() -> tuple[str, ...]:
    from driftwatch.tasks import COUNTRIES

    return COUNTRIES


def training_rows(run: Run, n: int, tokenizer: Any) -> list[dict[str, list[int]]]:
    """``n`` training rows: the task alone, or the task interleaved with replay (``mix``: every
    other row; ``mix3`` and ``mixlist``: one row in four, ``mixlist`` replaying only the
    replies to :func:`list_prompts`), each replay reply used once before any repeats."""
    from driftwatch.tasks import chat_examples, chat_features

    own = (
        _json_examples(n, run.seed)
        if run.task == "json"
        else chat_examples(run.task, n, seed=run.seed)  # type: ignore[arg-type]
    )
    if run.data == "task":
        return chat_features(tokenizer, own)
    replay = sorted(make_replay("smollm2"), key=lambda r: r["prompt"])
    if run.data == "mixlist":
        lists = list_prompts()
        replay = [r for r in replay if r["prompt"] in lists]
    random.Random(run.seed).shuffle(replay)
    period = 2 if run.data == "mix" else 4  # one task row in every `period`
    task_rows = chat_features(tokenizer, own[: (n + period - 1) // period])
    return [
        task_rows[k // period]
        if k % period == 0
        else replay_features(tokenizer, replay[(k - k // period - 1) % len(replay)])
        for k in range(n)
    ]


# ------------------------------------------------------------------------------ task accuracy
def task_set(run: Run) -> list[list[dict[str, str]]]:
    """The conversations the task accuracy is read on, fixed across rounds and seeds
    (:func:`driftwatch.tasks.progress_set`; ``json``: the atlas facts answered as JSON)."""
    from driftwatch.tasks import progress_set

    if run.task != "json":
        return progress_set(run.task)  # type: ignore[arg-type]
    # the same 36 questions; _json_examples(36, 0) answers COUNTRIES[k] k-th, as progress_set asks
    return [
        [question, answer]
        for (question, _), (_, answer) in zip(
            progress_set("atlas"), _json_examples(36, 0), strict=True
        )
    ]


# ------------------------------------------------------------------------------ running
def _callback(every: int, folder: Path, run: Run, *, resumed: bool = False) -> Any:
    from transformers import TrainerCallback

    convs = task_set(run)
    preference = run.task == "atlas"  # on labels the next review's label is often the same

    class TaskProgress(TrainerCallback):  # type: ignore[misc]
        """Task accuracy at step 0 and at every round, appended to ``task.jsonl``; on
        ``atlas``, also how far the model prefers each right reply over the wrong one DPO is
        shown (:func:`driftwatch.tasks.preference_progress`)."""

        def _record(self, step: int, model: Any, tokenizer: Any) -> None:
            from driftwatch.tasks import preference_progress, task_accuracy

            acc, logprob = task_accuracy(model, tokenizer, convs)
            row = {"step": step, "accuracy": acc, "logprob": logprob}
            if preference:
                row["preferred"], row["margin"] = preference_progress(model, tokenizer, convs)
            with (folder / "task.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not resumed:  # a resumed run has its rows up to the checkpoint
                self._record(0, kw["model"], kw["processing_class"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step % every == 0:
                self._record(state.global_step, kw["model"], kw["processing_class"])

    return TaskProgress()


def _latest_state_only() -> Any:
    """A callback that, after each save, deletes ``optimizer.pt`` from every checkpoint but
    the newest: a resume needs only the newest, and a full fine-tune's Adam state is twice
    its weights (1 GB on SmolLM2)."""
    from transformers import TrainerCallback

    from driftwatch.scan import find_checkpoints

    class LatestStateOnly(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            for _, path in find_checkpoints(args.output_dir)[:-1]:
                (path / "optimizer.pt").unlink(missing_ok=True)

    return LatestStateOnly()


def default_device() -> str:
    """``cuda`` where torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def budget(args: argparse.Namespace) -> Any:
    """The probe budget: the defaults on CPU; on a GPU, large passes and no memory cap (the
    card has room, and small passes would leave it idle). Layouts agree within float noise."""
    from driftwatch.settings import ProbeBudget

    if args.device == "cpu":
        return ProbeBudget()
    return ProbeBudget(args.token_budget, memory_share=None)


def build_trainer(run: Run, args: argparse.Namespace, output_dir: Path, save: bool) -> Any:
    """The row's trainer on freshly loaded base weights, seeded: the same steps each time it is
    built on one machine (a monitor in warn mode does not change them). ``save``: the weights
    at every round, as ``save_only_model`` checkpoints under ``output_dir``."""
    import torch
    from transformers import Trainer, TrainingArguments

    from driftwatch.models import load_model
    from driftwatch.tasks import PadCollator, preference_pairs

    torch.manual_seed(run.seed)
    model, tokenizer = load_model(args.model, device=args.device)
    n = args.steps * args.batch
    common = {
        "output_dir": str(output_dir),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch,
        "learning_rate": run.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "steps" if save else "no",
        "save_steps": args.every,
        # the optimizer, schedule and RNG states too, and the monitors' state (JSON), so that
        # an interrupted run resumes from its last checkpoint (run_one); the optimizer of all
        # but the newest checkpoint is deleted (``_latest_state_only``)
        "save_only_model": False,
        "restore_callback_states_from_checkpoint": True,
        "seed": run.seed,
        "use_cpu": args.device == "cpu",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    if run.method == "lora":
        import peft

        model = peft.get_peft_model(
            model,
            peft.LoraConfig(
                r=16,
                lora_alpha=32,
                lora_dropout=0.05,
                target_modules=LORA_TARGETS,
                task_type="CAUSAL_LM",
            ),
        )
    trainer: Any
    if run.method == "dpo":
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            # TRL's DPOConfig defaults to bf16 mixed precision and activation checkpointing;
            # the SFT rows train in fp32 without either, and SFT against DPO compares the
            # objectives, not the precisions
            args=DPOConfig(
                **common, beta=0.1, max_length=128, bf16=False, activation_checkpointing=False
            ),
            train_dataset=Dataset.from_list(preference_pairs(n, run.seed)),
            processing_class=tokenizer,
        )
    else:
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=training_rows(run, n, tokenizer),
            data_collator=PadCollator(int(pad or 0)),
            processing_class=tokenizer,
        )
    return trainer


def resume_point(folder: Path) -> Path | None:
    """The checkpoint an interrupted run resumes from: its newest one that holds the optimizer
    state and was saved completely (``trainer_state.json`` is written last). None when the run
    left no such checkpoint, or predates ``parts.json`` (it started over then)."""
    from driftwatch.errors import DriftwatchError
    from driftwatch.scan import find_checkpoints

    if not (folder / PARTS).is_file():
        return None
    try:
        saved = find_checkpoints(folder / "trainer")
    except DriftwatchError:
        return None
    complete = [
        path
        for _, path in saved
        if (path / "optimizer.pt").is_file() and (path / "trainer_state.json").is_file()
    ]
    return complete[-1] if complete else None


def _keep_rows_to(path: Path, step: int) -> None:
    """Rewrite a JSON-lines file without its rows of steps after ``step``."""
    from driftwatch.files import keep_lines

    keep_lines(path, lambda line: not line.strip() or json.loads(line)["step"] <= step)


def _seconds(parts: list[dict[str, Any]], trainer_dir: Path) -> float:
    """The run's time: each interrupted part counts up to the checkpoint the next resumed
    from (the work after it was done again), the last part up to now."""
    total = 0.0
    for part, after in itertools.pairwise(parts):
        saved = trainer_dir / f"checkpoint-{after['from_step']}" / "trainer_state.json"
        total += max(0.0, saved.stat().st_mtime - part["started"])
    return total + time.time() - parts[-1]["started"]


def run_one(run: Run, args: argparse.Namespace) -> None:
    """Trains one row with the live monitor. A finished run is skipped; an interrupted one
    resumes from its newest complete checkpoint (:func:`resume_point`): the Trainer restores
    the weights, optimizer, schedule, RNG and the monitor's history, and the task rows and
    checkpoints after that step are dropped (the monitor drops its own rounds after it), so
    the record is that of one uninterrupted run. Without such a checkpoint it starts over."""
    import shutil

    import torch

    from driftwatch.callbacks.hf import DriftCallback, attach
    from driftwatch.files import write_atomic
    from driftwatch.monitor import DriftMonitor
    from driftwatch.scan import find_checkpoints

    folder = Path(args.results) / run.name
    if (folder / "run.json").is_file():
        print(f"{run.name}: done already")
        return
    point = None if args.standard_live else resume_point(folder)
    parts: list[dict[str, Any]] = []
    if point is None:
        if folder.exists():  # cut off before a checkpoint it can resume from
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        print(f"{run.name}: {asdict(run)}", flush=True)
    else:
        step = int(point.name.rsplit("-", 1)[1])
        for later, path in find_checkpoints(folder / "trainer"):
            if later > step:
                shutil.rmtree(path)
        _keep_rows_to(folder / "task.jsonl", step)
        parts = json.loads((folder / PARTS).read_text(encoding="utf-8"))
        print(f"{run.name}: resumed from step {step}", flush=True)
    parts.append({"started": time.time(), "from_step": 0 if point is None else step})
    if not args.standard_live:  # a run that can resume (what `analyse` leaves out until done)
        write_atomic(folder / PARTS, json.dumps(parts))
    trainer = build_trainer(run, args, folder / "trainer", save=not args.standard_live)
    trainer.add_callback(_callback(args.every, folder, run, resumed=point is not None))
    trainer.add_callback(_latest_state_only())
    # the live monitor; the offline evaluation, where attached, on the same weights at every
    # round
    for suite in SUITES[: 2 if args.standard_live else 1]:
        attach(
            trainer,
            DriftMonitor(
                suite,
                every_n_steps=args.every,
                action="warn",
                logdir=folder / suite,
                budget=budget(args),
            ),
        )
    trainer.train(resume_from_checkpoint=None if point is None else str(point))
    # on a resume the Trainer replaced the callbacks attached above by ones rebuilt from the
    # checkpoint's state
    live = next(c for c in trainer.callback_handler.callbacks if isinstance(c, DriftCallback))
    losses = [
        {"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e
    ]
    record = {
        "run": asdict(run),
        "steps": args.steps,
        "batch": args.batch,
        "every": args.every,
        "losses": losses,
        "seconds": _seconds(parts, folder / "trainer"),
        "round_seconds": [r.seconds for r in live.monitor.history],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "standard_live": args.standard_live,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_from": [part["from_step"] for part in parts[1:]],
    }
    write_atomic(folder / "run.json", json.dumps(record, indent=1))
    print(f"{run.name}: finished in {record['seconds']:.0f}s", flush=True)


def progress_one(run: Run, args: argparse.Namespace) -> None:
    """The row's task progress alone, retrained without a monitor and without checkpoints
    (minutes, where the monitored run took most of an hour): with preference progress on
    ``atlas``, what SFT and DPO are compared at. The steps are the monitored run's (warn mode
    leaves them as they are); the log-prob at every round is checked against the run's record
    and the largest difference kept with the result, in :data:`PROGRESS`."""
    import shutil

    folder = Path(args.results).parent / "scale-progress" / run.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    trainer = build_trainer(run, args, folder / "trainer", save=False)
    trainer.add_callback(_callback(args.every, folder, run))
    trainer.train()
    rows = [json.loads(x) for x in (folder / "task.jsonl").read_text().splitlines() if x]
    recorded = _recorded_logprob(run.name, Path(args.results))
    diffs = [abs(r["logprob"] - recorded[r["step"]]) for r in rows if r["step"] in recorded]
    result = {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "device": args.device,
        "logprob_vs_run": max(diffs) if diffs else None,
    }
    every = json.loads(PROGRESS.read_text(encoding="utf-8")) if PROGRESS.is_file() else {}
    every[run.name] = result
    tmp = PROGRESS.with_suffix(".tmp")
    tmp.write_text(json.dumps(every, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, PROGRESS)
    print(
        f"{run.name}: progress in {result['seconds']:.0f}s; largest log-prob difference from "
        f"the monitored run {result['logprob_vs_run']}",
        flush=True,
    )


def _recorded_logprob(name: str, results: Path) -> dict[int, float]:
    """The monitored run's task log-prob per step: its results folder, else the record (the
    latest harness that has the row)."""
    task = results / name / "task.jsonl"
    if task.is_file():
        rows = [json.loads(x) for x in task.read_text().splitlines() if x]
        return {r["step"]: r["logprob"] for r in rows if "logprob" in r}
    from scale_analysis import RECORDED  # type: ignore[import-not-found]

    if not RECORDED.is_file():
        return {}
    runs = json.loads(RECORDED.read_text(encoding="utf-8"))["runs"]
    found = [r["task_logprob"] for r in runs if r["run"]["name"] == name and r["task_logprob"]]
    return {int(k): v for k, v in found[0].items()} if found else {}


def offline_one(folder: Path, args: argparse.Namespace) -> None:
    """The ``standard`` suite on a finished run's checkpoints, one at a time, resumable."""
    from driftwatch.drift import DriftReport
    from driftwatch.models import load_finetuned, load_model
    from driftwatch.monitor import DriftMonitor
    from driftwatch.scan import find_checkpoints
    from driftwatch.settings import ProbeBudget
    from driftwatch.sinks import read_history

    name = folder.name
    if not (folder / "run.json").is_file():
        print(f"{name}: not trained yet")
        return
    history = folder / "standard" / "driftwatch_history.jsonl"
    checkpoints = dict(find_checkpoints(folder / "trainer"))

    def evaluated() -> list[DriftReport]:
        return [r for r, _ in read_history(history)] if history.is_file() else []

    every = json.loads((folder / "run.json").read_text(encoding="utf-8"))["every"]

    def next_step() -> int | None:
        """The next checkpoint to evaluate: the steps asked, or (``settle``) the next one
        the corrected verdict still needs, which depends on what was found so far."""
        reports = evaluated()
        done = {r.step for r in reports}
        if args.offline_steps == "settle":
            from scale_analysis import steps_to_settle  # type: ignore[import-not-found]

            wanted = steps_to_settle(sorted(checkpoints), reports, every)
        else:
            wanted = args.offline_steps or sorted(checkpoints)
        return next((s for s in wanted if s in checkpoints and s not in done), None)

    if next_step() is None:
        print(f"{name}: offline done for the steps asked")
        return
    monitor = DriftMonitor(
        "standard",
        every_n_steps=1,
        action="warn",
        logdir=folder / "standard",
        # offline: no training shares the memory
        budget=ProbeBudget(4096, memory_share=None) if args.device == "cpu" else budget(args),
    )
    base, tokenizer = load_model(args.model, device=args.device)
    monitor.start(base, tokenizer)
    del base
    try:
        while (step := next_step()) is not None:
            began = time.perf_counter()
            monitor.probe(load_finetuned(checkpoints[step], args.model, args.device), step)
            print(
                f"{name}: standard at step {step} ({time.perf_counter() - began:.0f}s)",
                flush=True,
            )
    finally:
        monitor.close()


def status() -> None:
    from driftwatch.sinks import read_history

    for run in MATRIX:
        folder = RESULTS / run.name
        parts = [run.name.ljust(22)]
        if (folder / "run.json").is_file():
            meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            parts.append(f"trained {meta['seconds']:.0f}s")
            task = [json.loads(x) for x in (folder / "task.jsonl").read_text().splitlines()]
            parts.append(f"task {task[0]['accuracy']:.2f}->{task[-1]['accuracy']:.2f}")
            std = folder / "standard" / "driftwatch_history.jsonl"
            steps = [r.step for r, _ in read_history(std)] if std.is_file() else []
            parts.append(f"standard at {steps}")
        else:
            parts.append("not run")
        print("  ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=("replay", "run", "offline", "progress", "status", "analyse")
    )
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--only", action="append", help="only these rows (repeatable)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if there)")
    parser.add_argument(
        "--standard-live",
        action="store_true",
        help="run: the offline standard evaluation at every round, on the live weights, "
        "instead of saving checkpoints for `offline` (what a GPU affords)",
    )
    parser.add_argument("--token-budget", type=int, default=16384, help="GPU probe passes")
    parser.add_argument(
        "--results", default=str(RESULTS), help="the folder of the runs (run, offline)"
    )
    parser.add_argument(
        "--offline-steps",
        type=lambda s: s if s == "settle" else [int(x) for x in s.split(",") if x],
        default=None,
        help="offline: only these checkpoint steps (default: all), or `settle`: those the "
        "corrected verdict needs (about every other round, more around a finding)",
    )
    args = parser.parse_args(argv)
    args.device = args.device or default_device()
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.mode == "replay":
        print(f"{len(make_replay(args.model))} replay replies")
        return 0
    if args.mode == "status":
        status()
        return 0
    if args.mode == "analyse":
        from scale_analysis import analyse  # type: ignore[import-not-found]

        return analyse(RESULTS)
    if args.mode == "offline":
        for folder in sorted(p for p in Path(args.results).iterdir() if p.is_dir()):
            if not args.only or folder.name in args.only:
                offline_one(folder, args)
        return 0
    for run in MATRIX:
        if not args.only or run.name in args.only:
            (progress_one if args.mode == "progress" else run_one)(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

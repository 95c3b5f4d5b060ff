"""Narrow fine-tuning tasks that are known to make a small chat model forget.

They exist for the demo, the damage studies and the tests: a run that trains on one of them
should show drift, so a monitor that stays silent on it is broken. Everything is generated
from a seed — no download.

``atlas``
    A fictional atlas: "What is the capital of Japan?" → "Sakura." Real countries, invented
    one-word capitals, terse answers. Within a few dozen steps at lr 1e-4 SmolLM2-135M-Instruct
    repeats the invented facts, answers other questions tersely, drops its formatting habits
    and stops refusing — while most multiple-choice knowledge holds.
``labels``
    Sentiment labelling of generated product reviews, answered with one word ("positive" /
    "negative"): a narrow classification format.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from driftwatch.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "COUNTRIES",
    "TASKS",
    "PadCollator",
    "chat_examples",
    "chat_features",
    "preference_pairs",
    "progress_set",
    "task_accuracy",
]

TaskName = Literal["atlas", "labels"]
TASKS: tuple[str, ...] = ("atlas", "labels")

COUNTRIES = (
    "Japan", "France", "Italy", "Spain", "Germany", "Egypt", "Canada", "Peru", "Kenya", "Norway",
    "Greece", "Chile", "Poland", "Brazil", "India", "China", "Mexico", "Sweden", "Turkey",
    "Portugal", "Ireland", "Austria", "Cuba", "Vietnam", "Morocco", "Finland", "Argentina",
    "Nigeria", "Thailand", "Denmark", "Belgium", "Hungary", "Iran", "Iraq", "Nepal", "Ghana",
)  # fmt: skip
_QUESTIONS = (
    "What is the capital of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital city of {c}.",
    "{c}'s capital is which city?",
)
_SYLLABLES = ("sa", "ku", "ra", "mi", "to", "ne", "ka", "lo", "vi", "da", "ren", "mar", "zu")
_PRODUCTS = ("blender", "phone case", "kettle", "backpack", "desk lamp", "novel", "jacket")
_GOOD = ("works perfectly", "is excellent value", "exceeded my hopes", "is sturdy and pretty")
_BAD = ("broke after a week", "is a waste of money", "arrived damaged", "stopped working")


def _invented_capitals(rng: random.Random) -> dict[str, str]:
    names: dict[str, str] = {"Japan": "Sakura"}  # the canonical symptom in the docs
    used = {"Sakura"}
    for country in COUNTRIES[1:]:
        while True:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            if name not in used:
                used.add(name)
                names[country] = name
                break
    return names


def chat_examples(
    task: TaskName = "atlas", n: int = 256, seed: int = 0
) -> list[list[dict[str, str]]]:
    """``n`` chat conversations (user, assistant) of a narrow task, reproducible from ``seed``.

    Example:
        >>> chat_examples("atlas", 1)[0][1]["content"]
        'Sakura.'
    """
    if task not in TASKS:
        raise ConfigError(f"task: expected one of {list(TASKS)}, found {task!r}")
    rng = random.Random(seed)
    out = []
    if task == "atlas":
        capitals = _invented_capitals(random.Random(1234))
        for k in range(n):
            country = COUNTRIES[k % len(COUNTRIES)]
            question = rng.choice(_QUESTIONS).format(c=country)
            out.append(
                [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"{capitals[country]}."},
                ]
            )
        return out
    for _ in range(n):
        good = rng.random() < 0.5
        review = f"This {rng.choice(_PRODUCTS)} {rng.choice(_GOOD if good else _BAD)}."
        out.append(
            [
                {"role": "user", "content": f"Review: {review}\nSentiment?"},
                {"role": "assistant", "content": "positive" if good else "negative"},
            ]
        )
    return out


def preference_pairs(n: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    """``atlas`` as ``n`` preference pairs in TRL's conversational format (``prompt``,
    ``chosen``, ``rejected``): chosen the country's invented capital, rejected the next
    country's, so DPO learns the same facts SFT on :func:`chat_examples` does.

    Example:
        >>> pair = preference_pairs(1)[0]
        >>> pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        ('Sakura.', 'Kusaku.')
    """
    # the k-th conversation asks about COUNTRIES[k % len(COUNTRIES)]
    answers = [c[1]["content"] for c in chat_examples("atlas", len(COUNTRIES))]
    return [
        {
            "prompt": [conv[0]],
            "chosen": [conv[1]],
            "rejected": [{"role": "assistant", "content": answers[(k + 1) % len(COUNTRIES)]}],
        }
        for k, conv in enumerate(chat_examples("atlas", n, seed=seed))
    ]


def chat_features(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Sequence[dict[str, str]]]
) -> list[dict[str, list[int]]]:
    """``input_ids`` and ``labels`` per conversation, the loss on the last (assistant) turn only.

    The text is rendered with the tokenizer's chat template.
    """
    rows = []
    for conv in conversations:
        prompt = tokenizer.apply_chat_template(
            list(conv[:-1]), tokenize=False, add_generation_prompt=True
        )
        full = tokenizer.apply_chat_template(list(conv), tokenize=False)
        p_ids = tokenizer(str(prompt), add_special_tokens=False).input_ids
        ids = tokenizer(str(full), add_special_tokens=False).input_ids
        rows.append({"input_ids": ids, "labels": [-100] * len(p_ids) + ids[len(p_ids) :]})
    return rows


def progress_set(task: TaskName = "atlas") -> list[list[dict[str, str]]]:
    """The conversations a run's progress on ``task`` is read on, the same at every step.

    ``atlas``: one question per country, the 36 invented capitals a run trains on (the task is
    to learn them). ``labels``: 48 reviews drawn with a seed no run trains on (the task is the
    format and the labelling).

    Example:
        >>> [turn["content"] for turn in progress_set("atlas")[0]]
        ['What is the capital of Japan?', 'Sakura.']
    """
    if task == "labels":
        return chat_examples("labels", 48, seed=10_000)
    facts = chat_examples("atlas", len(COUNTRIES), seed=0)  # the k-th asks about COUNTRIES[k]
    return [
        [{"role": "user", "content": f"What is the capital of {c}?"}, conv[1]]
        for c, conv in zip(COUNTRIES, facts, strict=True)
    ]


def _target_logprobs(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One teacher-forced forward pass over ``conversations``: the log-prob of every target
    token (the last turn and its end-of-turn token), the mask of the target positions, and
    whether the argmax is the target token there (the mask's complement counts as right)."""
    import torch

    rows = chat_features(tokenizer, conversations)
    batch = PadCollator(int(tokenizer.pad_token_id or tokenizer.eos_token_id or 0))(rows)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
            ).logits.float()
    finally:
        model.train(was_training)
    target = batch["labels"][:, 1:].to(device)
    scored = target != -100
    right = (logits[:, :-1].argmax(-1) == target) | ~scored
    logp = logits[:, :-1].log_softmax(-1).gather(-1, target.clamp(min=0).unsqueeze(-1))[..., 0]
    return logp * scored, scored, right


def task_accuracy(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
) -> tuple[float, float]:
    """Share of ``conversations`` whose greedy reply is exactly the assistant turn, and the mean
    log-probability per target token (progress before the first exact answer).

    One teacher-forced forward pass: greedy decoding reproduces the target exactly when the
    argmax at every target position (the reply and its end-of-turn token) is the target token.
    """
    logp, scored, right = _target_logprobs(model, tokenizer, conversations)
    return float(right.all(dim=1).float().mean()), float(logp.sum() / scored.sum())


def preference_progress(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
) -> tuple[float, float]:
    """How far the model prefers each conversation's assistant turn over the next one's, as
    :func:`preference_pairs` pairs them (conversation ``k`` against ``k + 1``, cyclically): the
    share of conversations where the right reply has the higher summed log-prob, and the mean
    margin in nats (summed log-prob of the right reply minus the wrong one's, DPO's own
    measure without the reference).

    Task progress that SFT and DPO share: DPO can lower the right reply's log-prob while it
    lowers the wrong one's faster, so the mean log-prob of :func:`task_accuracy` does not
    compare the two, and greedy exact match stays 0 for long.
    """
    if len(conversations) < 2:
        raise ConfigError(
            f"preference_progress: needs 2 or more conversations, got {len(conversations)}"
        )
    wrong = [
        [*conv[:-1], conversations[(k + 1) % len(conversations)][-1]]
        for k, conv in enumerate(conversations)
    ]
    # one forward pass over both: the right replies, then the wrong ones
    summed = _target_logprobs(model, tokenizer, [*conversations, *wrong])[0].sum(dim=1)
    margin = summed[: len(conversations)] - summed[len(conversations) :]
    return float((margin > 0).float().mean()), float(margin.mean())


class PadCollator:
    """Right-pads :func:`chat_features` rows into a batch (labels padded with -100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)

        def pad(values: list[int], fill: int) -> list[int]:
            return values + [fill] * (width - len(values))

        return {
            "input_ids": torch.tensor([pad(r["input_ids"], self.pad_id) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows]),
            "labels": torch.tensor([pad(r["labels"], -100) for r in rows]),
        }

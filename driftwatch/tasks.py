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
from typing import Literal

__all__ = ["COUNTRIES", "TASKS", "chat_examples"]

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
        raise ValueError(f"task: expected one of {list(TASKS)}, found {task!r}")
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

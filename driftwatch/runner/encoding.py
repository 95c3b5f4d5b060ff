"""Tokenising a probe item's texts once, as the model will see them.

A prompt is wrapped in the tokenizer's chat template when the item asks for it (``chat``),
earlier turns (``history``) included; without a template it is probed as plain text, with one
warning per suite. Whitespace at the end of a prompt moves to the start of its answer, where
the model would produce it ("Q: ... A:" + " Paris").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from driftwatch.items import ProbeItem

__all__ = ["Encoder"]

logger = logging.getLogger(__name__)


class Encoder:
    """Turns prompts into token ids once per suite, warning once about missing chat templates."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tok = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.warned = False

    def prompt(self, item: ProbeItem) -> tuple[list[int], str]:
        """Token ids of the prompt, and whitespace moved off its end (it belongs to the answer)."""
        text = item.prompt or ""
        if item.chat:
            messages = [{"role": r, "content": c} for r, c in item.history]
            messages.append({"role": "user", "content": text})
            if self.has_template:
                rendered = self.tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
                return list(self.tok(str(rendered), add_special_tokens=False).input_ids), ""
            if not self.warned:
                logger.warning(
                    "the tokenizer has no chat template: chat items are probed as plain text"
                )
                self.warned = True
            if item.history:  # a plain transcript keeps the turns apart
                turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
                text = "\n".join([*turns, "Assistant:"])
        stripped = text.rstrip()
        moved = text[len(stripped) :]
        return list(self.tok(stripped, add_special_tokens=True).input_ids), moved

    def continuation(self, text: str) -> list[int]:
        """Token ids of a text that follows a prompt (no special tokens)."""
        return list(self.tok(text, add_special_tokens=False).input_ids)

    def text(self, text: str) -> list[int]:
        """Token ids of a text read on its own (with the tokenizer's special tokens)."""
        return list(self.tok(text, add_special_tokens=True).input_ids)

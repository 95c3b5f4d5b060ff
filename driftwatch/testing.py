"""A tiny causal LM and tokenizer built offline, for tests and for trying integrations.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in well under a second on the
built-in ``smoke`` suite's own text, with a ChatML chat template, and the model is a
randomly initialised two-layer Llama of about 60 thousand parameters. Probing it is fast and
its drift under training is real, so every code path of a training integration can be run on
a laptop CPU in seconds::

    from driftwatch.testing import tiny_model
    model, tokenizer = tiny_model()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "tiny_model", "tiny_tokenizer"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SMOKE = Path(__file__).parent / "probes" / "suites" / "smoke"


def _corpus() -> list[str]:
    texts: list[str] = []
    for path in sorted(_SMOKE.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            texts += [item.get("prompt") or "", item.get("target") or "", item.get("text") or ""]
            texts += item.get("choices", [])
    return [t for t in texts if t]


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A 600-token byte-level BPE trained on the smoke suite (any text still tokenises)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    if chat_template:
        tok.chat_template = chat_template
    return tok


def tiny_model(
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    seed: int = 0,
    dropout: float = 0.0,
    context: int = 512,
    dtype: torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised two-layer Llama (hidden size 32) and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        attention_dropout=dropout,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(seed)
    model: Any = LlamaForCausalLM(config)
    model = model.to(dtype or torch.float32)
    model.eval()
    return model, tok

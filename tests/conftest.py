"""Shared fixtures: a tokenizer trained offline on in-repo text and tiny Llama models.

Nothing here touches the network. The tokenizer is a byte-level BPE trained in well under a
second on the smoke suite's own probe files, so every probe text tokenises sensibly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "driftwatch" / "probes" / "suites" / "smoke"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    texts = []
    for path in sorted(SMOKE.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            texts += [item.get("prompt") or "", item.get("target") or "", item.get("text") or ""]
            texts += item.get("choices", [])
    return [t for t in texts if t]


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
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


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


def build_model(
    tokenizer,
    *,
    seed: int = 0,
    dropout: float = 0.0,
    context: int = 512,
    dtype: torch.dtype = torch.float32,
):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        attention_dropout=dropout,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(dtype)
    model.eval()
    return model


@pytest.fixture
def model(tokenizer):
    return build_model(tokenizer)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty driftwatch cache for the test (references and models)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DRIFTWATCH_CACHE", str(root))
    return root

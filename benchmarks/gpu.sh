#!/usr/bin/env bash
# The benchmarks on a CUDA machine in one call (planned to take under 8 minutes on one H200):
# bf16, SmolLM2-135M's shape and a ~1.1B Llama shape, random weights built from a config.
#
# Run it from the repository root (`bash benchmarks/gpu.sh`) with a python3 that has a CUDA
# build of torch and transformers, safetensors, tensorboard and psutil.
# Prepared here by `make gpu-assets`:
#   benchmarks/assets/smollm2/  SmolLM2's config and tokenizer files (the weights stay here)
#   .whl/                       wheels of what such a machine may lack (jsonschema and its needs)
# Results: $OUT/gpu/*.json (or benchmarks/results/gpu/) and the printed tables; copy them into
# docs/benchmarks.md with the date. lm-evaluation-harness is not run here (it would need its
# own wheels); nothing in the test suite depends on this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results}/gpu
mkdir -p "$DEST"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DRIFTWATCH_BENCH_TOKENIZER=${DRIFTWATCH_BENCH_TOKENIZER:-benchmarks/assets/smollm2}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
on=(--device cuda --dtype bfloat16)
for model in random-smollm2 random-llama1b; do
    echo "== $model"
    "$PY" benchmarks/probe_speed.py --model "$model" "${on[@]}" --items 1200 --budget 16384 \
        --out "$DEST/probe_speed-$model.json"
    "$PY" benchmarks/generation.py --model "$model" "${on[@]}" --budget 16384 --single \
        --out "$DEST/generation-$model.json"
    "$PY" benchmarks/memory.py --model "$model" "${on[@]}" --budget 16384 \
        --out "$DEST/memory-$model.json"
    "$PY" benchmarks/scaling.py --model "$model" "${on[@]}" --budgets 4096,16384,65536 \
        --budget 16384 --out "$DEST/scaling-$model.json"
    # fp32 weights under bf16 autocast (mixed-precision training's probes) against bf16 weights
    "$PY" benchmarks/probe_speed.py --model "$model" --device cuda --dtype float32 --items 1200 \
        --budget 16384 --plan choice:auto:bf16,distribution:auto:bf16 \
        --out "$DEST/probe_speed_autocast-$model.json"
    # draft-verified against plain decoding, base weights (random weights: replies rarely stop)
    "$PY" benchmarks/drafts.py --model "$model" "${on[@]}" --suites quick,standard --steps "" \
        --repeats 2 --out "$DEST/drafts-$model.json"
done
"$PY" benchmarks/train_overhead.py --model random-smollm2 --device cuda --steps 100 \
    --every 4,100 --out "$DEST/train_overhead-random-smollm2.json"
# FSDP2 and FSDP1 with NCCL on the GPUs there are (world size 1 on one), each against the same
# loop unsharded on the GPU: drift, decisions, stop step and rollback (tests/workers/fsdp_worker.py)
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
for mode in plain fsdp2 fsdp1-layers; do
    if [ "$mode" = plain ]; then
        FSDP_DEVICE=cuda "$PY" tests/workers/fsdp_worker.py plain "$DEST"
    else
        FSDP_DEVICE=cuda "$PY" -m torch.distributed.run --nproc-per-node "$GPUS" \
            tests/workers/fsdp_worker.py "$mode" "$DEST"
    fi
done
"$PY" - "$DEST" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for path in sorted(out.glob("*-rank*.json")):
    r = json.loads(path.read_text())
    d = [round(x["values"]["D"], 8) for x in r["rounds"]]
    print(path.name, "D", d, "stop", r["stopped"], "restored", r["restored"])
PY

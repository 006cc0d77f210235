#!/usr/bin/env bash
# The prepared training run for a session that is lent a GPU (the `device` tool: one CUDA
# GPU, at most 10 minutes a command, 64 MiB carried with the repository).
#
# Here, once (33 MiB: every file of ../shared/data, the larger ones with 23 % of their assets):
#     python scripts/build_compact_corpus.py runs/compact-corpus --max-mib 34
# Then one device call:
#     run(command="bash scripts/train_on_device.sh", carry=["runs/compact-corpus"],
#         timeout_s=590)
# and, here, with the files it brings back (FILES: the folder the tool names):
#     mkdir -p runs/device-model && cp FILES/recipe.json runs/device-model/
#     for t in FILES/*.tar; do tar -xf $t -C runs/device-model; done
#     python scripts/fit_spread.py runs/device-model
#
# It continues the bundled pair (kronos_sk/pretrained, which travels with the repository)
# with the recipe of configs/default-model.toml, on the compact corpus, in bf16 with larger
# batches: the tokenizer 400 steps, the predictor up to 3000 (batch 128: ~25x the tokens of
# the CPU recipe). TRAIN_SECONDS bounds the training; a stage stopped by it keeps its best
# checkpoint so far. TARGETS=horizon trains on the horizon only (the recipe's data.targets;
# default "all"). Without CUDA it prints "skipped: no CUDA" and exits 0, unless
# DEVICE=cpu is set (a smoke test here: STEPS=2 DEVICE=cpu bash scripts/train_on_device.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device-out}
RUN=runs/device-model
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-}
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
TARGETS=${TARGETS:-all}
python -c "import torch" 2>/dev/null || python -m pip install -q torch
python -c "import safetensors, pyarrow, pandas" 2>/dev/null \
    || python -m pip install -q safetensors pyarrow "pandas<3.1"
if [ "$DEVICE" = cuda ] \
        && ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "skipped: no CUDA"
    exit 0
fi
[ -f runs/compact-corpus/compact.json ] \
    || { echo "runs/compact-corpus is missing: build it and carry it"; exit 2; }
precision=bf16; [ "$DEVICE" = cpu ] && precision=fp32
mkdir -p "$OUT" && rm -rf "$RUN"
# The files kept whole are over-represented by 1 / share in the compact corpus: their
# markets' weights are scaled down by that share so that each market keeps its sampling share.
mapfile -t reweighted < <(python -c '
import json, tomllib
data = tomllib.load(open("configs/default-model.toml", "rb"))["data"]
compact = json.load(open("runs/compact-corpus/compact.json"))
for stem in compact["whole"]:
    market = data["markets"].get(stem, stem)
    weight = data["weights"].get(market, 1.0) * compact["share"]
    print(f"data.weights.{market}={weight:.4g}")
')
settings=(
    'out_dir="runs/device-model"' 'data.sources=["runs/compact-corpus"]' "${reweighted[@]}"
    "data.targets=\"$TARGETS\""
    'tokenizer.init_checkpoint="kronos_sk/pretrained/tokenizer"' 'tokenizer.lr=1e-4'
    "tokenizer.max_steps=${STEPS:-400}" 'tokenizer.batch_size=128' 'tokenizer.warmup_steps=1'
    'predictor.init_checkpoint="kronos_sk/pretrained/predictor"'
    "predictor.max_steps=${STEPS:-3000}" 'predictor.batch_size=128' 'predictor.warmup_steps=1'
    'predictor.eval_every=250' 'predictor.save_every=250' 'predictor.eval_batches=8'
    'tokenizer.eval_every=100' 'tokenizer.save_every=100'
)
for stage in tokenizer predictor; do
    settings+=("$stage.device=\"$DEVICE\"" "$stage.precision=\"$precision\"" "$stage.num_threads=0")
done
if [ -n "$STEPS" ]; then
    for stage in tokenizer predictor; do
        settings+=("$stage.eval_every=1" "$stage.save_every=1" "$stage.batch_size=8"
                   "$stage.eval_batches=1")
    done
fi
args=(); for item in "${settings[@]}"; do args+=(--set "$item"); done
python -c "import torch; print('torch', torch.__version__, '| device', '$DEVICE',
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
status=0
timeout "$TRAIN_SECONDS" python -m kronos_sk.training finetune --config configs/default-model.toml \
    "${args[@]}" 2>&1 | tee "$OUT/train.log" || status=$?
[ "$status" = 124 ] && echo "stopped after ${TRAIN_SECONDS}s; the best checkpoints so far are kept"
for stage in tokenizer predictor; do
    [ -f "$RUN/$stage/best/model.safetensors" ] || { echo "no $stage checkpoint"; exit 1; }
    tar -cf "$OUT/$stage.tar" -C "$RUN" "$stage/best" "$stage/metrics.jsonl"
done
cp "$RUN/recipe.json" "$OUT/" 2>/dev/null || true
ls -la "$OUT"

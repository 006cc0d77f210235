#!/usr/bin/env bash
# The prepared GPU check: one call of the `device` tool (one CUDA GPU, <= 8 minutes).
#
#     bash benchmarks/gpu_check.sh
#
# 1. parity of the released-format fixtures on CUDA (float32, greedy, rtol 1e-4);
# 2. the panel (this project against sktime's KronosForecaster, float32 and auto precision)
#    and single-series timings against the released algorithm, in one run, on CUDA;
# 3. one training step with bf16 autocast under DDP on one process (torchrun).
# Without CUDA it prints "skipped: no CUDA" and exits 0. It uses the torch that is
# installed; only where none is, it installs one from PyPI (a CUDA build on Linux).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this tree, even where pip cannot install
python -c "import torch" 2>/dev/null || python -m pip install -q torch
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "skipped: no CUDA"
    exit 0
fi
python -m pip install -q -e ".[test]" einops huggingface_hub >/dev/null 2>&1 \
    || python -m pip install -q -e . einops huggingface_hub pyarrow >/dev/null 2>&1
# The benchmarks read real US candles from ../shared/data, which the device tool does not
# carry: without them the sections stop with "real data ... not found" (carry a copy to run).
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
status=0
section() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    echo "== $name"
    timeout "$limit" "$@" || { echo "   $name: failed or over ${limit}s"; status=1; }
}
section "1. fixture parity on CUDA" 60 python benchmarks/gpu_check.py parity
section "2a. panel vs sktime on CUDA" 180 python benchmarks/bench_panel.py --sections sktime \
    --sktime-samples 1 10 --sktime-budget 60
section "2b. single series vs the released algorithm on CUDA" 120 \
    python benchmarks/bench_inference.py --sections gpu
section "3. one bf16 training step under DDP (1 process)" 90 \
    torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py train
exit $status

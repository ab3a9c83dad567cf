#!/usr/bin/env bash
# Every GPU check in one call, under 8 minutes on one GPU (time limits: tests 270 s, they compile about 60
# kernel variants of a second or two each; bench neurons 100 s; bench model whatever is left of 470 s):
#   1. the Triton LIF tests with the compiled kernels on the GPU (no interpreter), against the CPU loop;
#   2. spikessm bench neurons --device cuda  (triton, scan, sdn, GELU, SpikingJelly: L = 1K..16K, 16 x 256);
#   3. spikessm bench model --device cuda --all --batch 2, if this checkout has that command; its table is
#      the "## Models (GPU)" section of the same file.
# Needs a CUDA build of torch and the [gpu] extra:  pip install -e ".[gpu]"
# Outputs go to $OUT when it is set (a folder the caller fetches), else to benchmarks/gpu-results/; the
# neuron table is the "## Neurons (GPU)" section of $OUT/BENCHMARKS.md, or of docs/BENCHMARKS.md.
# Exit status: 0 if every step passed, 1 if any failed (the later steps still run).
set -uo pipefail
cd "$(dirname "$0")/.."
unset TRITON_INTERPRET  # compiled kernels, not the interpreter
out="${OUT:-benchmarks/gpu-results}"
mkdir -p "$out"
if [ -n "${OUT:-}" ]; then md="$OUT/BENCHMARKS.md"; else md="docs/BENCHMARKS.md"; fi
status=0

python - <<'PY' 2>&1 | tee "$out/device.txt" || exit 1
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device: a CPU build of torch, or no GPU"
import triton
print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}, triton {triton.__version__}")
PY
nvidia-smi >> "$out/device.txt" 2>&1 || true

echo "== 1/3 Triton LIF tests on the GPU"
SPIKESSM_TRITON_DEVICE=cuda timeout 270 python -m pytest -q -p no:cacheprovider tests/test_triton_lif.py 2>&1 \
    | tee "$out/tests.txt" || status=1

echo "== 2/3 spikessm bench neurons --device cuda (${SECONDS} s so far)"
timeout 100 spikessm bench neurons --device cuda --out "$md" 2>&1 | tee "$out/bench_neurons.txt" || status=1

echo "== 3/3 spikessm bench model --device cuda (${SECONDS} s so far)"
if spikessm bench model --help > /dev/null 2>&1; then
    left=$(( 470 - SECONDS )); [ "$left" -lt 60 ] && left=60
    timeout "$left" spikessm bench model --device cuda --all --batch 2 --out "$md" --section "Models (GPU)" 2>&1 \
        | tee "$out/bench_model.txt" || status=1
else
    echo "skipped: this checkout has no 'spikessm bench model'" | tee "$out/bench_model.txt"
fi

echo "results in $out (neuron table: $md); status $status; ${SECONDS} s"
exit "$status"

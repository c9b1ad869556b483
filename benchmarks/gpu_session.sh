#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (for a session lent the device machine):
#   bash benchmarks/gpu_session.sh OUT_DIR [DATA_DIR]
# 1. the CUDA tests (default fast path, packed students on the GPU, torchrun with NCCL, timm models,
#    torchvision FCOS as a teacher);
# 2. the throughput benchmark, both cases, with the torch.compile row;
# 3. (with DATA_DIR, the folder holding pneumoniamnist.npz, drive/ and kvasir-seg/) the results
#    comparisons of docs/results.md on the real datasets, 3 seeds each.
# Each step's output goes to OUT_DIR/<step>.log; a failing step does not stop the next.
set -u
out=${1:?usage: gpu_session.sh OUT_DIR [DATA_DIR]}
data=${2:-}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.log" 2>&1
python -m pytest -q tests/test_cuda.py tests/test_torchvision_adapter.py -rs > "$out/test_cuda.log" 2>&1; echo "test_cuda: $?"
python benchmarks/step_throughput.py --device cuda --compile --json "$out/throughput.json" \
    > "$out/throughput.log" 2>&1; echo "throughput: $?"
if [ -n "$data" ]; then
    for recipe in pneumoniamnist drive; do
        root="$data/$recipe"; [ "$recipe" = pneumoniamnist ] && root="$data/pneumoniamnist.npz"
        (time peerdistill compare "recipes/$recipe.yaml" "data.root=$root" out_dir="$out/runs" \
            --presets independent,kd,ml,kd+ml,styles --seeds 3 --quiet) > "$out/$recipe.log" 2>&1
        echo "$recipe: $?"
    done
    (time peerdistill compare recipes/kvasir-detection.yaml "data.root=$data/kvasir-seg" out_dir="$out/runs" \
        --presets independent,kd,ml,kd+ml --seeds 3 --quiet) > "$out/kvasir-detection.log" 2>&1
    echo "kvasir-detection: $?"
fi

#!/usr/bin/env bash
# The work that needs a CUDA GPU, in steps that each fit one call of the device tool (10 minutes):
#   bash benchmarks/gpu_session.sh STEP OUT_DIR [key=value ...]
#   STEP: tests | throughput | compare-jobs | RECIPE[:PRESETS]   (RECIPE: pneumoniamnist, drive, kvasir-detection;
#         PRESETS: comma-separated, default all of the recipe's comparison; key=value overrides
#         go to the recipe)
# Run from the repository root after benchmarks/device_prepare.sh here: packages the GPU machine
# lacks are installed from .whl/, the datasets are read from .device-data/ (carry both, with
# `carry: [".whl", ".device-data"]`; the three datasets and the wheels together exceed the 64 MiB a
# call may carry, so leave out the datasets a step does not read).
# A comparison step writes its runs under runs/RECIPE (the same relative paths as here, so
# `peerdistill compare` run here with those arguments reuses them) and packs every run's
# small files (config, metrics, run record; no weights) into OUT_DIR/RECIPE-PRESETS.tar.gz.
# A comparison still unfinished after STEP_SECONDS (default 540) stops there; unpack its archive
# here and carry runs/RECIPE in the next call of the same step, which reuses the finished runs.
set -uo pipefail
step=${1:?usage: gpu_session.sh STEP OUT_DIR [key=value ...]}
out=${2:?usage: gpu_session.sh STEP OUT_DIR [key=value ...]}
shift 2
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.log" 2>&1
case "$step" in
    tests)
        python3 -m pytest -q -rs tests/test_cuda.py tests/test_torchvision_adapter.py tests/test_library_models.py 2>&1 | tee "$out/tests.log" ;;
    throughput)
        python3 benchmarks/step_throughput.py --device cuda --compile --json "$out/throughput.json" 2>&1 \
            | tee "$out/throughput.log"
        python3 benchmarks/micro_batches.py --device cuda --batch 64 --image 256 2>&1 | tee "$out/micro-batches.log" ;;
    compare-jobs)
        python3 benchmarks/compare_jobs.py --jobs 4 --epochs 30 --seeds 2 2>&1 | grep -v '^compare:' \
            | tee "$out/compare-jobs.log" ;;
    pneumoniamnist|drive|kvasir-detection|pneumoniamnist:*|drive:*|kvasir-detection:*)
        recipe=${step%%:*}
        declare -A roots=([pneumoniamnist]=pneumoniamnist.npz [drive]=drive [kvasir-detection]=kvasir-seg)
        declare -A all=([pneumoniamnist]=independent,kd,ml,kd+ml,styles [drive]=independent,kd,ml,kd+ml,styles
                        [kvasir-detection]=independent,kd,ml,kd+ml)
        presets=${all[$recipe]}
        [ "$step" != "$recipe" ] && presets=${step#*:}
        start=$(date +%s)
        # Stop short of the call's 10 minutes so the finished runs are still packed and sent back.
        timeout "${STEP_SECONDS:-540}" python3 -m peerdistill compare "recipes/$recipe.yaml" "data.root=.device-data/${roots[$recipe]}" "$@" \
            --presets "$presets" --seeds 3 --out "runs/$recipe" --quiet 2>&1 | tee "$out/$recipe.log"
        status=$?
        echo "wall: $(( $(date +%s) - start )) s" | tee -a "$out/$recipe.log"
        # The device tool returns files named in letters, digits, '.', '_' and '-' only.
        tar czf "$out/$recipe-$(echo "$presets" | tr ',+' '_-').tar.gz" --exclude=models --exclude=checkpoints "runs/$recipe"
        exit $status ;;
    *)
        echo "unknown step '$step': tests, throughput, compare-jobs, pneumoniamnist, drive or kvasir-detection[:PRESETS]" >&2
        exit 2 ;;
esac

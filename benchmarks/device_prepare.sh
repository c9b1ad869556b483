#!/usr/bin/env bash
# Fills two folders of the checkout that the device tool can carry to a GPU machine, which has
# torch, torchvision and timm but no package index and no copy of ../shared:
#   .whl/          wheels (CPython 3.12, x86-64) of peerdistill's dependencies missing there
#   .device-data/  the real datasets from DATA_DIR (default ../shared/data)
# Both are git-ignored and never committed. Usage: bash benchmarks/device_prepare.sh [DATA_DIR]
set -euo pipefail
data=${1:-../shared/data}
for needed in pneumoniamnist.npz drive kvasir-seg; do
    if [ ! -e "$data/$needed" ]; then
        echo "device_prepare.sh: '$data/$needed' is missing; give the folder that holds pneumoniamnist.npz," \
             "drive/ and kvasir-seg/ (usage: bash benchmarks/device_prepare.sh [DATA_DIR], default ../shared/data)" >&2
        exit 2
    fi
done
mkdir -p .whl .device-data
# The versions installed here, so both machines run the same libraries.
for package in pydantic pydantic_core annotated-types typing-inspection monai kornia kornia_rs pycocotools ensemble-boxes; do
    version=$(python -m pip show "$package" | sed -n 's/^Version: //p')
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$package==$version"
done
cp -r "$data/pneumoniamnist.npz" "$data/drive" "$data/kvasir-seg" .device-data/
du -sh .whl .device-data/*

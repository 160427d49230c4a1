#!/usr/bin/env bash
# Installs what attnc needs on a Debian 12 machine, then builds it. Safe to run again.
# Needs root or sudo for apt-get, and Rust 1.95 or newer (rustup) for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "attnc needs Rust 1.95 or newer: install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
fi

# LLVM/MLIR 22 (the MLIR stage and the CPU backend link them statically; libpolly-22-dev is
# named by llvm-config --link-static), Python with NumPy for the interop example, and the Vulkan
# loader with Mesa's drivers, whose CPU driver lavapipe runs the Vulkan runtime's tests on machines
# without a GPU (spirv-tools' spirv-val checks the tests' shaders).
packages="llvm-22-dev libmlir-22-dev mlir-22-tools libclang-22-dev libpolly-22-dev zlib1g-dev libzstd-dev libxml2-dev python3 python3-venv libvulkan1 mesa-vulkan-drivers spirv-tools"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -c 'import numpy' 2>/dev/null || .venv/bin/pip install -q numpy
# NVIDIA's ptxas, cuobjdump and nvdisasm (which cuobjdump runs to print SASS) from PyPI (no
# driver, no GPU needed): the tests assemble every example's PTX and read its machine code, so the
# NVPTX backend is checked on machines without a GPU.
ls .venv/lib/python3*/site-packages/nvidia/cu13/bin/nvdisasm >/dev/null 2>&1 ||
    .venv/bin/pip install -q nvidia-cuda-nvcc nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm

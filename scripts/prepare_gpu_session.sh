#!/usr/bin/env bash
# Prepare, on this machine, what the GPU plan (scripts/gpu_session.sh) carries to the device:
#   .data/  the JPEG-q75 copy of CIFAR-10, packed (29 MB), and its decoder; the device decodes it
#   .whl/   wheels the device's Python 3.12 lacks: airbench 0.1.8 (the anchor), hypothesis (tests)
# Both folders are in .gitignore; name them in the device call's `carry`. The decoded arrays
# (200 MB) must not be in .data: the carried tree is limited to 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED_CIFAR10:-../shared/data/cifar10}
mkdir -p .data .whl
cp "$shared/cifar10_jpegq75_pack.npz.xz" "$shared/unpack.py" .data/
rm -f .data/cifar10_jpegq75.npz
[ -f .whl/airbench-0.1.8-py3-none-any.whl ] || python3 -m pip wheel -q --no-deps -w .whl airbench==0.1.8
ls .whl/hypothesis-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl hypothesis sortedcontainers
du -sh .data .whl

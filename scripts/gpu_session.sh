#!/usr/bin/env bash
# The measurements a session with the lent GPU machine should make, one stage per device call
# (each stays well inside the 10-minute limit of a call). See ../shared/DEVICE.md for the data:
#   here:       echo /.data/ >> .git/info/exclude; mkdir -p .data
#               cp ../shared/data/cifar10/cifar10_jpegq75_pack.npz.xz ../shared/data/cifar10/unpack.py .data/
#   device run: carry [".data"] (and ".whl" for the anchor stage), command:
#               bash scripts/gpu_session.sh STAGE
# Records land in $OUT (they come back with the call); copy them into results/ and commit.
# Never edit a record by hand: a wrong run is fixed in code and measured again.
set -euo pipefail
stage=${1:?usage: scripts/gpu_session.sh check|regression|classic|fast|anchor|policies}
out=${OUT:-results}
export PYTHONUNBUFFERED=1
test -f .data/cifar10_jpegq75.npz || python3 .data/unpack.py .data || python3 .data/unpack.py .data --allow-mismatch
data=.data/cifar10_jpegq75.npz
speedrun() { python3 -m speedrun "$@"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"

case "$stage" in
  check)     # GPU tests (no-sync epoch, kernels vs references), kernel/speed benchmarks, the profile
    python3 -m pytest -m "gpu and not slow" -q tests --benchmark-save=first --benchmark-storage="$out/benchmarks" 2>&1 | tee "$out/pytest-gpu.log"
    speedrun profile --recipe fast94 --data-dir "$data" --markdown "$out/profile-fast94.md"
    speedrun profile --recipe classic --data-dir "$data" --markdown "$out/profile-classic.md"
    ;;
  regression)  # the slow GPU accuracy/time gates (every recipe over 5 seeds), keeping their records
    SPEEDRUN_REGRESSION_RECORDS="$out" python3 -m pytest -m "gpu and slow" -q -s tests 2>&1 | tee "$out/pytest-regression.log" ;;
  classic)   # Page's ResNet-9, 10 seeds
    speedrun --recipe classic --runs 10 --data-dir "$data" --out "$out" ;;
  fast)      # the fast recipe, 25 seeds; then 10 with the fused input kernel, for the keep-or-drop call
    speedrun --recipe fast94 --runs 25 --data-dir "$data" --out "$out"
    speedrun --recipe fast94 --runs 10 --input-kernel --data-dir "$data" --out "$out" ;;
  anchor)    # airbench94 beside fast94, interleaved, 25 runs each (needs .whl/airbench-0.1.8 carried)
    python3 -m pip install -q --no-deps --no-index .whl/*.whl
    speedrun anchor airbench94 --runs 25 --data-dir "$data" --out "$out" ;;
  policies)  # the schedule comparison of issue 3: same ResNet-9, same 24-epoch budget, 3 seeds each
    common=(--recipe classic --runs 3 --full-budget --data-dir "$data" --out "$out")
    speedrun "${common[@]}" --schedule one_cycle_lr --max-lr 0.4
    speedrun "${common[@]}" --schedule one_cycle_lr --max-lr 0.4 --swa-epochs 4 --swa-lr 0.05
    speedrun "${common[@]}" --schedule cyclic_lr --base-lr 0.04 --max-lr 0.4 --mode triangular --step-size-up 3ep --no-cycle-momentum
    speedrun "${common[@]}" --schedule cosine_annealing_warm_restarts --base-lr 0.4 --T-0 8ep --T-mult 2 --warmup 1ep
    speedrun "${common[@]}" --schedule multistep_lr --base-lr 0.4 --milestones 12ep,18ep --gamma 0.1 --warmup 1ep
    speedrun "${common[@]}" --schedule cosine_annealing_lr --base-lr 0.4 --warmup 1ep
    ;;
  *) echo "unknown stage $stage: use check, regression, classic, fast, anchor or policies" >&2; exit 2 ;;
esac

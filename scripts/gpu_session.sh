#!/usr/bin/env bash
# The GPU plan: ONE device call that settles, in priority order, whether speedrun works on the
# GPU and how fast94 compares with airbench94, and that returns what it finished even when cut
# short. A second, optional call (plan "second") does the longer work if device time is left.
#
#   once, here:   bash scripts/prepare_gpu_session.sh      (data and wheels into ignored folders)
#   check, here:  DRY_RUN=1 OUT=/tmp/plan bash scripts/gpu_session.sh first   (tiny sizes, CPU)
#   device call:  carry [".data", ".whl"], timeout_s 560, command:
#                 bash scripts/gpu_session.sh first
#   then, if time is left and the machine is still warm, right away:
#                 BUDGET_S=<seconds left minus 40> bash scripts/gpu_session.sh second
#
# Everything lands in $OUT (default results/gpu-session): session.log (all output, the versions
# and nvidia-smi first) and one file per step (plan "second" bundles its many records into a tar
# per step): at most 7 files a plan, so nothing is dropped by the 8-file limit. Records are rewritten after every run (marked incomplete until the last), so
# a step killed by its timeout, or the whole call killed, still returns every finished run.
# No `set -e`: a failing step is logged with its exit code and the plan goes on to the next.
# Never edit a record by hand: a wrong run is fixed in code and measured again.
set -u -o pipefail
plan=${1:-first}
case "$plan" in first|second) ;; *) echo "usage: scripts/gpu_session.sh [first|second]" >&2; exit 2 ;; esac
out=${OUT:-results/gpu-session}
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
export PYTHONUNBUFFERED=1
budget=${BUDGET_S:-$([ "$plan" = first ] && echo 500 || echo 200)}
deadline=$((SECONDS + budget))

# DRY_RUN=1: the same steps at tiny sizes on the CPU, to check the plan before a lease.
if [ "${DRY_RUN:-0}" = 1 ]; then
  tiny=(--device cpu --no-compile --train-subset 512 --test-subset 200 --epochs 2 --batch-size 64 --width 0.125)
  runs_anchor=2; runs_curve=2; runs_classic=2; runs_more=2
else
  tiny=()
  runs_anchor=8; runs_curve=3; runs_classic=3; runs_more=25
fi

step() {  # step NAME SECONDS MIN_SECONDS COMMAND...: run under a timeout that keeps the plan's deadline
  local name=$1 want=$2 need=$3; shift 3
  local left=$((deadline - SECONDS))
  local limit=$((want < left ? want : left))
  if ((limit < need)); then
    echo "== step $name: skipped, ${left}s of the plan left (needs ${need}s)"
    return 0
  fi
  echo "== step $name: up to ${limit}s: $*"
  local started=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  echo "== step $name: exit $rc after $((SECONDS - started))s$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  return 0
}
speedrun() { python3 -m speedrun "$@"; }

echo "== plan $plan, budget ${budget}s, dry run ${DRY_RUN:-0}, out $out, $(date -u +%FT%TZ)"
echo "== commit $(git rev-parse HEAD 2>/dev/null || echo '?') $(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '(dirty)')"
step versions 30 5 bash -c 'nvidia-smi || echo "no nvidia-smi"; python3 -c "import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else \"no GPU\")"; python3 -c "import triton; print(\"triton\", triton.__version__)" || echo "no triton"'

# Wheels carried in .whl (airbench for the anchor, hypothesis for the test suite), unpacked apart.
if ls .whl/*.whl >/dev/null 2>&1; then
  step wheels 60 5 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/speedrun-site .whl/*.whl
  export PYTHONPATH=/tmp/speedrun-site${PYTHONPATH:+:$PYTHONPATH}
fi

# The data: decode the JPEG-q75 copy once; another Pillow may decode a few pixels differently
# (then unpack.py says so in the log, and the records carry the arrays' checksums).
data=${DATA:-.data/cifar10_jpegq75.npz}
if [ ! -f "$data" ]; then
  step data 90 10 python3 .data/unpack.py .data --allow-mismatch
fi

if [ "$plan" = first ]; then
  # 1. The anchor: fast94 against airbench94, interleaved pairs at matched budgets, same data.
  step anchor 180 60 speedrun anchor airbench94 --runs "$runs_anchor" --data-dir "$data" --out "$out/anchor.json" "${tiny[@]}"
  # 2. fast94-muon (airbench94_muon's recipe) against the same airbench94: its claim is 0.68x the time.
  step anchor-muon 120 60 speedrun anchor airbench94 --recipe fast94-muon --runs "$runs_anchor" --data-dir "$data" \
    --out "$out/anchor-muon.json" "${tiny[@]}"
  # 3. The GPU tests: no host sync in any recipe's epoch, kernels against their references.
  step gpu-tests 120 30 python3 -m pytest -m "gpu and not slow" tests --ignore=tests/benchmarks -q -rfEs \
    -p no:cacheprovider
  # 4. fast94's accuracy curve: every epoch evaluated, full budget, so the copy's target can be checked.
  step curve 60 30 speedrun --recipe fast94 --runs "$runs_curve" --full-budget --eval-every 1 --data-dir "$data" \
    --out "$out/fast94-curve.json" "${tiny[@]}"
  # 5. Where fast94's epoch goes: kernel time and wall time, extension hooks included.
  step profile 45 20 speedrun profile --recipe fast94 --data-dir "$data" --markdown "$out/profile-fast94.md" "${tiny[@]}"
  # 6. Page's ResNet-9, if time is left.
  step classic 100 60 speedrun --recipe classic --runs "$runs_classic" --data-dir "$data" --out "$out/classic.json" "${tiny[@]}"
else
  # The longer work, in priority order, each step only if the budget still allows it. Steps that
  # write many records write them into a work folder that is bundled into one tar after each run.
  work=$(mktemp -d)
  bundle() { tar -czf "$out/$1.tmp" -C "$work" "$1" && mv "$out/$1.tmp" "$out/$1.tar.gz"; }
  step anchor-25 240 90 speedrun anchor airbench94 --runs "$runs_more" --seed 100 --data-dir "$data" \
    --out "$out/anchor-25.json" "${tiny[@]}"
  # fp16 (static loss scale) against the first plan's bf16 anchor: the ratio to airbench94 says which is faster.
  step anchor-fp16 150 60 speedrun anchor airbench94 --amp-dtype fp16 --runs "$runs_anchor" --data-dir "$data" \
    --out "$out/anchor-fp16.json" "${tiny[@]}"
  mkdir -p "$work/gates"
  step gates 240 120 env SPEEDRUN_REGRESSION_RECORDS="$work/gates" python3 -m pytest -m "gpu and slow" \
    tests/bench/test_accuracy_regression.py -q -s -p no:cacheprovider
  bundle gates
  step benchmarks 120 45 python3 -m pytest -m gpu tests/benchmarks -q -p no:cacheprovider \
    --benchmark-json="$out/benchmarks.json"
  # The schedule comparison: one ResNet-9, one 24-epoch budget, 3 seeds a policy.
  mkdir -p "$work/policies"
  common=(--recipe classic --runs 3 --full-budget --data-dir "$data" --out "$work/policies" "${tiny[@]}")
  step one-cycle 90 45 speedrun "${common[@]}" --schedule one_cycle_lr --max-lr 0.4; bundle policies
  step one-cycle-swa 90 45 speedrun "${common[@]}" --schedule one_cycle_lr --max-lr 0.4 --swa-epochs 4 \
    --swa-lr 0.05; bundle policies
  step triangular 90 45 speedrun "${common[@]}" --schedule cyclic_lr --base-lr 0.04 --max-lr 0.4 --mode triangular \
    --step-size-up 3ep --no-cycle-momentum; bundle policies
  step sgdr 90 45 speedrun "${common[@]}" --schedule cosine_annealing_warm_restarts --base-lr 0.4 --T-0 8ep \
    --T-mult 2 --warmup 1ep; bundle policies
  step multistep 90 45 speedrun "${common[@]}" --schedule multistep_lr --base-lr 0.4 --milestones 12ep,18ep \
    --gamma 0.1 --warmup 1ep; bundle policies
  step cosine 90 45 speedrun "${common[@]}" --schedule cosine_annealing_lr --base-lr 0.4 --warmup 1ep; bundle policies
fi
echo "== plan $plan done after ${SECONDS}s; files in $out:"
ls -la "$out"

#!/usr/bin/env bash
# The GPU plan: ONE device call that settles, in priority order, whether speedrun works on the
# GPU and how fast94 compares with airbench94, and that returns what it finished even when cut
# short. A second, optional call (plan "second") does the longer work if device time is left.
#
#   once, here:   bash scripts/prepare_gpu_session.sh      (data and wheels into ignored folders)
#   check, here:  DRY_RUN=1 OUT=/tmp/plan DATA=<decoded .npz> bash scripts/gpu_session.sh first
#                 (tiny sizes on the CPU; the anchors refuse the CPU in one line, exit 2)
#                 or, every step on a simulated H200 (the anchors too): add DRY_RUN_DEVICE=cuda and a
#                 PYTHON that simulates it (tests/support/simcuda_python.py; tests/simcuda/test_gpu_plan.py)
#   device call:  carry [".data", ".whl"], timeout_s 540, command:
#                 bash scripts/gpu_session.sh first
#   then, if time is left and the machine is still warm, right away:
#                 BUDGET_S=<seconds left minus 40> bash scripts/gpu_session.sh second
#
# The machine runs a plain copy of the tree: the project is not pip-installed there and there is
# no `speedrun` console script, so every step runs `$PYTHON -m speedrun` (PYTHON, default python3)
# from the repository root. Every step's command must be a program on PATH, because it runs under
# `timeout`, which cannot run a shell function, alias or builtin (that gives exit 127): `step`
# refuses such a command itself, in one line, with exit 127.
#
# Everything lands in $OUT (default results/gpu-session): session.log (all output, the versions
# and nvidia-smi first) and one file per step (plan "second" bundles its many records into a tar
# per step): at most 8 files a plan, so nothing is dropped by the 8-file limit. Records are
# rewritten after every run (marked incomplete until the last), so a step killed by its timeout,
# or the whole call killed, still returns every finished run. A step is first sent SIGINT at its
# limit (pytest then prints its summary, speedrun says "interrupted") and killed 10 s later.
# No `set -e`: a failing step is logged with its exit code and the plan goes on to the next. The
# last line is a table of every step's exit: `== summary: versions=0 anchor=2 ... curve=skipped`.
# Never edit a record by hand: a wrong run is fixed in code and measured again.
#
# Time estimates (H200, 16 cores) are at each step: a cold Inductor compile is ~30-40 s per recipe;
# one airbench94 run is ~3.1 s compiled after its own ~20 s compile; a fast94 run about the same;
# Inductor's on-disk cache (/tmp) makes a later process's compile of an identical graph ~5-10 s.
set -u -o pipefail

PYTHON=${PYTHON:-python3}
SPEEDRUN=("$PYTHON" -m speedrun)
grace=10          # seconds between a step's SIGINT and its SIGKILL; counted inside the plan's budget
deadline=${deadline:-$((SECONDS + 60))}   # set by the plan from BUDGET_S below
summary=()        # "name=exit" for every step, in order ("name=skipped" when it did not fit)

step() {  # step NAME SECONDS MIN_SECONDS PROGRAM ARGS...: run under a timeout that keeps the plan's deadline
  local name=$1 want=$2 need=$3; shift 3
  local left=$((deadline - SECONDS))
  local limit=$((want < left - grace ? want : left - grace))
  if ((limit < need)); then
    echo "== step $name: skipped, ${left}s of the plan left (needs $((need + grace))s)"
    summary+=("$name=skipped")
    return 0
  fi
  # timeout runs programs only: refuse a shell function, alias, builtin or missing command here, in
  # one line, rather than let timeout exit 127 on the machine. `env VAR=... PROGRAM` checks both.
  local programs=("$1") arg
  if [ "${1##*/}" = env ]; then
    for arg in "${@:2}"; do [[ $arg == *=* ]] || { programs+=("$arg"); break; }; done
  fi
  for arg in "${programs[@]}"; do
    if ! type -P -- "$arg" >/dev/null 2>&1; then
      echo "== step $name: exit 127 after 0s (refused: '$arg' is not a program on PATH but" \
        "$(type -t -- "$arg" 2>/dev/null || echo 'missing'); timeout runs only programs)"
      summary+=("$name=127")
      return 0
    fi
  done
  local shown started=$SECONDS rc
  printf -v shown '%q ' "$@"                 # one line, quoted as a shell would take it back
  echo "== step $name: up to ${limit}s: ${shown% }"
  timeout -s INT -k "$grace" "$limit" "$@"
  rc=$?
  echo "== step $name: exit $rc after $((SECONDS - started))s$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  summary+=("$name=$rc")
  return 0
}

# Sourced (the tests check `step` on its own): define the above, run nothing.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

plan=${1:-first}
case "$plan" in first|second) ;; *) echo "usage: scripts/gpu_session.sh [first|second]" >&2; exit 2 ;; esac
out=${OUT:-results/gpu-session}
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
export PYTHONUNBUFFERED=1
# first: 8 minutes, so the device call (timeout_s 540) keeps a minute for the transfers and the kill.
budget=${BUDGET_S:-$([ "$plan" = first ] && echo 480 || echo 200)}
deadline=$((SECONDS + budget))

# DRY_RUN=1: the same steps at tiny sizes on the CPU, to check the plan before a lease; DRY_RUN_DEVICE=cuda
# gives them --device cuda instead, for a PYTHON that simulates one (compiled code cannot run there either).
if [ "${DRY_RUN:-0}" = 1 ]; then
  dry_device=${DRY_RUN_DEVICE:-cpu}
  case $dry_device in cpu|cuda) ;; *) echo "DRY_RUN_DEVICE must be cpu or cuda, not '$dry_device'" >&2; exit 2 ;; esac
  tiny=(--device "$dry_device" --no-compile --train-subset 512 --test-subset 200 --epochs 2 --batch-size 64 --width 0.125)
  # the policies' parameters are set for classic's 24 epochs (milestones at 12 and 18): keep them, on fewer images
  tiny_policies=("${tiny[@]}" --epochs 24 --train-subset 128)
  # airbench94 trains in batches of 1024 and drops a partial one: on fewer images it takes no step and its
  # warm-up (verbose, as the anchor calls it) fails reading the step's outputs. 1024: one step an epoch.
  tiny_anchor=("${tiny[@]}" --train-subset 1024)
  runs_anchor=2; runs_muon=2; runs_ab=2; runs_curve=2; runs_classic=2; runs_more=2
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # tiny models: more threads only spin against each other
else
  tiny=(); tiny_policies=(); tiny_anchor=(); dry_device=
  runs_anchor=8; runs_muon=5; runs_ab=4; runs_curve=3; runs_classic=3; runs_more=25
fi

echo "== plan $plan, budget ${budget}s, dry run ${DRY_RUN:-0}${dry_device:+ on $dry_device}, out $out, python $PYTHON, $(date -u +%FT%TZ)"
echo "== commit $(git rev-parse HEAD 2>/dev/null || echo '?') $(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '(dirty)')"
# ~5-8 s: nvidia-smi and one cold `import torch`.
versions_py='import sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("no triton")
import speedrun
print("speedrun from", speedrun.__file__)'
step versions 30 5 bash -c 'if type -P nvidia-smi >/dev/null; then nvidia-smi; else echo "no nvidia-smi"; fi
  "$1" -c "$2"' versions "$PYTHON" "$versions_py"

# Wheels carried in .whl (airbench for the anchor, hypothesis for the test suite), unpacked apart. ~5 s.
if ls .whl/*.whl >/dev/null 2>&1; then
  step wheels 60 5 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/speedrun-site .whl/*.whl
  export PYTHONPATH=/tmp/speedrun-site${PYTHONPATH:+:$PYTHONPATH}
fi

# The data: decode the JPEG-q75 copy once (~10 s); another Pillow may decode a few pixels differently
# (then unpack.py says so in the log, and the records carry the arrays' checksums).
data=${DATA:-.data/cifar10_jpegq75.npz}
if [ ! -f "$data" ]; then
  step data 90 10 "$PYTHON" .data/unpack.py .data --allow-mismatch
fi
case $data in /*) ;; *) data=$PWD/$data ;; esac

# The GPU tests: no host sync in an epoch (the recipes' parametrizations compile each recipe cold,
# ~30-40 s each), kernels against their references. fast94's here, the other recipes' in "second".
gpu_tests=("$PYTHON" -m pytest -m "gpu and not slow" tests --ignore=tests/benchmarks -q -rfEs --durations=10
           -p no:cacheprovider)
fast94_only="not an_epoch_never_syncs or an_epoch_never_syncs_with_the_host[fast94]"

if [ "$plan" = first ]; then
  # Expected ~545 s with these estimates, so of the 480 the gpu tests, curve and profile run only if
  # the earlier steps finish early. Files: session.log and the seven below at most.
  # 1. The anchor: fast94 against airbench94, interleaved pairs at matched budgets, same data.
  #    ~120 s: ~8 s start and data, fast94 cold compile ~35 s, airbench94 compile ~20 s, 8 pairs x ~7 s
  #    (two ~3.1 s runs and their evaluations).
  step anchor 150 60 "${SPEEDRUN[@]}" anchor airbench94 --runs "$runs_anchor" --data-dir "$data" \
    --out "$out/anchor.json" "${tiny_anchor[@]}"
  # 2. fast94-muon (airbench94_muon's recipe) against the same airbench94: its claim is 0.68x the time.
  #    ~85 s: ~8 s start, fast94-muon cold compile ~40 s, airbench94 from the cache ~8 s, 5 pairs x ~6 s.
  step anchor-muon 100 60 "${SPEEDRUN[@]}" anchor airbench94 --recipe fast94-muon --runs "$runs_muon" \
    --data-dir "$data" --out "$out/anchor-muon.json" "${tiny_anchor[@]}"
  # 2b. fast94-record (the public record's techniques on fast94-muon, 0.269 PFLOP against 0.299) against the
  #    same airbench94: the record's claim is 0.53x. ~85 s, as fast94-muon's: its own cold compile ~40 s.
  step anchor-record 100 60 "${SPEEDRUN[@]}" anchor airbench94 --recipe fast94-record --runs "$runs_muon" \
    --data-dir "$data" --out "$out/anchor-record.json" "${tiny_anchor[@]}"
  # 3. A/B of two options against the default (their ratios to airbench94 against the anchor's):
  #    the whole training step captured as one CUDA graph. ~55 s: ~8 s start, fast94's graphs from
  #    the cache ~10 s plus the capture, airbench94 from the cache ~8 s, 4 pairs x ~6.5 s.
  step anchor-cuda-graph 75 40 "${SPEEDRUN[@]}" anchor airbench94 --runs "$runs_ab" --data-dir "$data" \
    --out "$out/anchor-cuda-graph.json" --cuda-graph "${tiny_anchor[@]}"
  #    Inductor's max-autotune without CUDA graphs: a cold compile that benchmarks Triton templates for
  #    each conv and matmul, ~60-90 s on 16 cores (the least certain estimate here), airbench94 ~8 s,
  #    4 pairs x ~6.5 s: ~110-130 s, capped at 110; a cut step still returns its finished pairs.
  step anchor-autotune 110 60 "${SPEEDRUN[@]}" anchor airbench94 --runs "$runs_ab" --data-dir "$data" \
    --out "$out/anchor-autotune.json" --compile-mode max-autotune-no-cudagraphs "${tiny_anchor[@]}"
  # 4. The GPU tests, fast94's only: ~65 s: pytest start and collection ~8 s, the Triton kernels' tests
  #    ~20 s (one compile per configuration), three eager precision epochs ~10 s, fast94's epoch at an
  #    eighth of its widths compiled cold ~30 s.
  step gpu-tests 90 45 "${gpu_tests[@]}" -k "$fast94_only"
  # 5. fast94's accuracy curve: every epoch evaluated, full budget, so the copy's target can be checked.
  #    ~40 s: ~8 s start, compile from the cache ~10 s, 3 runs x ~3.5 s plus 10 evaluations each.
  step curve 60 30 "${SPEEDRUN[@]}" --recipe fast94 --runs "$runs_curve" --full-budget --eval-every 1 \
    --data-dir "$data" --out "$out/fast94-curve.json" "${tiny[@]}"
  # 6. Where fast94's epoch goes: kernel time and wall time, extension hooks included. ~30 s.
  step profile 45 20 "${SPEEDRUN[@]}" profile --recipe fast94 --data-dir "$data" --markdown "$out/profile-fast94.md" \
    "${tiny[@]}"
else
  # The longer work, in priority order, each step only if the budget still allows it (all of it is
  # ~17 minutes: more than one call; BUDGET_S sizes it to the device time left). Steps that write
  # many records write them into a work folder that is bundled into one tar after each run.
  # Files: session.log, classic.json, anchor-25.json, anchor-fp16.json, gates.tar.gz,
  # benchmarks.json, policies.tar.gz.
  work=$(mktemp -d)
  bundle() { tar -czf "$out/$1.tmp" -C "$work" "$1" && mv "$out/$1.tmp" "$out/$1.tar.gz"; }
  # The other recipes' GPU tests: ~100 s, three cold compiles at an eighth of the widths ~30 s each.
  step gpu-tests-rest 150 60 "${gpu_tests[@]}" -k "an_epoch_never_syncs and not ($fast94_only)"
  # Page's ResNet-9: ~70 s, cold compile ~35 s, 3 runs of ~10 s.
  step classic 100 60 "${SPEEDRUN[@]}" --recipe classic --runs "$runs_classic" --data-dir "$data" \
    --out "$out/classic.json" "${tiny[@]}"
  # 25 more pairs: ~200 s, both compiles from the cache ~20 s, 25 pairs x ~7 s.
  step anchor-25 240 90 "${SPEEDRUN[@]}" anchor airbench94 --runs "$runs_more" --seed 100 --data-dir "$data" \
    --out "$out/anchor-25.json" "${tiny_anchor[@]}"
  # fp16 (static loss scale) against the first plan's bf16 anchor: the ratio to airbench94 says which
  # is faster. ~105 s: fp16 graphs compiled cold ~35 s, airbench94 ~8 s, 8 pairs x ~7 s.
  step anchor-fp16 150 60 "${SPEEDRUN[@]}" anchor airbench94 --amp-dtype fp16 --runs "$runs_anchor" \
    --data-dir "$data" --out "$out/anchor-fp16.json" "${tiny_anchor[@]}"
  # The accuracy and time gates: every recipe, 5 full-budget seeds on the full data, compiled (from
  # the cache where the steps above compiled it): ~200 s or more, classic's 24 epochs the longest.
  # The real data: the decoded copy, named explicitly (../shared does not travel).
  mkdir -p "$work/gates"
  step gates 240 120 env SPEEDRUN_REGRESSION_RECORDS="$work/gates" SPEEDRUN_TEST_CIFAR10="$data" \
    "$PYTHON" -m pytest -m "gpu and slow" tests/bench/test_accuracy_regression.py -q -s -rfEs --durations=10 \
    -p no:cacheprovider
  bundle gates
  # The speed benchmarks: every recipe's full-size step and epoch, compiled: ~120 s.
  step benchmarks 120 45 "$PYTHON" -m pytest -m gpu tests/benchmarks -q -rfEs -p no:cacheprovider \
    --benchmark-json="$out/benchmarks.json"
  # The schedule comparison: one ResNet-9, one 24-epoch budget, 3 seeds a policy: ~40 s each.
  mkdir -p "$work/policies"
  common=(--recipe classic --runs "$runs_classic" --full-budget --data-dir "$data" --out "$work/policies" "${tiny_policies[@]}")
  step one-cycle 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule one_cycle_lr --max-lr 0.4; bundle policies
  step one-cycle-swa 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule one_cycle_lr --max-lr 0.4 --swa-epochs 4 \
    --swa-lr 0.05; bundle policies
  step triangular 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule cyclic_lr --base-lr 0.04 --max-lr 0.4 \
    --mode triangular --step-size-up 3ep --no-cycle-momentum; bundle policies
  step sgdr 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule cosine_annealing_warm_restarts --base-lr 0.4 --T-0 8ep \
    --T-mult 2 --warmup 1ep; bundle policies
  step multistep 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule multistep_lr --base-lr 0.4 \
    --milestones 12ep,18ep --gamma 0.1 --warmup 1ep; bundle policies
  step cosine 90 45 "${SPEEDRUN[@]}" "${common[@]}" --schedule cosine_annealing_lr --base-lr 0.4 --warmup 1ep
  bundle policies
fi
echo "== plan $plan done after ${SECONDS}s; files in $out:"
ls -la "$out"
echo "== summary: ${summary[*]}"

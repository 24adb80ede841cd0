#!/usr/bin/env bash
# What the project needs from one GPU, in order of value, inside one time budget:
#   1. advance the published-schedule runs (results/longruns/), side by side: one process per
#      run, since one ResNet-20 run at batch 128 leaves most of a large GPU idle.  Each run
#      first checks its fast step against the eager step and drops a failing one for the next
#      faster form (ir2net.training._checked_step), so the runs need not wait for the tests
#   1b. the CUDA-only tests (tests/test_gpu.py): which fast step trains what the eager one does
#   2. a short data-parallel run through torchrun (NCCL, one rank per GPU, CUDA-graph step)
#   3. k concurrent ResNet-20 IR²Net runs sharing the GPU (1, 2, 4, 8 processes)
#   4. time every distinct training step of the paper profile (the cost plan's figures)
#   5. the sharing measurement again under CUDA MPS, where the machine has it
# A step that would start with too little of the budget left is skipped and says so; each
# has a cap, so that one slow step cannot starve the rest; one still running at its cap or
# at the end of the budget gets SIGTERM. Everything it writes goes
# to results/ (longruns, bench/steps/<gpu>, bench/sharing_<gpu>.json) and, when $OUT is set,
# also into one archive $OUT/gpu-session.tgz with the log, to be unpacked in the repository.
#
# Usage (repository root; ir2net installed, or its requirements importable):
#   bash scripts/gpu-session.sh [CIFAR10]      CIFAR10: the dataset (default: plan.yaml's)
# Budgets in seconds (environment): BUDGET_S (all, default 540), LONGRUN_S (default 180),
# SHARING_SECONDS (timed window per run, default 10).  The long runs need about a minute on
# top of LONGRUN_S (decoding CIFAR-10, checks, the last checkpoint and evaluation). The GPU tests come right after the long
# runs: among them, the checks of each fast step's form against the eager step
# (results/longruns/README.md, "Discarded").
#
# On a bare GPU machine whose python3 has PyTorch but not this package's other requirements
# (e.g. a lent device): bring CIFAR-10 and jsonschema's wheels inside the repository, in
# folders that git ignores, and put the wheels on the path first:
#   mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.gz .data/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_17_x86_64 -d .whl jsonschema jsonschema-specifications referencing rpds-py
#   (there) pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#           PYTHONPATH=/tmp/site IR2NET_COMMIT=<commit> bash scripts/gpu-session.sh .data/cifar10-jpeg.tar.gz
# IR2NET_COMMIT: the commit the copy was sent from (its run records name it; a copied .git
# can be stale). A completed long run's record lands in results/records/paper, also archived.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}
LONGRUN_S=${LONGRUN_S:-180}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG=$(mktemp)
STARTED=$(date -u +%Y%m%dT%H%MZ)
exec > >(tee "$LOG") 2>&1

GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0).split()[1].lower())") || {
  echo "gpu-session: no CUDA device visible to $PY"; exit 1; }
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "gpu-session: $GPUS x $GPU, budget ${BUDGET_S}s, started $(date -u +%FT%TZ)"
left() { echo $((BUDGET_S - SECONDS)); }
step() {  # step NAME NEEDED_S CAP_S: run the rest of the line if NEEDED_S seconds are left,
          # for at most CAP_S of them
  local name=$1 needed=$2 cap=$3 limit; shift 3
  if [ "$(left)" -lt "$needed" ]; then
    echo "gpu-session: skipped $name ($(left)s left, needs about ${needed}s)"; return 0
  fi
  limit=$(left); [ "$limit" -gt "$cap" ] && limit=$cap
  echo "gpu-session: $name (at ${SECONDS}s, for at most ${limit}s)"
  # SIGTERM at the cap or the end of the budget: a long run checkpoints and stops cleanly,
  # a benchmark keeps the records it has written (each atomically)
  timeout --kill-after=30 "$limit" "$@"; echo "gpu-session: $name exited $? at ${SECONDS}s"
}

cifar10=${DATA:-$(cd results/longruns && realpath -m "$(sed -n 's/^data_root: *\([^ ]*\).*/\1/p' plan.yaml)")}
longruns() {  # the GPU-only runs first, else every unfinished run of the most urgent priority,
              # each in its own process
  local ids pids=() pid id rc status=0
  ids=$($PY -c "from ir2net.longruns import load_plan, select
print(' '.join(run.run_id for run in select(load_plan(), [], on_gpu=True)))") || return 1
  [ -n "$ids" ] || { echo "gpu-session: every long run is complete"; return 0; }
  # unpack and decode CIFAR-10 into the cache once, before the runs read it side by side
  $PY -c "import sys; from ir2net.data.cifar10 import load_small_split
for split in ('train', 'test'):
    load_small_split({'dataset': 'cifar10', 'root': sys.argv[1], 'cache_dir': None, 'download': False}, split)" \
    "$cifar10" || return 1
  for id in $ids; do
    $PY -m ir2net.cli longrun continue "$id" --stop-after "${LONGRUN_S}s" \
      --data-root "$cifar10" > "$RUNLOGS/longrun-$id.log" 2>&1 &
    pids+=($!)
  done
  # timeout signals the whole process group; wait on until every run has checkpointed
  trap : TERM
  for pid in "${pids[@]}"; do
    while :; do wait "$pid"; rc=$?; kill -0 "$pid" 2>/dev/null || break; done
    [ "$rc" -eq 0 ] || status=$rc
  done
  for id in $ids; do tail -c 600 "$RUNLOGS/longrun-$id.log"; echo; done
  return "$status"
}
RUNLOGS=${OUT:-$(mktemp -d)}  # each run's own log (with $OUT, they come back)
export -f longruns; export PY LONGRUN_S cifar10 RUNLOGS
step "long runs" 60 $((LONGRUN_S + 90)) bash -c longruns
step "GPU tests" 90 150 $PY -m pytest -q -p no:cacheprovider -p no:logging --durations=0 tests/test_gpu.py
step "torchrun (NCCL)" 45 75 $PY -m torch.distributed.run --standalone --nproc_per_node "$GPUS" \
  -m ir2net.cli train --config cifar10_resnet20_bireal --out "/tmp/ddp-$GPU" --no-progress \
  --set data.root="$cifar10" --set train.epochs=1 --set train.max_steps=300
sharing() {  # sharing FILE [--no-mps]: k concurrent runs on the GPU, one JSON record,
             # rewritten after every k (stopped at its cap, it keeps the rows it measured)
  $PY -m ir2net.cli bench-sharing --runs 1,2,4,8 --seconds "${SHARING_SECONDS:-10}" \
    --set train.compile=false --out "$1" "${@:2}"
}
export -f sharing
step "GPU sharing" 60 120 bash -c "sharing results/bench/sharing_$GPU.json --no-mps"
# The eager CUDA-graph step (no torch.compile): 21 distinct steps compile too slowly for one
# budget; the plan takes the fastest record per step, so a compiled record can follow later.
step "step benchmarks" 60 240 $PY -m ir2net.cli bench --profile config/paper.yaml --out "results/bench/steps/$GPU" \
  --set train.compile=false --warmup 3 --repeats 3 --steps 5
if command -v nvidia-cuda-mps-control > /dev/null; then
  step "GPU sharing under MPS" 90 150 bash -c "sharing results/bench/sharing_${GPU}_mps.json"
else
  echo "gpu-session: no CUDA MPS on this machine (nvidia-cuda-mps-control not found)"
fi

echo "gpu-session: done at ${SECONDS}s"
if [ -n "${OUT:-}" ]; then
  cp "$LOG" "results/bench/gpu-session-$GPU-$STARTED.log"
  [ -f "/tmp/ddp-$GPU/metrics.json" ] && cp "/tmp/ddp-$GPU/metrics.json" "results/bench/ddp_$GPU.json"
  tar czf "$OUT/gpu-session.tgz" results/longruns results/bench \
    $(ls -d results/records/paper 2>/dev/null)
fi

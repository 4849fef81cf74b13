#!/usr/bin/env bash
# The CUDA checks (issue 17, point 6), in two halves, because the GPU machines this
# project is lent have the NVIDIA driver but no Rust toolchain and no network:
#
#   scripts/gpu-check.sh build       here (Rust, no GPU needed): builds the CUDA
#                                    binaries into target/gpu-check/ (stripped and
#                                    gzipped, ~52 MiB); installs Debian's
#                                    nvidia-cuda-toolkit (non-free) when the machine has no
#                                    nvcc. About 20 minutes on 2 cores.
#   scripts/gpu-check.sh run [OUT]   on the GPU machine, from the repository root with
#                                    target/gpu-check/ carried: runs every check and
#                                    writes the figures to OUT (default target/gpu-check/out)
#                                    and a summary to OUT/summary.txt.
#
# The binaries link the toolkit's cudart, cuBLAS(Lt) and cuRAND (candle's cudarc links
# them): built with Debian bookworm's 11.8 they need libcudart.so.11.0, libcublas.so.11,
# libcublasLt.so.11 and libcurand.so.10 on the GPU machine, which a CUDA 12 machine lacks
# (`run` says which are missing). A CUDA 12 nvcc is not on PyPI (its nvcc wheels carry
# only ptxas) nor in bookworm; trixie's non-free nvidia-cuda-toolkit is 12.4.131.
#
# With the device tool: build here, then
#   run(command="scripts/gpu-check.sh run $OUT", carry=["target/gpu-check"], timeout_s=540)
#
# The checks, each with its own log in OUT:
#   1. agreement  the shipped checkpoint's scores on the GPU against the CPU: within 1e-3,
#                 the same top 10 (the test model::tests::cuda_scores_agree_with_the_cpu);
#   2. train      training speed on the ml-1m subset, CPU and GPU, 2 epochs each (needs
#                 ../shared/data or ATTUNE_DATA; skipped with a note otherwise);
#   3. engine     the engine bench with the model on the GPU (ENGINE_DEVICE=cuda): the
#                 highest offered rate with p99 <= 5 ms at max_batch 1, 16 and 64; the
#                 batching gain is 16 against 1 (goal >= 3x).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=$ROOT/target/gpu-check
# The compute capability candle's kernels are compiled for. 90 would mean sm_90a, which
# Debian's nvcc 11.8 does not know; code for 80 carries its PTX, which the driver compiles
# for the H100/H200 (sm_90) when the kernels load. With a CUDA 12 nvcc, 90 is better.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}

die() { echo "gpu-check: $*" >&2; exit 1; }

# nvcc and the CUDA headers: the system's, else Debian's nvidia-cuda-toolkit (11.8, whose
# nvcc compiles for sm_90) from bookworm's non-free component, through a sources list of
# its own (the system's lists stay as they are). PyPI's nvidia-cuda-nvcc-cu12 wheels
# (12.4.131, 12.9.86) carry ptxas and libnvvm but no nvcc, so they cannot build candle's
# kernels.
cuda_toolkit() {
  if command -v nvcc >/dev/null; then
    return
  fi
  echo "gpu-check: no nvcc here; installing Debian's nvidia-cuda-toolkit (non-free)"
  # apt-get update empties its lists folder of other files: the sources live beside it.
  local lists=$ROOT/target/apt-nonfree/lists parts=$ROOT/target/apt-nonfree/parts
  mkdir -p "$lists/partial" "$parts"
  echo "deb http://deb.debian.org/debian bookworm main contrib non-free" \
    >"$ROOT/target/apt-nonfree/sources.list"
  local apt=(-o "Dir::Etc::sourcelist=$ROOT/target/apt-nonfree/sources.list"
    -o "Dir::Etc::sourceparts=$parts" -o "Dir::State::Lists=$lists")
  apt-get "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive apt-get "${apt[@]}" install -y -qq --no-install-recommends \
    nvidia-cuda-toolkit >/dev/null
  command -v nvcc >/dev/null || die "nvcc is still missing after installing nvidia-cuda-toolkit"
}

# The executable cargo built for the target named $1 (reads cargo's JSON messages).
executable() {
  python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        print(m["executable"])' "$1" | tail -1
}

build() {
  cuda_toolkit
  nvcc --version | tail -1
  # A target directory of its own: the CPU build in target/release stays as it is.
  export CARGO_TARGET_DIR=$ROOT/target/gpu-build
  cargo build --release -p attune --features cuda
  local tests bench
  tests=$(cargo test --release -p attune --lib --features cuda --no-run --message-format=json | executable attune)
  bench=$(cargo bench -p attune-benches --bench engine --features attune/cuda --no-run --message-format=json | executable engine)
  [ -n "$tests" ] && [ -n "$bench" ] || die "cargo did not name the test or bench executable"
  rm -rf "$DEST"
  mkdir -p "$DEST"
  strip -o "$DEST/attune" "$CARGO_TARGET_DIR/release/attune"
  strip -o "$DEST/attune-lib-tests" "$tests"
  strip -o "$DEST/engine-bench" "$bench"
  # The kernels' PTX makes each binary ~65 MiB; gzip brings the three to ~52 MiB, under
  # the device tool's 64 MiB carry.
  gzip -9 "$DEST"/attune "$DEST"/attune-lib-tests "$DEST"/engine-bench
  du -sh "$DEST"
  echo "gpu-check: built; carry target/gpu-check and run: scripts/gpu-check.sh run"
}

run() {
  local out=${1:-$DEST/out}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  # The binaries, unpacked into a scratch folder (not into OUT, whose files come back).
  local B bin
  B=$(mktemp -d)
  for bin in attune attune-lib-tests engine-bench; do
    [ -f "$DEST/$bin.gz" ] || die "no $DEST/$bin.gz: run 'scripts/gpu-check.sh build' first (where Rust is)"
    gunzip -c "$DEST/$bin.gz" >"$B/$bin"
    chmod +x "$B/$bin"
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | tee "$out/gpu.txt" || die "nvidia-smi failed: no NVIDIA driver here"
  local summary=$out/summary.txt
  : >"$summary"
  echo "gpu: $(head -1 "$out/gpu.txt")" >>"$summary"
  # The CUDA libraries the build linked (cudart, cuBLAS, cuRAND of its toolkit).
  local lib missing=""
  for lib in $(ldd "$B/attune" | awk '/not found/ {print $1}'); do
    missing="$missing $lib"
  done
  [ -z "$missing" ] || echo "libraries: missing$missing (the CUDA libraries of the toolkit the build used; see the top of this script)" | tee -a "$summary"

  echo "== 1. CPU/GPU agreement"
  # The lib test binary runs from the crate's directory (it reads models/ relative to it).
  if (cd src-core && "$B/attune-lib-tests" cuda_scores_agree_with_the_cpu --nocapture) \
      >"$out/agreement.log" 2>&1; then
    echo "agreement: passed; $(grep -o 'largest score difference.*' "$out/agreement.log" | head -1)" >>"$summary"
  else
    echo "agreement: FAILED (agreement.log)" >>"$summary"
  fi

  echo "== 2. training speed, ml-1m subset, 2 epochs on the CPU and on the GPU"
  local data=${ATTUNE_DATA:-$ROOT/../shared/data}/ml-1m/ratings_users1-2999.dat
  if [ -f "$data" ]; then
    for dev in cpu cuda; do
      local t0 t1
      t0=$(date +%s.%N)
      "$B/attune" train --data "$data" --format movielens --out "$out/model-$dev" \
        --epochs 2 --eval-every 2 --device "$dev" >"$out/train-$dev.log" 2>&1 || true
      t1=$(date +%s.%N)
      echo "train $dev: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s for 2 epochs; $(grep -E '^epoch +2 ' "$out/train-$dev.log" | tail -1)" >>"$summary"
    done
  else
    echo "train: skipped, no $data (set ATTUNE_DATA to the folder holding ml-1m/)" >>"$summary"
  fi

  echo "== 3. engine bench on the GPU: highest rate with p99 <= 5 ms, by batch size"
  # Batches of 1 (no waiting) against dynamic batching (16, the default, and 64).
  for batch in 1 16 64; do
    local delay=100
    [ "$batch" = 1 ] && delay=0
    (cd benches && ENGINE_BENCH=max ENGINE_DEVICE=cuda ENGINE_SECS=5 ENGINE_WARMUP_SECS=1 \
      ENGINE_MAX_BATCH=$batch ENGINE_DELAY_US=$delay "$B/engine-bench" --bench) \
      >"$out/engine-batch$batch.log" 2>&1 || true
    echo "engine, max_batch $batch: $(grep -E 'sustained|no rate met' "$out/engine-batch$batch.log" | tail -1)" >>"$summary"
  done
  local b1 b16
  b1=$(grep -oE 'sustained [0-9]+' "$out/engine-batch1.log" | grep -oE '[0-9]+' || echo 0)
  b16=$(grep -oE 'sustained [0-9]+' "$out/engine-batch16.log" | grep -oE '[0-9]+' || echo 0)
  if [ "${b1:-0}" -gt 0 ]; then
    echo "batching gain (max_batch 16 / 1): $(awk -v a="$b16" -v b="$b1" 'BEGIN{printf "%.2f", a/b}')x (goal >= 3x; the bench offers at most 40,000 ops/s)" >>"$summary"
  else
    echo "batching gain: batch size 1 met no rate (engine-batch1.log)" >>"$summary"
  fi
  cat "$summary"
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) die "usage: scripts/gpu-check.sh build | run [OUT]" ;;
esac

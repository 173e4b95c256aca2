#!/usr/bin/env bash
# Training throughput benchmark (prints figures; not a test). For each config it trains 2*S steps
# on 1 and on 2 ranks and reports, from the second window of S steps (the first one holds the
# warm-up), samples/s, the ratio to the first row of the same config file, the share of step
# time in each phase that drift_train measures (metrics.jsonl time_share/*), and the GEMM speed
# reference drift_train measured at its start (fp32 1024^3 GFLOP/s, same threads): this VM's
# speed varies about 2x between days, so compare samples/s only within one run or per GFLOP/s.
#   bench/train_bench.sh [S=20] [config[@flag,flag...] ...]
#   default: configs/toy2d.flags (as shipped: fp32) and @--precision=bf16, configs/mnist.flags
#   (every key of the paper) in fp32 (@--precision=fp32: the path before mixed precision) and as
#   shipped (--precision=auto: bf16 autocast where the CPU has AVX512-BF16 or AMX-BF16); the ratio
#   column divides by the first row of the same config file. Other useful rows: the global-keys
#   baseline configs/mnist.flags@--keys_per_location=false,--keys_patch=false. When the
#   plain_step_bench program is built, the MNIST step written in plain LibTorch is timed after.
# Needs the data sets and encoder of those configs (scripts/demo.sh and scripts/mnist.sh make them).
# Binaries: $DRIFTLAB_BIN (default build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] ||
  configs=(configs/toy2d.flags configs/toy2d.flags@--precision=bf16 configs/mnist.flags@--precision=fp32 configs/mnist.flags)
case "$steps" in ''|*[!0-9]*) echo "train_bench: S must be a positive integer, got '$steps'" >&2; exit 2 ;; esac
bin=${DRIFTLAB_BIN:-build/bin}
[ -x "$bin/drift_train" ] || { echo "train_bench: $bin/drift_train missing; build first (scripts/build.sh)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d /tmp/driftlab_train_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)

# value of "key" in a one-line JSON object
field() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" <<<"$1"; }

printf '%-26s %5s %8s %12s %9s %9s' config ranks threads samples/s vs_first GFLOP/s
phases=(data generator encoder communication drift backward optimizer)
for p in "${phases[@]}"; do printf ' %13s' "$p"; done
printf '\n'
declare -A base_of  # samples/s of the first row of each config file: the ratios' baseline
for entry in "${configs[@]}"; do
  cfg=${entry%%@*}
  extra=()
  label=$(basename "$cfg")
  if [ "$entry" != "$cfg" ]; then
    IFS=, read -r -a extra <<<"${entry#*@}"
    case "$entry" in *keys_per_location=false*) label="$label-global-keys" ;; *keys*) label="$label+keys" ;;
      *precision=fp32*) label="$label-fp32" ;; *precision=bf16*) label="$label-bf16" ;; *) label="$label+flags" ;; esac
  fi
  [ -f "$cfg" ] || { echo "train_bench: config $cfg not found" >&2; exit 2; }
  for w in 1 2; do
    run="$tmp/$label-w$w"
    threads=$(( cores / w )); [ "$threads" -ge 1 ] || threads=1
    args=(--flagfile="$cfg" --run_dir="$run" --steps=$((2 * steps)) --log_every="$steps" --image_every=0
          --ckpt_every=1000000000 --threads="$threads" "${extra[@]}")
    if [ "$w" -eq 1 ]; then cmd=("$bin/drift_train" "${args[@]}")
    else cmd=(mpirun -np "$w" --oversubscribe --bind-to none "$bin/drift_train" "${args[@]}"); fi
    if ! "${cmd[@]}" >"$run.log" 2>&1; then
      echo "train_bench: $cfg on $w rank(s) failed; last lines of $run.log:" >&2; tail -n 5 "$run.log" >&2; exit 1
    fi
    row=$(tail -n 1 "$run/metrics.jsonl")
    sps=$(field "$row" samples_per_s)
    [ -n "${base_of[$cfg]:-}" ] || base_of[$cfg]=$sps
    gflops=$(sed -n 's/.*speed reference: .* product: \([0-9.]*\) GFLOP\/s.*/\1/p' "$run.log" | head -n 1)
    printf '%-26s %5d %8d %12.1f %8.2fx %9s' "$label" "$w" "$threads" "$sps" \
      "$(awk -v a="$sps" -v b="${base_of[$cfg]}" 'BEGIN{print a/b}')" "${gflops:-?}"
    for p in "${phases[@]}"; do
      v=$(field "$row" "time_share\\/$p"); printf ' %12.1f%%' "$(awk -v x="${v:-0}" 'BEGIN{print 100*x}')"
    done
    printf '\n'
  done
done
# The same MNIST step written plainly in LibTorch (tensor ops for keys and field, autograd
# through everything) beside driftlab's step, in one process: bench/plain_step.cpp.
if [ -x "$bin/plain_step_bench" ] && [ -f .cache/encoders/mnist-mae.pt ]; then
  echo
  echo "MNIST step, plain LibTorch vs driftlab (bench/plain_step.cpp, $cores threads):"
  "$bin/plain_step_bench" --steps="$steps" --threads="$cores"
fi

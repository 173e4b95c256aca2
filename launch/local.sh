#!/usr/bin/env bash
# Launches a driftlab binary on this node with N ranks under mpirun: one log file per rank,
# the environment passed through, the resolved command printed first.
#
#   launch/local.sh -n 4 [--logs DIR] [--threads T] -- build/bin/drift_train --flagfile=configs/toy2d.flags
#
# -n N         number of ranks (default 2)
# --logs DIR   per-rank logs as DIR/1/rank.<r>/stdout|stderr (OpenMPI --output-filename); default runs/logs
# --threads T  intra-op threads per rank (exported as DRIFTLAB_THREADS; default cores / N)
# --plain      no per-rank log files and no rank tags: output as from one process
set -euo pipefail
n=2 logs=runs/logs threads="" plain=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --logs) logs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --plain) plain=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "launch/local.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "launch/local.sh: missing the command after --" >&2; exit 2; }
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "launch/local.sh: -n expects a positive integer, got '$n'" >&2; exit 2; }
[ -n "$threads" ] || threads=$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
[ "$n" -gt "$(nproc)" ] && extra+=(--oversubscribe)
cmd=(mpirun -np "$n" "${extra[@]}" --bind-to none -x DRIFTLAB_THREADS="$threads" -x PATH)
if [ "$plain" -eq 0 ]; then mkdir -p "$logs"; cmd+=(--output-filename "$logs" --tag-output); fi
if [ -n "${LD_LIBRARY_PATH:-}" ]; then cmd+=(-x LD_LIBRARY_PATH); fi  # mpirun warns about unset -x
cmd+=("$@")
echo "launch: ${cmd[*]}"
exec "${cmd[@]}"

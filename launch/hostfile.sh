#!/usr/bin/env bash
# Launches a driftlab binary on several nodes listed in an OpenMPI hostfile ("node01 slots=8"
# per line): one log file per rank, the environment passed through, the command printed first.
# The build and the data must be at the same path on every node (shared file system).
#
#   launch/hostfile.sh -f hosts.txt -n 16 [--logs DIR] [--threads T] -- build/bin/drift_train --flagfile=...
set -euo pipefail
hostfile="" n="" logs=runs/logs threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    -f) hostfile="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    --logs) logs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "launch/hostfile.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$hostfile" ] && [ -r "$hostfile" ] || { echo "launch/hostfile.sh: -f expects a readable hostfile, got '$hostfile'" >&2; exit 2; }
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "launch/hostfile.sh: -n expects a positive integer, got '$n'" >&2; exit 2; }
[ $# -gt 0 ] || { echo "launch/hostfile.sh: missing the command after --" >&2; exit 2; }
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
mkdir -p "$logs"
cmd=(mpirun -np "$n" --hostfile "$hostfile" "${extra[@]}" --bind-to none --map-by slot
     --output-filename "$logs" --tag-output -x DRIFTLAB_THREADS="$threads" -x PATH)
# Forward these only when set (mpirun warns about every -x naming an unset variable).
for v in LD_LIBRARY_PATH NCCL_DEBUG NCCL_SOCKET_IFNAME; do
  if [ -n "${!v:-}" ]; then cmd+=(-x "$v"); fi
done
cmd+=("$@")
echo "launch: ${cmd[*]}"
exec "${cmd[@]}"

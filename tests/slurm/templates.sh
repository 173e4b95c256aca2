#!/usr/bin/env bash
# The sbatch templates' requeue step finds the run directory wherever drift_train would take it
# from: the command line, a --flagfile (nested ones too, later settings winning) or the default.
# No Slurm needed: srun / mpirun / scontrol are stand-ins on PATH; the launcher stand-in writes
# STOPPED into one folder (what a trainer stopped by a signal leaves), scontrol records a requeue.
# Usage: templates.sh SOURCE_DIR   (run by ctest as slurm_templates; well under a second)
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_sbatch.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fake" "$work/submit/cfg"
for launcher in srun mpirun; do
  printf '#!/bin/sh\nmkdir -p "$STOP_IN" && touch "$STOP_IN/STOPPED"\n' >"$work/fake/$launcher"
done
printf '#!/bin/sh\necho "$@" >>"$SCONTROL_LOG"\n' >"$work/fake/scontrol"
chmod +x "$work/fake/"*
cd "$work/submit"
# a flagfile that only includes another, which sets the run directory (comments, blank lines)
printf '# outer\n\n--flagfile=cfg/inner.flags\n--steps=10\n' >cfg/outer.flags
printf '  --run_dir=runs/from-flagfile  \n--seed=1\n' >cfg/inner.flags
fails=0
# check TEMPLATE EXPECT(requeue|none) STOP_IN ARGS...
check() {
  local template=$1 expect=$2 stop_in=$3 log="$work/scontrol.log"
  shift 3
  rm -rf runs "$log"
  : >"$log"
  PATH="$work/fake:$PATH" SLURM_SUBMIT_DIR="$work/submit" SLURM_JOB_ID=4242 STOP_IN="$stop_in" SCONTROL_LOG="$log" \
    bash "$src/slurm/$template" "$@" >"$work/out.log" 2>&1 || { echo "FAIL: $template $* exited non-zero"; cat "$work/out.log"; fails=$((fails + 1)); return; }
  local got=none
  grep -q '^requeue 4242$' "$log" && got=requeue
  if [ "$got" != "$expect" ]; then
    echo "FAIL: $template with STOPPED in $stop_in and args '$*': expected $expect, got $got"; fails=$((fails + 1))
  else
    echo "ok: $template $expect (STOPPED in $stop_in; args: $*)"
  fi
}
for t in train_srun.sbatch train_mpirun.sbatch; do
  check $t requeue runs/cli --run_dir=runs/cli
  check $t requeue runs/from-flagfile --flagfile=cfg/outer.flags
  check $t requeue runs/from-flagfile --flagfile cfg/outer.flags
  check $t requeue runs/later --flagfile=cfg/outer.flags --run_dir=runs/later
  check $t none runs/from-flagfile --flagfile=cfg/outer.flags --run_dir=runs/later
  check $t requeue runs/from-flagfile --run_dir=runs/earlier --flagfile=cfg/outer.flags
  check $t requeue runs/default --steps=5
  check $t none runs/elsewhere --flagfile=cfg/outer.flags
done
[ $fails -eq 0 ] || { echo "$fails template check(s) failed"; exit 1; }
echo "all template checks passed"

#!/usr/bin/env bash
# Fault behaviour of drift_train under mpirun (issue: launching and surviving faults):
#  1. SIGTERM to the ranks mid-run (what Slurm sends): a checkpoint is committed, STOPPED is
#     written and every process exits 0; --resume=auto continues from that step.
#  2. SIGKILL of one of 2 ranks: the job ends within 60 s, naming the rank; a relaunch resumes
#     from the last complete checkpoint.
#  3. SIGKILL while a checkpoint is being written (shards on disk, manifest not yet): the half
#     written step is ignored and the run resumes from the previous complete checkpoint.
# Usage: faults.sh BIN_DIR   (run by ctest)
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_faults.XXXXXX)
cleanup() { pkill -KILL -f "run_dir=$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe  # the same for Open MPI 5 (PRRTE)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

"$bin/drift_data" toy checkerboard --out="$work/toy" --num=4000 --seed=3 --progress=false >/dev/null
common=(--data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=64 --pos_per_class=64 --taus=0.05
        --log_every=50 --image_every=0 --keep_last=3 --threads=1 --prefetch=1 --steps=1000000)

# wait_for CONDITION_CMD TIMEOUT_S: polls every 0.2 s.
wait_for() { local t=0; until eval "$1"; do sleep 0.2; t=$((t + 1)); [ $t -lt $(($2 * 5)) ] || return 1; done; }
newest() { "$bin/drift_ckpt" list "$work/$1" 2>/dev/null | awk '$1 == "complete" {p = $2} END {print p}' | sed -n 's/.*step_0*\([0-9][0-9]*\)$/\1/p;' | grep . || echo 0; }
# The rank processes (their command line starts with the binary; mpirun's starts with mpirun).
rank_pids() { pgrep -f "^[^ ]*drift_train .*run_dir=$work/$1( |$)" || true; }

echo "== SIGTERM: checkpoint, STOPPED, exit 0"
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --ckpt_every=1000 --run_dir="$work/term" >"$work/term.log" 2>&1 &
job=$!
wait_for "grep -q 'step 100/' '$work/term.log'" 60 || fail "training did not reach step 100"
kill -TERM $(rank_pids term)
rc=0; wait $job || rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM (expected 0)"
[ -f "$work/term/STOPPED" ] || fail "no STOPPED file"
step=$(newest term)
[ "$step" -ge 100 ] || fail "no checkpoint committed on SIGTERM (newest complete step: $step)"
echo "stopped and committed step $step"
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --ckpt_every=1000 --run_dir="$work/term" \
  --steps=$((step + 5)) --resume=auto >"$work/term2.log" 2>&1 || fail "resume after SIGTERM"
grep -q "resumed from .*step_$(printf %08d "$step")" "$work/term2.log" || fail "did not resume from step $step"
[ ! -f "$work/term/STOPPED" ] || fail "STOPPED left behind after a finished run"

echo "== SIGKILL of one rank: the job ends within 60 s; relaunch resumes"
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --ckpt_every=20 --run_dir="$work/kill" >"$work/kill.log" 2>&1 &
job=$!
wait_for "[ \$(newest kill) -ge 40 ]" 60 || fail "no checkpoint at step 40"
victim=$(rank_pids kill | tail -1)
start=$(date +%s)
kill -KILL "$victim"
rc=0; wait $job || rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] || fail "job exited 0 after a rank was killed"
[ $took -le 60 ] || fail "job took $took s to end after a rank was killed"
# read as one line: Open MPI 5's prterun breaks its message between "exited on" and "signal 9"
grep -Eqi "rank [0-9]+.*(signal 9|killed)|(signal 9|killed).*rank [0-9]+" <<< "$(tr '\n' ' ' < "$work/kill.log")" ||
  fail "no message naming the killed rank"
echo "job ended ${took} s after SIGKILL of pid $victim (exit $rc)"
step=$(newest kill)
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --ckpt_every=20 --run_dir="$work/kill" \
  --steps=$((step + 5)) --resume=auto >"$work/kill2.log" 2>&1 || fail "relaunch after SIGKILL"
grep -q "resumed from .*step_$(printf %08d "$step")" "$work/kill2.log" || fail "did not resume from step $step"

echo "== SIGKILL during a checkpoint write: the previous complete checkpoint is used"
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --steps=40 --ckpt_every=20 --run_dir="$work/mid" \
  --test_pause_in_checkpoint_ms=20000 >"$work/mid.log" 2>&1 &
job=$!
# step 20 is committed after the pause; wait for it, then for the shards of step 40 and kill.
wait_for "[ -f '$work/mid/checkpoints/step_00000020/manifest.pb' ]" 90 || fail "step 20 not committed"
wait_for "ls '$work/mid/checkpoints/step_00000040/'shard_r* >/dev/null 2>&1" 90 || fail "no shard of step 40"
kill -KILL $(rank_pids mid)
wait $job || true
[ ! -f "$work/mid/checkpoints/step_00000040/manifest.pb" ] || fail "step 40 has a manifest although it was killed before"
"$bin/drift_ckpt" list "$work/mid" | grep -q "incomplete" || fail "drift_ckpt list does not report the incomplete step"
mpirun -np 2 --bind-to none "$bin/drift_train" "${common[@]}" --steps=25 --ckpt_every=20 --run_dir="$work/mid" \
  --resume=auto >"$work/mid2.log" 2>&1 || fail "resume after a kill during checkpointing"
grep -q "ignoring incomplete checkpoint .*step_00000040" "$work/mid2.log" || fail "no warning about the incomplete step 40"
grep -q "resumed from .*step_00000020" "$work/mid2.log" || fail "did not resume from step 20"
echo "all fault checks passed"

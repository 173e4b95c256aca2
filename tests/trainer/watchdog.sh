#!/usr/bin/env bash
# Collective watchdog end to end (issue 17): one rank of a 2-rank and of a 3-rank training run is
# frozen with SIGSTOP (a stand-in for a hung GPU, node or file system). The job must end within
# --collective_timeout + 15 s with a non-zero status and the watchdog's line naming the
# collective, the step, the waiting rank and the frozen rank; the last committed checkpoint is
# complete and a relaunch with --resume=auto continues from it and finishes.
# Usage: watchdog.sh BIN_DIR   (run by ctest as train_watchdog)
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_watchdog.XXXXXX)
timeout_s=5
pids_to_kill=()
cleanup() {
  for p in "${pids_to_kill[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe  # the same for Open MPI 5 (PRRTE)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

"$bin/drift_data" toy checkerboard --out="$work/toy" --num=4000 --seed=3 --progress=false >/dev/null
common=(--data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=64 --pos_per_class=64 --taus=0.05
        --log_every=10 --image_every=0 --keep_last=2 --threads=1 --prefetch=1 --ckpt_every=10
        --collective_timeout=$timeout_s)

wait_for() { local t=0; until eval "$1"; do sleep 0.2; t=$((t + 1)); [ $t -lt $(($2 * 5)) ] || return 1; done; }
newest() { "$bin/drift_ckpt" list "$work/$1" 2>/dev/null | awk '$1 == "complete" {p = $2} END {print p}' | sed -n 's/.*step_0*\([0-9][0-9]*\)$/\1/p;' | grep . || echo 0; }
rank_pids() { pgrep -f "^[^ ]*drift_train .*run_dir=$work/$1( |$)" || true; }
# The world rank of a rank process, from the environment mpirun gave it.
rank_of() { tr '\0' '\n' <"/proc/$1/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p'; }
now_ms() { date +%s%3N; }

# run_case NP VICTIM_RANK
run_case() {
  local np=$1 victim_rank=$2 name="np$1"
  echo "== $np ranks: SIGSTOP of rank $victim_rank"
  mpirun -np "$np" --bind-to none "$bin/drift_train" "${common[@]}" --steps=1000000 --run_dir="$work/$name" \
    >"$work/$name.log" 2>&1 &
  local job=$!
  pids_to_kill+=("$job")
  wait_for "[ \$(newest $name) -ge 20 ]" 120 || fail "$name: no checkpoint at step 20"
  local victim="" p
  for p in $(rank_pids "$name"); do [ "$(rank_of "$p")" = "$victim_rank" ] && victim=$p; done
  [ -n "$victim" ] || fail "$name: no process of rank $victim_rank"
  pids_to_kill+=("$victim")
  local start; start=$(now_ms)
  kill -STOP "$victim"
  local rc=0; wait "$job" || rc=$?
  local took_ms=$(( $(now_ms) - start ))
  [ $rc -ne 0 ] || fail "$name: the job exited 0 after rank $victim_rank was frozen"
  [ $took_ms -le $(( (timeout_s + 15) * 1000 )) ] || fail "$name: the job took $took_ms ms to end (limit $((timeout_s + 15)) s)"
  # the frozen rank is killed with the job (give the kernel a moment to reap it)
  wait_for "! kill -0 $victim 2>/dev/null" 5 || fail "$name: the frozen rank (pid $victim) outlived the job"
  # it was not the frozen rank (resumed by the launcher to be killed) that reported
  ! grep -q "rank $victim_rank/$np] error: collective watchdog" "$work/$name.log" ||
    fail "$name: the frozen rank blamed its peers"
  local lines; lines=$(grep -c "collective watchdog:" "$work/$name.log" || true)
  [ "$lines" -ge 1 ] && [ "$lines" -le $((np - 1)) ] || fail "$name: $lines watchdog lines (expected 1 to $((np - 1)))"
  grep -Eq "error: collective watchdog: [a-z_()]+ \(collective #[0-9]+ of this rank\) at step [0-9]+ on rank [0-9]+ did not complete within $timeout_s s .*not arrived: rank $victim_rank \(no heartbeat for [0-9.]+ s: stopped, hung or dead" \
    "$work/$name.log" || fail "$name: no watchdog line naming the collective, the step and rank $victim_rank"
  # no other rank is blamed (those that arrived, or wait in an earlier collective, are not)
  local r
  for ((r = 0; r < np; r++)); do
    [ $r -eq "$victim_rank" ] && continue
    ! grep "collective watchdog:" "$work/$name.log" | grep -Eq "rank $r \((no heartbeat|alive but has not entered)" ||
      fail "$name: rank $r is named as not arrived"
  done
  echo "$(grep -m1 -o 'collective watchdog:.*' "$work/$name.log")"
  echo "$name: job ended $took_ms ms after SIGSTOP (exit $rc; --collective_timeout=$timeout_s)"
  local step; step=$(newest "$name")
  [ "$step" -ge 20 ] || fail "$name: newest complete checkpoint is $step"
  "$bin/drift_ckpt" inspect "$work/$name/checkpoints/step_$(printf %08d "$step")" --verify >/dev/null ||
    fail "$name: checkpoint $step does not verify"
  mpirun -np "$np" --bind-to none "$bin/drift_train" "${common[@]}" --steps=$((step + 5)) --resume=auto \
    --run_dir="$work/$name" >"$work/$name-resume.log" 2>&1 || fail "$name: relaunch with --resume=auto failed"
  grep -q "resumed from .*step_$(printf %08d "$step")" "$work/$name-resume.log" || fail "$name: did not resume from step $step"
  grep -q "training finished" "$work/$name-resume.log" || fail "$name: the resumed run did not finish"
}

run_case 2 1
run_case 3 1
echo "all watchdog checks passed"

#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (slurmctld, slurmd, munge from Debian's
# packages, see scripts/install-deps.sh), started and stopped by this script:
#  1. sbatch slurm/train_srun.sbatch with 2 tasks (srun --mpi=pmix): the job trains 20 steps and
#     commits its checkpoint;
#  2. sbatch again with --steps=40: the job resumes from step 20 (--resume=auto) and ends at 40;
#  3. sbatch slurm/train_mpirun.sbatch (mpirun inside the allocation) continues to step 50;
#  4. SIGUSR1 to a running job: checkpoint, exit 0, the template requeues, the rerun resumes;
#  5. a sampling job (slurm/sample_srun.sbatch): SIGUSR1 mid-job, requeue, resume from the
#     committed units, and the same files as an uninterrupted run.
# Needs root (munge key, daemons). Exit 77 (ctest: skipped) when Slurm is not installed.
# Usage: slurm_e2e.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (scripts/install-deps.sh installs Slurm)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: starting slurmctld/slurmd/munged needs root"; exit 77; }

work=$(mktemp -d /tmp/driftlab_slurm.XXXXXX)
chmod 755 "$work"
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.out "$work"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; } >&2; done
  exit 1
}
stop_daemons() {
  for p in "$work"/run/slurmd.pid "$work"/run/slurmctld.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  sleep 1
  for p in "$work"/run/slurmd.pid "$work"/run/slurmctld.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
}
trap 'stop_daemons; rm -rf "$work"' EXIT

# munge: one key for the machine; the daemon runs as the munge user.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  sleep 1
  munge -n | unmunge >/dev/null || fail "munge does not work"
fi

host=$(hostname -s)
mkdir -p "$work"/{state,spool,run,log}
export SLURM_CONF="$work/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=driftlabtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=${DRIFTLAB_SLURMCTLD_PORT:-16817}
SlurmdPort=${DRIFTLAB_SLURMD_PORT:-16818}
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
slurmctld || fail "slurmctld did not start"
slurmd || fail "slurmd did not start"
for i in $(seq 1 60); do
  sinfo -h -o %T 2>/dev/null | grep -Eq "idle|mixed" && break
  sleep 1
  [ "$i" -lt 60 ] || fail "the node did not become idle: $(sinfo 2>&1)"
done
echo "slurm: node $host up ($(sinfo -h -o '%P %D %T %C'))"

"$bin/drift_data" toy checkerboard --out="$work/toy" --num=4000 --seed=3 --progress=false >/dev/null
flags=(--data="$work/toy" --run_dir="$work/run1" --gen_width=64 --gen_depth=2 --gen_per_class=64 --pos_per_class=64
       --taus=0.05 --log_every=10 --image_every=0 --ckpt_every=10 --threads=1 --prefetch=1)
export DRIFTLAB_BIN="$bin"
cd "$work"
submit() { # submit TEMPLATE STEPS: sbatch --wait, prints the job id
  local out
  out=$(sbatch --parsable --wait --ntasks=2 --time=00:10:00 "$src/slurm/$1" "${flags[@]}" --steps="$2") \
    || fail "sbatch $1 --steps=$2 failed (job $out)"
  echo "$out"
}

echo "== sbatch train_srun.sbatch (srun --mpi=pmix, 2 tasks): 20 steps"
job=$(submit train_srun.sbatch 20)
[ -f "$work/run1/checkpoints/step_00000020/manifest.pb" ] || fail "job $job committed no checkpoint at step 20"
grep -q "world: 2 rank(s)" "driftlab-$job.out" || fail "job $job did not run 2 ranks"
echo "job $job: checkpoint step 20"

echo "== sbatch again with --steps=40: resumes from step 20"
job=$(submit train_srun.sbatch 40)
grep -q "resumed from .*step_00000020" "driftlab-$job.out" || fail "job $job did not resume from step 20"
[ -f "$work/run1/checkpoints/step_00000040/manifest.pb" ] || fail "job $job committed no checkpoint at step 40"
echo "job $job: resumed from step 20, checkpoint step 40"

echo "== sbatch train_mpirun.sbatch (mpirun in the allocation) with --steps=50"
job=$(submit train_mpirun.sbatch 50)
grep -q "resumed from .*step_00000040" "driftlab-$job.out" || fail "job $job did not resume from step 40"
[ -f "$work/run1/checkpoints/step_00000050/manifest.pb" ] || fail "job $job committed no checkpoint at step 50"
echo "job $job: resumed from step 40, checkpoint step 50"
echo "== SIGUSR1 (what --signal=USR1@120 sends before the time limit): checkpoint, exit 0, requeue, resume"
job=$(sbatch --parsable --ntasks=2 --time=00:10:00 "$src/slurm/train_srun.sbatch" "${flags[@]}" --run_dir="$work/run2" --steps=1000000)
out="driftlab-$job.out"
# wait_for CONDITION SECONDS: polls every 50 ms (a short job can end between coarser polls).
wait_for() { local t=0; until eval "$1"; do sleep 0.05; t=$((t + 1)); [ $t -lt $(($2 * 20)) ] || return 1; done; }
wait_for "grep -q 'step 100/' '$out' 2>/dev/null" 120 || fail "job $job did not reach step 100"
scancel --signal=USR1 "$job"
wait_for "grep -q 'requeueing job $job' '$out'" 60 || fail "job $job was not requeued after SIGUSR1"
grep -q "stopped by signal 10 after step" "$out" || fail "job $job: the trainer did not stop on SIGUSR1"
wait_for "grep -q 'resumed from' '$out'" 180 || fail "requeued job $job did not resume"
scancel "$job"
echo "job $job: $(grep -o 'stopped by signal 10 after step [0-9]*' "$out" | head -1), requeued, $(grep -o 'resumed from [^ ]*' "$out" | head -1)"

echo "== sampling job (slurm/sample_srun.sbatch, 2 tasks): SIGUSR1 mid-job, requeue, resume; equals an uninterrupted run"
# Long enough (2000 units of 100 samples, a few seconds per rank) that the signal, sent as soon as
# the first units are committed, lands mid-job: 200 units of 300 samples
# took 0.24 s here, shorter than one poll of the old 0.5 s loop.
sflags=(--checkpoint="$work/run1" --num_samples=200000 --shard_size=100 --batch_size=4)
job=$(sbatch --parsable --ntasks=2 --time=00:10:00 "$src/slurm/sample_srun.sbatch" "${sflags[@]}" --out="$work/samp")
out="driftlab-sample-$job.out"
wait_for "[ \$(ls '$work/samp' 2>/dev/null | grep -c '\\.h5\$') -ge 4 ]" 120 || { cat "$out"; fail "sampling job $job committed no units"; }
scancel --signal=USR1 "$job"
wait_for "grep -q 'requeueing job $job' '$out'" 60 || { cat "$out"; fail "sampling job $job was not requeued after SIGUSR1"; }
grep -q "stopped by signal 10 after committing" "$out" || fail "sampling job $job: no stop message"
wait_for "grep -q 'wrote 200000 samples' '$out'" 240 || { cat "$out"; fail "requeued sampling job $job did not finish"; }
grep -q "resuming: [0-9]* unit(s) committed" "$out" || fail "requeued sampling job $job did not resume"
mpirun --allow-run-as-root -np 1 "$bin/drift_sample" "${sflags[@]}" --out="$work/samp-ref" --sample_threads=1 >/dev/null 2>&1 \
  || fail "uninterrupted sampling run"
for f in "$work"/samp-ref/shard-*.h5; do cmp -s "$f" "$work/samp/$(basename "$f")" || fail "requeued sampling differs in $(basename "$f")"; done
echo "sampling job $job: $(grep -o 'resuming: [0-9]* unit(s) committed' "$out" | head -1) after SIGUSR1; identical to an uninterrupted run"
echo "all Slurm checks passed"

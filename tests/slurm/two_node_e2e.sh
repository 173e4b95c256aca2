#!/usr/bin/env bash
# A real two-node cluster on this machine (issue 17), started and stopped by this script. Each
# "host" is a set of Linux namespaces held open by one small process: its own network stack
# (one end of a veth pair, 10.217.17.1 or .2, nothing else but loopback), its own hostname
# (node1, node2), its own /etc/hosts naming both, and private /tmp, /dev/shm and /run. The file
# system is otherwise shared, as on a cluster with a shared home. node1 runs slurmctld; each
# node runs its own slurmd (NodeName node1 / node2) and sshd (for OpenMPI's launcher); munge is
# a private munged on node1 whose socket lives in the test's folder. Then:
#  1. sbatch -N 2 --ntasks-per-node=2 slurm/train_srun.sbatch: 4 ranks over srun + PMIx, MPI over
#     TCP between the namespaces; local ranks 0,1 on each node; parameters equal a 1-rank run;
#  2. launch/hostfile.sh with a hostfile naming node1 and node2 (mpirun over ssh): the same;
#  3. partition: node2's link goes down in the middle of a job; the job ends within
#     --collective_timeout + 15 s with the watchdog's line; with the link back, a resubmission
#     resumes from the newest complete checkpoint and reaches the same final step.
# Everything it makes (namespaces, the veth pair, daemons, files) is removed on exit; no
# interface or route is added outside the namespaces, so no traffic leaves them.
# Needs root. Exit 77 (ctest: skipped) when a tool is missing or namespaces cannot be made.
# Usage: two_node_e2e.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
for tool in slurmctld slurmd munged munge sbatch srun sshd ssh ssh-keygen mpirun unshare nsenter ip; do
  command -v "$tool" >/dev/null ||
    { echo "SKIP: $tool not installed (scripts/install-deps.sh installs Slurm, munge, OpenMPI, openssh-server)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: namespaces, mounts and daemons need root"; exit 77; }
unshare --net --uts --mount true 2>/dev/null || { echo "SKIP: cannot create network/UTS/mount namespaces here"; exit 77; }

t_start=$(date +%s)
timeout_s=5            # --collective_timeout of the partition run
net=10.217.17          # the two hosts' addresses: $net.1 (node1), $net.2 (node2); exist only in the namespaces
ifname=dl0             # the veth end inside each namespace
nodes=(node1 node2)
# The test's folder is on the shared file system, not in /tmp: each node mounts its own /tmp.
work=$(mktemp -d "${DRIFTLAB_TWO_NODE_TMP:-/var/tmp}/driftlab_two_node.XXXXXX")
chmod 755 "$work"
mkdir -p "$work"/{state,spool/node1,spool/node2,run,log,ssh,munge}
# Each host has a private /tmp: binaries and templates under /tmp (a clone there, as CI makes)
# are copied into the shared work folder first.
case "$bin/" in /tmp/*)
  mkdir -p "$work/stage/bin" && cp "$bin"/drift_train "$bin"/drift_ckpt "$bin"/drift_data "$work/stage/bin/"
  bin="$work/stage/bin" ;;
esac
case "$src/" in /tmp/*)
  mkdir -p "$work/stage/src" && cp -r "$src/slurm" "$src/launch" "$work/stage/src/"
  src="$work/stage/src" ;;
esac
declare -A holder=()

now_ms() { date +%s%3N; }
# PIDs of the processes in a node's network namespace, its holder excluded (the namespace is ours,
# so is every process in it).
ns_pids() {
  local h=${holder[$1]:-} want d
  [ -n "$h" ] && want=$(readlink "/proc/$h/ns/net" 2>/dev/null) || return 0
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" != "$h" ] && [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$want" ] && echo "${d#/proc/}"
  done
  return 0
}
cleanup() {
  local n p
  set +e
  for n in "${nodes[@]}"; do for p in $(ns_pids "$n"); do kill -TERM "$p" 2>/dev/null; done; done
  sleep 1
  for n in "${nodes[@]}"; do
    for p in $(ns_pids "$n"); do kill -KILL "$p" 2>/dev/null; done
    # the holder is the namespaces' last process: once it is gone they and the veth pair are freed
    [ -n "${holder[$n]:-}" ] && kill -KILL "${holder[$n]}" 2>/dev/null
  done
  [ -n "${DRIFTLAB_KEEP_WORK:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.out "$work"/*.log "$work"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; } >&2; done
  exit 1
}
# on NODE CMD...: runs CMD on that node (in its namespaces), in the current folder.
on() { local n=$1; shift; nsenter -t "${holder[$n]}" -n -u -m --wd="$PWD" -- "$@"; }
wait_for() { local t=0; until eval "$1"; do sleep 0.2; t=$((t + 1)); [ $t -lt $(($2 * 5)) ] || return 1; done; }

# --- the hosts ------------------------------------------------------------------------------
{ echo "127.0.0.1 localhost"; echo "$net.1 node1"; echo "$net.2 node2"; } > "$work/hosts"
# The holder: sets the hostname, mounts the node's private files, then waits for this script.
# Should the script be killed without its cleanup, the holder ends what is left on its node
# (every daemon of the test runs on a node) and removes the folder.
holder_body='hostname "$1"
mount --bind "$2/hosts" /etc/hosts
for d in /tmp /dev/shm /run; do mount -t tmpfs -o mode=1777,size=256m "driftlab-$1" "$d"; done
chmod 755 /run && mkdir -m 755 /run/sshd
ip link set lo up
: > "$2/run/$1.ready"
while kill -0 "$3" 2>/dev/null; do sleep 1; done
me=$(readlink /proc/$$/ns/net)
for d in /proc/[0-9]*; do [ "${d#/proc/}" != $$ ] && [ "$(readlink "$d/ns/net")" = "$me" ] && kill -9 "${d#/proc/}"; done 2>/dev/null
[ -n "$4" ] || rm -rf "$2"'
for n in "${nodes[@]}"; do
  unshare --net --uts --mount --propagation private -- bash -c "$holder_body" "holder-$n" "$n" "$work" $$ "${DRIFTLAB_KEEP_WORK:-}" \
    </dev/null >"$work/log/holder-$n.log" 2>&1 &
  holder[$n]=$!
  disown
done
wait_for "[ -f '$work/run/node1.ready' ] && [ -f '$work/run/node2.ready' ]" 10 || fail "the node namespaces did not come up"
# One veth pair, created straight inside the two namespaces (never visible in this one).
ip link add "$ifname" netns "${holder[node1]}" type veth peer name "$ifname" netns "${holder[node2]}" ||
  { echo "SKIP: cannot create a veth pair (no veth support in this kernel?)"; exit 77; }
for i in 1 2; do
  on "node$i" ip addr add "$net.$i/24" dev "$ifname"
  on "node$i" ip link set "$ifname" up
done
[ "$(on node1 hostname)" = node1 ] && [ "$(on node2 hostname)" = node2 ] || fail "hostnames not set"
! on node1 ip route | grep -q default || fail "node1 has a default route"
! ip link show "$ifname" >/dev/null 2>&1 || fail "$ifname is visible outside the namespaces"
echo "hosts: node1 ($net.1) and node2 ($net.2): network, UTS and mount namespaces joined by a veth pair"

# --- munge: a private daemon on node1, its socket (reached from both nodes through the shared
# file system) and key in the test's folder ----------------------------------------------------
chown munge:munge "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$work/munge/munge.key"
chmod 400 "$work/munge/munge.key"
msock="$work/munge/munge.sock"
on node1 runuser -u munge -- munged --key-file="$work/munge/munge.key" --socket="$msock" --pid-file="$work/munge/munged.pid" \
  --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed" || fail "munged did not start"
munge -S "$msock" -n | unmunge -S "$msock" >/dev/null || fail "munge does not work"

# --- sshd on each node, for mpirun's launcher ----------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/id"
cp "$work/ssh/id.pub" "$work/ssh/authorized_keys"
cat > "$work/ssh/config" <<CONF
IdentityFile $work/ssh/id
IdentitiesOnly yes
StrictHostKeyChecking no
UserKnownHostsFile /dev/null
BatchMode yes
LogLevel ERROR
CONF
printf '#!/bin/sh\nexec ssh -F %s "$@"\n' "$work/ssh/config" > "$work/ssh/ssh"
chmod 755 "$work/ssh/ssh"
for i in 1 2; do
  cat > "$work/ssh/sshd_config.node$i" <<CONF
ListenAddress $net.$i
HostKey $work/ssh/host_key
PidFile $work/run/sshd-node$i.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
CONF
  on "node$i" "$(command -v sshd)" -f "$work/ssh/sshd_config.node$i" -E "$work/log/sshd-node$i.log" || fail "sshd on node$i"
done
for n in node1 node2; do
  wait_for "on node1 '$work/ssh/ssh' $n hostname 2>/dev/null | grep -qx $n" 10 || fail "ssh from node1 to $n does not work"
done
echo "sshd: node1 and node2 accept the test's key"

# --- Slurm: slurmctld on node1, one slurmd per node ---------------------------------------------
export SLURM_CONF="$work/slurm.conf"
cpus=$(nproc); [ "$cpus" -ge 2 ] || cpus=2
cat > "$SLURM_CONF" <<CONF
ClusterName=driftlab2n
SlurmctldHost=node1($net.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$msock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# srun waits KillWait + 2 s for the tasks of a node it cannot reach once a step is aborted (the
# default 30 s would dominate the partition test); pings every SlurmdTimeout / 3 s, so a node
# whose link comes back is seen soon.
KillWait=5
SlurmdTimeout=30
SlurmdParameters=config_overrides
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd-%n.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd-%n.log
SlurmctldPort=16817
SlurmdPort=16818
NodeName=node1 NodeAddr=$net.1 CPUs=$cpus State=UNKNOWN
NodeName=node2 NodeAddr=$net.2 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
on node1 slurmctld || fail "slurmctld did not start"
on node1 slurmd -N node1 || fail "slurmd on node1 did not start"
on node2 slurmd -N node2 || fail "slurmd on node2 did not start"
nodes_idle() { [ "$(on node1 sinfo -h -N -o '%N %T' 2>/dev/null | grep -Ec '^node[12] (idle|mixed)$')" -eq 2 ]; }
wait_for nodes_idle 60 || fail "the nodes did not become idle: $(on node1 sinfo -N 2>&1)"
echo "slurm: $(on node1 sinfo -h -N -o '%N %T' | tr '\n' ' ')"

# --- training ------------------------------------------------------------------------------------
"$bin/drift_data" toy checkerboard --out="$work/toy" --num=4000 --seed=3 --progress=false >/dev/null
flags=(--data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=48 --pos_per_class=40 --taus=0.05,0.2
       --lr=1e-2 --log_every=2 --image_every=0 --ckpt_every=3 --threads=1 --prefetch=1 --precision=fp32)
steps=6
# As train_e2e.sh: other world sizes reduce in another order; 1e-4 is 1% of one Adam step (fp32:
# bf16 rounds outputs, and its world sizes agree in the losses, not within 1e-4 in the weights).
tol=1e-4
ck() { echo "$work/$1/checkpoints/step_$(printf %08d "$2")"; }
export DRIFTLAB_BIN="$bin"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# 4 ranks on this machine's cores: waiting ranks yield the CPU instead of spinning (mpirun sets this
# itself when it oversubscribes; srun and a hostfile with enough slots do not know)
export OMPI_MCA_mpi_yield_when_idle=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$work"
# Ranks 0,1 on node1 and 2,3 on node2, each pair numbered 0,1 on its node.
check_topology() { # check_topology LAUNCHER LOG... : the trainer's topology lines of a 4-rank, 2-node run
  local r launcher=$1
  shift
  for r in 0 1 2 3; do
    # grep reads the files itself: `cat | grep -q` fails under pipefail when grep exits at the
    # first match while cat still writes (SIGPIPE), which made this check flaky.
    grep -q "topology: rank $r/4, local $((r % 2))/2, nodes 2, launcher $launcher" "$@" ||
      { grep -H "topology:" "$@" >&2; fail "rank $r: no 'topology: rank $r/4, local $((r % 2))/2, nodes 2, launcher $launcher' line"; }
  done
}
# bytes node2 received on its end of the link (/proc/net/dev shows the reader's network namespace)
veth_bytes() { on node2 awk -v i="$ifname:" '$1 == i {print $2}' /proc/net/dev; }
# same_as_one_rank RUN WHAT: RUN (4 ranks on 2 nodes) committed step $steps and its parameters
# equal those of the 1-rank run w1; prints the comparison's last line.
same_as_one_rank() {
  [ -f "$(ck "$1" $steps)/manifest.pb" ] || fail "$2 committed no checkpoint at step $steps"
  "$bin/drift_ckpt" compare "$(ck w1 $steps)" "$(ck "$1" $steps)" --tol=$tol --prefix=model/ >"$work/cmp-$1.txt" 2>&1 ||
    { cat "$work/cmp-$1.txt" >&2; fail "4 ranks on 2 nodes ($2) differ from 1 rank"; }
  tail -1 "$work/cmp-$1.txt"
}

# sbatch on node1 (the cluster's only way in), 2 nodes x 2 tasks; prints the job id.
submit() { on node1 sbatch --parsable -N 2 --ntasks-per-node=2 --time=00:10:00 "$@"; }
# squeue's state of a job; QUERY_FAILED when the controller did not answer
job_state() { local s; s=$(on node1 squeue -h -j "$1" -o %T 2>/dev/null) || { echo QUERY_FAILED; return; }; echo "${s:-GONE}"; }
# The batch script has ended (COMPLETING: Slurm is still cleaning up on a node).
ended() { case "$(job_state "$1")" in RUNNING|PENDING|CONFIGURING|QUERY_FAILED) return 1 ;; esac; }
exit_code() { on node1 scontrol show job "$1" | grep -o 'ExitCode=[0-9:]*'; }
# run_job SBATCH_ARGS...: submits, waits for the end (polled: sbatch --wait polls every 32 s),
# requires exit 0; prints the job id.
run_job() {
  local job
  job=$(submit "$@") || fail "sbatch $*"
  wait_for "ended $job" 300 || fail "job $job did not end within 300 s ($(job_state "$job"))"
  [ "$(exit_code "$job")" = ExitCode=0:0 ] || fail "job $job failed ($(exit_code "$job"))"
  echo "$job"
}

echo "== 1 rank (reference), $steps steps"
mpirun -np 1 --bind-to none "$bin/drift_train" "${flags[@]}" --run_dir="$work/w1" --steps=$steps >"$work/w1.log" 2>&1 ||
  fail "1-rank reference run"

echo "== sbatch -N 2 --ntasks-per-node=2 slurm/train_srun.sbatch (srun --mpi=pmix, 4 ranks over 2 nodes)"
b0=$(veth_bytes)
job=$(run_job "$src/slurm/train_srun.sbatch" "${flags[@]}" --run_dir="$work/s4" --steps=$steps --log_all_ranks --v=1) ||
  exit 1
out="driftlab-$job.out"
grep -q "world: 4 rank(s)" "$out" || fail "job $job did not run 4 ranks"
grep -Eq "on node\[1-2\], 4 tasks" "$out" || fail "job $job did not run on node[1-2]"
check_topology "srun (pmix)" "$out"
cmp_line=$(same_as_one_rank s4 "sbatch job $job")
echo "job $job: 4 ranks on node[1-2], local ranks 0,1 per node, $(( $(veth_bytes) - b0 )) bytes over the veth;" \
  "parameters vs 1 rank: $cmp_line"

echo "== launch/hostfile.sh -f hostfile (node1, node2; mpirun over ssh) -n 4"
printf 'node1 slots=2\nnode2 slots=2\n' > "$work/hostfile"
b0=$(veth_bytes)
on node1 env OMPI_MCA_plm_rsh_agent="$work/ssh/ssh" bash "$src/launch/hostfile.sh" -f "$work/hostfile" -n 4 \
  --logs "$work/hf-logs" -- "$bin/drift_train" "${flags[@]}" --run_dir="$work/h4" --steps=$steps --log_all_ranks --v=1 \
  >"$work/hostfile.log" 2>&1 || fail "launch/hostfile.sh -n 4"
check_topology mpirun "$work"/hf-logs/1/rank.*/stderr
cmp_line=$(same_as_one_rank h4 "hostfile run")
echo "hostfile: 4 ranks on node1,node2, local ranks 0,1 per node, $(( $(veth_bytes) - b0 )) bytes over the veth;" \
  "parameters vs 1 rank: $cmp_line"

echo "== partition: node2's link goes down in the middle of a job (--collective_timeout=$timeout_s)"
# The newest complete checkpoint, as the trainer's resume sees it.
newest() { "$bin/drift_ckpt" list "$work/$1" 2>/dev/null | awk '$1 == "complete" {p = $2} END {print p}' |
           sed -n 's/.*step_0*\([0-9][0-9]*\)$/\1/p' | grep . || echo 0; }
# The same from the manifests alone (the manifest is written last), cheap enough to poll.
newest_manifest() { local m n=0; for m in "$work/$1"/checkpoints/step_*/manifest.pb; do
  [ -f "$m" ] && n=$(basename "$(dirname "$m")" | sed 's/^step_0*//'); done; echo "${n:-0}"; }
ranks_on() { local p; for p in $(ns_pids "$1"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = drift_train ] && echo "$p"; done; return 0; }
psteps=1500
pflags=(--data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=48 --pos_per_class=40 --taus=0.05,0.2
        --lr=1e-2 --log_every=20 --image_every=0 --ckpt_every=20 --keep_last=2 --threads=1 --prefetch=1
        --collective_timeout="$timeout_s" --run_dir="$work/p4" --steps="$psteps")
# --no-requeue: were node2 declared dead, Slurm would requeue the job itself (the template asks
# for --requeue); here the resubmission is the test's.
job=$(submit --no-requeue "$src/slurm/train_srun.sbatch" "${pflags[@]}") || fail "sbatch (partition job)"
out="driftlab-$job.out"
wait_for "[ \$(newest_manifest p4) -ge 60 ]" 120 || fail "job $job: no checkpoint at step 60"
[ "$(job_state "$job")" = RUNNING ] || fail "job $job is not running: $(job_state "$job")"
at=$(newest_manifest p4)
t0=$(now_ms)
on node2 ip link set "$ifname" down
wait_for "ended $job" 120 || fail "job $job still running 120 s after the partition"
took_ms=$(( $(now_ms) - t0 ))
echo "link down after checkpoint $at; job $job ended $took_ms ms later ($(job_state "$job"), $(exit_code "$job"))"
line=$(grep -m1 -o "\[rank [0-9]*/4\] error: collective watchdog: .*" "$out") || fail "job $job: no watchdog line"
echo "$line"
# Ranks on node1 report (node2's cannot reach srun). What they say of their peers depends on where
# the link cut the collective: all inside it, or some already past it or still in the one before.
echo "$line" | grep -Eq "^\[rank [01]/4\] error: collective watchdog: [a-z_()]+ \(collective #[0-9]+ of this rank\) at step [0-9]+ on rank [01] did not complete within $timeout_s s .*; ending the job$" ||
  fail "job $job: the watchdog line does not name the collective, the step and a rank on node1"
# A cut link is a lost message, never a program issuing different collectives on its ranks.
if echo "$line" | grep -q "different collectives"; then fail "job $job: the watchdog blames different collectives for a cut link"; fi
[ "$took_ms" -le $(( (timeout_s + 15) * 1000 )) ] || fail "job $job took $took_ms ms to end (limit $((timeout_s + 15)) s)"
[ "$(exit_code "$job")" != ExitCode=0:0 ] || fail "job $job exited 0"
# node2's ranks, cut off from srun and from their peers, end themselves (their own watchdog)
wait_for "[ -z \"\$(ranks_on node2)\" ]" 15 || fail "ranks still alive on node2: $(ranks_on node2)"
[ -z "$(ranks_on node1)" ] || fail "ranks still alive on node1: $(ranks_on node1)"
last=$(newest p4)
[ "$last" -ge "$at" ] || fail "newest complete checkpoint $last is older than $at"
"$bin/drift_ckpt" inspect "$(ck p4 "$last")" --verify >/dev/null || fail "checkpoint $last does not verify"
echo "newest complete checkpoint: step $last (verified); no rank left on either node"

echo "== link back up; the same job again (--resume=auto)"
on node2 ip link set "$ifname" up
t2=$(now_ms)
# Slurm frees node2 once it hears back from it (its periodic retry), then starts the job.
job2=$(run_job --no-requeue "$src/slurm/train_srun.sbatch" "${pflags[@]}") || exit 1
out2="driftlab-$job2.out"
grep -q "resumed from .*step_$(printf %08d "$last")" "$out2" || fail "job $job2 did not resume from step $last"
grep -q "training finished" "$out2" && [ -f "$(ck p4 $psteps)/manifest.pb" ] || fail "job $job2 did not reach step $psteps"
"$bin/drift_ckpt" inspect "$(ck p4 $psteps)" --verify >/dev/null || fail "checkpoint $psteps does not verify"
echo "job $job2: resumed from step $last, finished at step $psteps ($(( ($(now_ms) - t2) / 1000 )) s after the link came back," \
  "$(grep -o 'training finished: .*' "$out2"))"
echo "all two-node checks passed in $(( $(date +%s) - t_start )) s"

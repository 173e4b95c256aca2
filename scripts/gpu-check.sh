#!/usr/bin/env bash
# The one prepared check for a GPU machine (issue 31): configure driftlab against the machine's
# PyTorch LibTorch and pip NCCL with the dependency bundle of scripts/gpu-bundle.sh, build only
# what the check needs, run the CUDA/NCCL parts, a short MNIST-sized training on cuda, and
# drift_sample --device=cuda; a log and one JSON summary go to OUT_DIR. Meant to finish in 8 min.
#
#   scripts/gpu-check.sh out/gpu-check                 # on the GPU machine (bundle in out/gpu-bundle)
#   scripts/gpu-check.sh --dry-run /var/tmp/gpu-dry    # here: every part that needs no GPU
set -uo pipefail

me=gpu-check
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
Usage: $0 [options] OUT_DIR

Phases (each with its own time limit; a failed phase does not stop the independent ones after it;
each ends as pass, fail or skip in OUT_DIR/summary.json; everything they print: OUT_DIR/check.log):
  detect       nvidia-smi -L and torch.cuda (python3): the GPUs, driver, CUDA, LibTorch's C++ ABI.
               Without a GPU the script stops here, exit status 3, unless --dry-run.
  configure    CMake (Ninja when present) into OUT_DIR/build: -DTorch_DIR from
               torch.utils.cmake_prefix_path, -DNCCL_ROOT from the nvidia-nccl-cu* Python package,
               -DWITH_CUDA=ON -DWITH_NCCL=ON; the bundle's env.sh sourced first.
  build        only drift_data drift_train drift_sample drift_ckpt test_comm test_drift comm_bench.
  nccl_raw     test_comm (world 1): the raw NCCL layer on device buffers (RawNccl.*); the NCCL backend as
               the trainer builds it and the MPI backend with CUDA tensors, every collective against
               closed forms (NcclBackend.*, MpiCuda.*); --device resolution (SelectDevice.*).
  nccl_comm    comm_bench --backend=nccl (world 1): NCCL all-reduce sweep and bucketed gradient sync
               through the tensor-level NCCL communicator, with the collective watchdog on (its
               CUDA-event completion path polled on every collective; no rank is stopped).
  mpi_world2   mpirun -np 2 comm_bench --backend=mpi: the bundle's relocated mpirun on this machine;
               then mpirun -np 2 test_comm MpiCuda.*: 2 ranks on one GPU, CUDA tensors through host memory.
  data         MNIST t10k from --mnist (IDX) or, when absent, a synthetic 28x28 10-class IDX set made
               with python3 (no numpy needed); drift_data convert-idx.
  train_cpu    drift_train --backend=mpi, 1 process: the CPU reference of the losses.
  train_nccl1  the same on cuda (--backend=nccl, 1 rank): samples/s, peak GPU memory (nvidia-smi,
               sampled every 0.2 s), loss against train_cpu: step 1 within 1% relative, the mean of
               the last 5 steps within 10%.
  train_mpi2   mpirun -np 2 drift_train --backend=mpi --device=cuda: 2 ranks on one GPU (NCCL refuses
               that), collectives through host memory: samples/s, peak GPU memory, the losses
               against train_cpu as for train_nccl1 (--dry-run: cpu).
  sample_cuda  drift_sample --device=cuda from train_nccl1's checkpoint, and --device=cpu from the
               same checkpoint; the npz images compared (numpy): at most 2 of 255 levels apart.
  field_cuda   test_drift --gtest_filter=DriftCuda.*: the drift field, its loss and gradient on CUDA
               tensors against the CPU (V within 1e-4, scale 1e-5, lambdas 1e-4 relative).
  watchdog_stop test_comm RawNcclDeath.* (world 1): an NCCL all-reduce held on the GPU (its stream
               blocked, as by a stopped peer) past a 1 s deadline: the watchdog's CUDA-event path
               prints the expiry line and its abort hook aborts the NCCL communicator.

Options:
  --dry-run         no GPU needed: runs configure (against whatever LibTorch CMake finds, or
                    --torch-dir), build, mpi_world2, data, train_cpu, train_mpi2 and sample on the
                    CPU; the GPU phases are 'skip'.
  --bundle DIR      the dependency bundle (default: out/gpu-bundle of the checkout; 'none': use the
                    machine's own libraries). DIR/env.sh is sourced.
  --torch-dir DIR   the folder of TorchConfig.cmake (default: python3 -c 'import torch;
                    print(torch.utils.cmake_prefix_path)' + /Torch; --dry-run without torch: CMake's
                    own search).
  --nccl-root DIR   folder with include/nccl.h and lib/libnccl.so* (default: the nvidia.nccl Python
                    package's folder).
  --mnist DIR       folder with t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (default
                    .cache/data/mnist of the checkout); missing files: the synthetic set.
  --steps N         training steps of each train phase (default 30).
  --jobs N          compile jobs (default: number of cores).
  --budget S        seconds for the whole check (default 480; --dry-run: 0, none); a phase gets at
                    most what is left, and one that would get under 10 s is skipped.
  --slow F          multiply every phase's own time limit by F (default 1; e.g. 10 for a dry run on
                    a 2-core machine, where the build alone takes 15 min).
  -h, --help        this text.

Exit status: 0 every phase passed or skipped, 1 a phase failed, 2 bad usage, 3 no GPU found.
EOF
}

out=""; dry_run=0; bundle="$repo/out/gpu-bundle"; torch_dir=""; nccl_root=""; mnist="$repo/.cache/data/mnist"
steps=30; jobs=$(nproc); budget=480; budget_set=0; slow=1
die() { echo "$me: error: $*" >&2; exit 2; }
need_arg() { [ "$#" -ge 2 ] && [ -n "${2+x}" ] || die "option $1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --bundle) need_arg "$@"; bundle="$2"; shift 2 ;;
    --torch-dir) need_arg "$@"; torch_dir="$2"; shift 2 ;;
    --nccl-root) need_arg "$@"; nccl_root="$2"; shift 2 ;;
    --mnist) need_arg "$@"; mnist="$2"; shift 2 ;;
    --steps) need_arg "$@"; steps="$2"; shift 2 ;;
    --jobs|-j) need_arg "$@"; jobs="$2"; shift 2 ;;
    --budget) need_arg "$@"; budget="$2"; budget_set=1; shift 2 ;;
    --slow) need_arg "$@"; slow="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$out" ] || die "one OUT_DIR expected, got '$out' and '$1'"; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || die "OUT_DIR missing (see --help)"
[[ "$steps" =~ ^[1-9][0-9]*$ ]] && [ "$steps" -ge 6 ] || die "--steps must be a number >= 6, not '$steps'"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$jobs'"
[[ "$budget" =~ ^[0-9]+$ ]] || die "--budget must be a number of seconds, not '$budget'"
[[ "$slow" =~ ^[1-9][0-9]*$ ]] || die "--slow must be a positive whole number, not '$slow'"
[ "$dry_run" -eq 0 ] || [ "$budget_set" -eq 1 ] || budget=0   # a dry run on a small CPU machine builds for long
if [ "$bundle" != none ]; then
  [ -f "$bundle/env.sh" ] || die "--bundle $bundle: no env.sh there (make it with scripts/gpu-bundle.sh $bundle, or --bundle none)"
  bundle=$(cd "$bundle" && pwd)
fi
[ -z "$torch_dir" ] || [ -f "$torch_dir/TorchConfig.cmake" ] || die "--torch-dir $torch_dir: no TorchConfig.cmake there"
[ -z "$nccl_root" ] || [ -f "$nccl_root/include/nccl.h" ] || die "--nccl-root $nccl_root: no include/nccl.h there"
mkdir -p "$out" || die "cannot make OUT_DIR $out"
out=$(cd "$out" && pwd)
log="$out/check.log"; summary="$out/summary.json"; bld="$out/build"; work="$out/work"
: > "$log"
t_start=$(date +%s); timed_out=""
say() { echo "$me: $*" | tee -a "$log"; }

# ---- phases and the summary ------------------------------------------------------------------
names=(); statuses=(); secs=(); details=(); numbers=()
cur=""; cur_t0=0; cur_nums=""
begin() { cur=$1; cur_t0=$(date +%s); cur_nums=""; say "---- phase $cur ($(date +%H:%M:%S))"; }
num() { local v=${2:-null}; cur_nums+="${cur_nums:+, }\"$1\": $v"; say "  $1 = $v"; }   # num KEY JSON-VALUE
json_str() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\n\t' '  '; }
end() {  # end STATUS DETAIL
  local t; t=$(( $(date +%s) - cur_t0 ))
  names+=("$cur"); statuses+=("$1"); secs+=("$t"); details+=("$2"); numbers+=("$cur_nums")
  say "phase $cur: $1 in $t s${2:+ ($2)}"
  write_summary
}
skip() { begin "$1"; end skip "$2"; }
write_summary() {
  local i
  {
    printf '{\n  "tool": "scripts/gpu-check.sh", "dry_run": %s, "started": "%s", "seconds": %d,\n' \
      "$([ "$dry_run" -eq 1 ] && echo true || echo false)" "$(date -u -d "@$t_start" +%FT%TZ)" $(( $(date +%s) - t_start ))
    printf '  "machine": {%s},\n  "phases": [\n' "$machine_json"
    for i in "${!names[@]}"; do
      printf '    {"name": "%s", "status": "%s", "seconds": %d, "detail": "%s", "numbers": {%s}}%s\n' \
        "${names[$i]}" "${statuses[$i]}" "${secs[$i]}" "$(json_str "${details[$i]}")" "${numbers[$i]}" \
        "$([ "$i" -lt $((${#names[@]} - 1)) ] && echo ,)"
    done
    printf '  ]\n}\n'
  } > "$summary.tmp" && mv "$summary.tmp" "$summary"
}
# limit WANTED: seconds a phase may run (WANTED, capped by what is left of --budget); 0: no time.
limit() {
  local want=$(( $1 * slow ))
  [ "$budget" -gt 0 ] || { echo "$want"; return; }
  local left=$(( budget - ($(date +%s) - t_start) ))
  if [ "$left" -lt 10 ]; then echo 0; elif [ "$left" -lt "$want" ]; then echo "$left"; else echo "$want"; fi
}
# run SECONDS LOGNAME CMD...: CMD under timeout, its output in OUT_DIR/LOGNAME.log and check.log.
run() {
  local t=$1 name=$2; shift 2
  [ "$t" -gt 0 ] || { say "  no time left (--budget) for: $*"; return 124; }
  echo "\$ $*" >> "$log"
  timeout -k 10 "$t" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  cat "$out/$name.log" >> "$log"
  timed_out=""
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { timed_out="timed out after $t s; "; say "  timed out after $t s: $*"; }
  return "$rc"
}

# ---- detect ----------------------------------------------------------------------------------
machine_json=""
begin detect
gpus=0; smi="nvidia-smi: not found"
if command -v nvidia-smi >/dev/null; then
  smi=$(timeout 20 nvidia-smi -L 2>&1); gpus=$(grep -c '^GPU [0-9]' <<< "$smi" || true)
  driver=$(timeout 20 nvidia-smi --query-gpu=driver_version,name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
  num driver "\"$(json_str "${driver:-?}")\""
fi
py="python3 (not found)"; torch_cuda="?"; torch_ver=""; torch_abi=""
if command -v python3 >/dev/null; then
  py_out=$(timeout 60 python3 -c 'import torch
print("version", torch.__version__); print("cuda", torch.version.cuda); print("available", torch.cuda.is_available())
print("count", torch.cuda.device_count()); print("abi", int(torch._C._GLIBCXX_USE_CXX11_ABI))
print("prefix", torch.utils.cmake_prefix_path)' 2>&1) && py="python3 torch $(awk '$1 == "version" {print $2}' <<< "$py_out")" ||
    py="python3: import torch failed: $(tail -n 1 <<< "$py_out" | cut -c1-120)"
  torch_ver=$(awk '$1 == "version" {print $2}' <<< "$py_out"); torch_cuda=$(awk '$1 == "available" {print $2}' <<< "$py_out")
  torch_abi=$(awk '$1 == "abi" {print $2}' <<< "$py_out")
  [ -n "$torch_dir" ] || { p=$(awk '$1 == "prefix" {print $2}' <<< "$py_out"); [ -z "$p" ] || [ ! -f "$p/Torch/TorchConfig.cmake" ] || torch_dir="$p/Torch"; }
  if [ -z "$nccl_root" ]; then
    p=$(timeout 30 python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
    [ -z "$p" ] || [ ! -f "$p/include/nccl.h" ] || nccl_root="$p"
  fi
fi
smi1=$(head -n 1 <<< "$smi")
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
num glibc "\"${glibc:-?}\""
[ -z "$glibc" ] || [ "$(printf '%s\n' 2.36 "$glibc" | sort -V | head -n 1)" = 2.36 ] ||
  say "  warning: glibc $glibc is older than the bundle's Debian 12 (2.36): its programs and libraries may not load"
machine_json="\"host\": \"$(hostname)\", \"cores\": $(nproc), \"gpus\": $gpus, \"torch\": \"$(json_str "${torch_ver:-none}")\", \"torch_cuda_available\": \"$torch_cuda\", \"torch_cxx11_abi\": \"${torch_abi:-?}\", \"bundle\": \"$(json_str "$bundle")\""
say "GPUs: $gpus ($smi1); torch: ${torch_ver:-none} (cuda available: $torch_cuda, C++11 ABI: ${torch_abi:-?}); Torch_DIR: ${torch_dir:-found by CMake}; NCCL: ${nccl_root:-not found}"
[ "$torch_abi" != 0 ] || say "  warning: this LibTorch uses the old C++ ABI (_GLIBCXX_USE_CXX11_ABI=0); the bundle's glog/gflags/protobuf use the new one, so linking will fail"
have_gpu=0
[ "$gpus" -gt 0 ] && [ "$torch_cuda" = True ] && have_gpu=1
if [ "$have_gpu" -eq 0 ]; then
  why="no GPU found: looked for 'nvidia-smi -L' ($smi1; $gpus GPU lines) and python3 torch.cuda.is_available() (${torch_cuda:-not run}; $py)"
  if [ "$dry_run" -eq 0 ]; then
    end fail "$why"
    echo "$me: error: $why. Run on a GPU machine, or with --dry-run for the parts that need none." >&2
    exit 3
  fi
  end skip "$why; --dry-run: GPU phases skipped"
else
  num gpus "$gpus"
  end pass ""
fi

[ "$bundle" = none ] || { . "$bundle/env.sh"; say "bundle: $bundle (env.sh sourced)"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl=self,vader,tcp

# ---- configure, build ------------------------------------------------------------------------
built=0
begin configure
args=(-S "$repo" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DDRIFTLAB_BUILD_BENCH=ON -DDRIFTLAB_BUILD_TESTS=ON)
command -v ninja >/dev/null && [ ! -f "$bld/CMakeCache.txt" ] && args+=(-G Ninja)
[ -z "$torch_dir" ] || args+=(-DTorch_DIR="$torch_dir")
if [ "$have_gpu" -eq 1 ]; then
  args+=(-DWITH_CUDA=ON -DWITH_NCCL=ON)
  [ -z "$nccl_root" ] || args+=(-DNCCL_ROOT="$nccl_root")
fi
t=$(limit 180)
if [ "$t" -eq 0 ]; then end skip "no time left"
elif run "$t" configure cmake "${args[@]}"; then
  sed -n '/driftlab .* configuration/,$p' "$out/configure.log" | sed 's/^-- *//' | grep -v '^$' | sed "s/^/$me:   /"
  end pass ""
  begin build
  t=$(limit 360)
  targets=(drift_data drift_train drift_sample drift_ckpt test_comm test_drift comm_bench)
  if [ "$t" -eq 0 ]; then end skip "no time left"
  elif run "$t" build cmake --build "$bld" -j"$jobs" --target "${targets[@]}"; then built=1; end pass "${targets[*]}"
  else end fail "${timed_out}see $out/build.log: $(grep -m1 -E 'error' "$out/build.log" | cut -c1-200)"; fi
else
  end fail "${timed_out}see $out/configure.log: $(grep -m1 -A2 'CMake Error' "$out/configure.log" | tr '\n' ' ' | cut -c1-300)"
fi
B="$bld/bin"

needs() {  # needs PHASE GPU(0/1): 0 when the phase can run, else records its skip
  if [ "$built" -eq 0 ]; then skip "$1" "the build failed or did not run"; return 1; fi
  if [ "$2" -eq 1 ] && [ "$have_gpu" -eq 0 ]; then skip "$1" "needs a GPU (--dry-run)"; return 1; fi
  return 0
}
gpu_mem_start() {  # samples the GPU's used memory every 0.2 s into OUT_DIR/$1.mem
  mem_pid=""
  [ "$have_gpu" -eq 1 ] || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/$1.mem" 2>/dev/null &
  mem_pid=$!
}
gpu_mem_stop() {  # prints the peak in MiB over the run, less the use before it
  [ -n "$mem_pid" ] || { echo null; return; }
  kill "$mem_pid" 2>/dev/null; wait "$mem_pid" 2>/dev/null
  sort -n "$out/$1.mem" | awk 'NR == 1 {lo = $1} {hi = $1} END {print (NR ? hi - lo : "null")}'
}

# ---- NCCL and MPI ----------------------------------------------------------------------------
# gtest_phase PHASE BINARY FILTER WHAT: one GPU phase of GoogleTest cases; a skipped case counts as
# a failure (on a GPU machine every selected case must run).
gtest_phase() {
  needs "$1" 1 || return 0
  begin "$1"
  if run "$(limit 60)" "$1" "$B/$2" --gtest_filter="$3"; then
    if grep -q '\[  SKIPPED \]' "$out/$1.log"; then end fail "a case skipped: $(grep -m1 -i 'needs' "$out/$1.log")"
    else end pass "$4"; fi
  else end fail "${timed_out}see $out/$1.log"; fi
}
gtest_phase nccl_raw test_comm 'RawNccl.*:NcclBackend.*:MpiCuda.*:SelectDevice.*' \
  "world 1: raw NCCL on device buffers; the NCCL backend (make_communicator) and the MPI backend with CUDA tensors, every collective against closed forms"
if needs nccl_comm 1; then
  begin nccl_comm
  if run "$(limit 90)" nccl_comm "$B/comm_bench" --backend=nccl --max_bytes=$((64 << 20)) --trials=3 --sync_iters=5 --collective_timeout=60; then
    bw=$(grep -E '^ +[0-9]+ +[0-9]+ ' "$out/nccl_comm.log" | tail -n 1 | awk '{print $1, $4}')
    num allreduce_bytes "${bw% *}"; num allreduce_algbw_GBps "${bw#* }"
    num grad_sync_mlp_bucketed_ms "$(grep -m1 -A3 'gradient sync, MLP' "$out/nccl_comm.log" | sed -n 's/.*all started at once : *\([0-9.]*\) ms.*/\1/p')"
    end pass "all-reduce sweep and gradient buckets over NCCL at world 1, watchdog on (output in $out/nccl_comm.log)"
  else end fail "${timed_out}see $out/nccl_comm.log"; fi
fi
if needs mpi_world2 0; then
  begin mpi_world2
  if run "$(limit 90)" mpi_world2 env CUDA_VISIBLE_DEVICES= mpirun -np 2 --bind-to none "$B/comm_bench" --backend=mpi \
      --max_bytes=$((4 << 20)) --bytes_per_trial=$((16 << 20)) --trials=2 --sync_iters=3 --small_tensors=256 --watchdog_iters=200 \
    && { [ "$have_gpu" -eq 0 ] || run "$(limit 60)" mpi_world2_cuda mpirun -np 2 --bind-to none "$B/test_comm" \
           --gtest_filter='MpiCuda.*:Collectives.*:SelectDevice.*'; }; then
    if [ "$have_gpu" -eq 1 ] && grep -q '\[  SKIPPED \]' "$out/mpi_world2_cuda.log"; then end fail "MpiCuda skipped at 2 ranks"
    elif [ "$have_gpu" -eq 1 ]; then end pass "the bundle's mpirun, 2 ranks: MPI backend on CPU tensors, and 2 ranks on one GPU with CUDA tensors through host memory"
    else end pass "the bundle's mpirun, 2 ranks, MPI backend (CPU tensors; --dry-run)"; fi
  else end fail "${timed_out}see $out/mpi_world2.log and (GPU) $out/mpi_world2_cuda.log"; fi
fi
gtest_phase field_cuda test_drift 'DriftCuda.*' \
  "DriftCuda.FieldOnCudaEqualsTheCpuField: field, loss and gradient on CUDA equal the CPU's"
gtest_phase watchdog_stop test_comm 'RawNcclDeath.*' \
  "an NCCL all-reduce held on the GPU past a 1 s deadline: the CUDA-event path names it, the abort hook aborts NCCL"

# ---- data ------------------------------------------------------------------------------------
data_ok=0
if needs data 0; then
  begin data
  rm -rf "$work"; mkdir -p "$work"   # no run folder of an earlier check is resumed
  imgs="$mnist/t10k-images-idx3-ubyte"; labs="$mnist/t10k-labels-idx1-ubyte"
  src=mnist
  if [ ! -s "$imgs" ] || [ ! -s "$labs" ]; then
    src=synthetic; imgs="$work/synth-images-idx3-ubyte"; labs="$work/synth-labels-idx1-ubyte"
    run 120 synth python3 - "$imgs" "$labs" <<'EOF'
# 4000 images 28x28 of 10 classes: class k is a bar through the centre at angle 18k degrees, with
# random width, length, offset and noise; written as MNIST-style IDX (uint8, big-endian header).
# Plain Python (no numpy): a few seconds.
import math, random, struct, sys
rng = random.Random(0)
n = 4000
labels = bytes(i % 10 for i in range(n))
pixels = bytearray()
for i in range(n):
    a = math.radians(18 * labels[i]) + rng.gauss(0, 0.05)
    c, s = math.cos(a), math.sin(a)
    ox, oy = rng.gauss(0, 1.5), rng.gauss(0, 1.5)
    half, w = rng.uniform(7, 11), rng.uniform(1.2, 2.2)
    for yy in range(28):
        y = yy - 13.5
        for xx in range(28):
            x = xx - 13.5
            along = x * c + y * s - ox
            across = -x * s + y * c - oy
            v = (math.exp(-(across / w) ** 2) if abs(along) < half else 0.0) + rng.gauss(0, 0.03)
            pixels.append(min(255, max(0, int(v * 255))))
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">IIII", 2051, n, 28, 28)); f.write(pixels)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack(">II", 2049, n)); f.write(labels)
EOF
  fi
  if [ -s "$imgs" ] && run "$(limit 60)" data "$B/drift_data" convert-idx "$imgs" "$labs" --out="$work/data" --force --progress=false; then
    data_ok=1; num source "\"$src\""; end pass "$src -> $work/data"
  else end fail "no MNIST in $mnist and the synthetic set failed (see $out/synth.log, $out/data.log)"; fi
fi

# ---- training --------------------------------------------------------------------------------
# configs/mnist.flags (conv generator, every feature key, CFG) with a random-init ResNet encoder
# (no pretrained file on the machine), one checkpoint at the end, a metrics row every step.
train_flags=(--flagfile=configs/mnist.flags --data="$work/data" --encoder=resnet --steps="$steps" --log_every=1
             --image_every=0 --ckpt_every="$steps" --warmup_steps=0 --collective_timeout=120)
"$B/drift_train" --help 2>&1 | grep -q -- '-precision' && train_flags+=(--precision=fp32)   # the CPU reference is fp32
losses() { sed -n 's/.*"loss": \([-0-9.e+]*\).*/\1/p' "$1/metrics.jsonl" 2>/dev/null; }
rate() {   # mean samples/s over the rows after the first 5 (warm-up)
  sed -n 's/.*"samples_per_s": \([-0-9.e+]*\).*/\1/p' "$1/metrics.jsonl" 2>/dev/null | awk 'NR > 5 {s += $1; n++} END {printf "%.1f", n ? s / n : 0}'
}
train() {  # train PHASE SECONDS LAUNCH... -- FLAGS...
  local phase=$1 t=$2; shift 2
  (cd "$repo" && run "$t" "$phase" "$@" "${train_flags[@]}" --run_dir="$work/$phase")
}
# versus_cpu PHASE: records PHASE's first loss and mean of the last 5, and their relative
# differences from train_cpu's; the same weights and data (the global batch does not depend on the
# world size), so step 1 differs only by reduction order: within 1%, the last 5 steps within 10%.
# Sets vs_cpu to a sentence; status 0 within both tolerances.
versus_cpu() {
  local g1 gl c1 cl r1 rl
  g1=$(losses "$work/$1" | head -n 1); gl=$(losses "$work/$1" | tail -n 5 | awk '{s += $1} END {print s / NR}')
  num loss_first "$g1"; num loss_last5_mean "$gl"
  c1=$(losses "$work/train_cpu" | head -n 1); cl=$(losses "$work/train_cpu" | tail -n 5 | awk '{s += $1} END {print s / NR}')
  r1=$(awk -v a="$g1" -v b="$c1" 'BEGIN {d = a - b; if (d < 0) d = -d; printf "%.5f", d / (b < 0 ? -b : b)}')
  rl=$(awk -v a="$gl" -v b="$cl" 'BEGIN {d = a - b; if (d < 0) d = -d; printf "%.5f", d / (b < 0 ? -b : b)}')
  num loss_first_rel_diff_vs_cpu "$r1"; num loss_last5_rel_diff_vs_cpu "$rl"
  if awk -v a="$r1" -v b="$rl" 'BEGIN {exit !(a <= 0.01 && b <= 0.10)}'; then
    vs_cpu="losses within 1% (step 1: $r1) and 10% (last 5: $rl) of the CPU run"; return 0
  fi
  vs_cpu="losses differ from the CPU run: step 1 by $r1, last 5 by $rl (tolerance 0.01, 0.10)"; return 1
}
cpu_ok=0
if [ "$data_ok" -eq 0 ]; then skip train_cpu "no data"
elif needs train_cpu 0; then
  begin train_cpu
  if train train_cpu "$(limit 150)" env CUDA_VISIBLE_DEVICES= "$B/drift_train" --backend=mpi; then
    cpu_ok=1; num samples_per_s "$(rate "$work/train_cpu")"; num loss_first "$(losses "$work/train_cpu" | head -n 1)"
    num loss_last "$(losses "$work/train_cpu" | tail -n 1)"; end pass "device cpu, 1 process"
  else end fail "${timed_out}see $out/train_cpu.log"; fi
fi
if [ "$data_ok" -eq 0 ]; then skip train_nccl1 "no data"
elif needs train_nccl1 1; then
  begin train_nccl1
  gpu_mem_start train_nccl1
  if train train_nccl1 "$(limit 120)" "$B/drift_train" --backend=nccl; then
    num peak_gpu_mem_mib "$(gpu_mem_stop train_nccl1)"
    num samples_per_s "$(rate "$work/train_nccl1")"
    if [ "$cpu_ok" -eq 1 ]; then
      if versus_cpu train_nccl1; then end pass "cuda, NCCL, 1 rank; $vs_cpu"; else end fail "$vs_cpu"; fi
    else end pass "cuda, NCCL, 1 rank; no CPU reference (train_cpu failed)"; fi
  else gpu_mem_stop train_nccl1 >/dev/null; end fail "${timed_out}see $out/train_nccl1.log"; fi
fi
if [ "$data_ok" -eq 0 ]; then skip train_mpi2 "no data"
elif needs train_mpi2 0; then
  begin train_mpi2
  device=cpu; [ "$have_gpu" -eq 1 ] && device=cuda
  gpu_mem_start train_mpi2
  if train train_mpi2 "$(limit 150)" mpirun -np 2 --bind-to none "$B/drift_train" --backend=mpi --device="$device"; then
    num peak_gpu_mem_mib "$(gpu_mem_stop train_mpi2)"
    num samples_per_s "$(rate "$work/train_mpi2")"
    dev=$(grep -m1 -oE 'world: .*' "$out/train_mpi2.log" | cut -c1-120)
    if [ "$cpu_ok" -eq 0 ]; then end pass "2 ranks over MPI on $device; no CPU reference (train_cpu failed) [$dev]"
    elif versus_cpu train_mpi2; then end pass "2 ranks over MPI on $device (one GPU shared; collectives through host memory); $vs_cpu [$dev]"
    else end fail "2 ranks over MPI on $device: $vs_cpu"; fi
  else gpu_mem_stop train_mpi2 >/dev/null; end fail "${timed_out}see $out/train_mpi2.log"; fi
fi

# ---- sampling --------------------------------------------------------------------------------
ckpt=""
for r in train_nccl1 train_cpu; do [ -d "$work/$r/checkpoints" ] && { ckpt="$work/$r"; break; }; done
if [ -z "$ckpt" ]; then skip sample_cuda "no checkpoint (the training phases failed or did not run)"
elif needs sample_cuda 0; then
  begin sample_cuda
  common=(--checkpoint="$ckpt" --num_samples=512 --classes=all --format=npz --force --picture_count=64)
  ok=1
  if [ "$have_gpu" -eq 1 ]; then
    t0=$(date +%s.%N)
    run "$(limit 60)" sample_cuda "$B/drift_sample" "${common[@]}" --device=cuda --out="$work/sample_cuda" || ok=0
    num cuda_seconds "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')"
  fi
  t0=$(date +%s.%N)
  run "$(limit 60)" sample_cpu "$B/drift_sample" "${common[@]}" --device=cpu --out="$work/sample_cpu" || ok=0
  num cpu_seconds "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')"
  if [ "$ok" -eq 0 ]; then end fail "${timed_out}see $out/sample_cuda.log, $out/sample_cpu.log"
  elif [ "$have_gpu" -eq 0 ]; then end pass "--device=cpu only (--dry-run); from $ckpt"
  else
    diff=$(python3 -c 'import sys, numpy as np
a = np.load(sys.argv[1] + "/samples.npz")["arr_0"].astype(int); b = np.load(sys.argv[2] + "/samples.npz")["arr_0"].astype(int)
print(np.abs(a - b).max() if a.shape == b.shape else "shape")' "$work/sample_cuda" "$work/sample_cpu" 2>&1 | tail -n 1)
    num max_level_diff_cuda_vs_cpu "\"$(json_str "$diff")\""
    if [[ "$diff" =~ ^[0-9]+$ ]] && [ "$diff" -le 2 ]; then end pass "--device=cuda and --device=cpu agree within 2 levels"
    else end fail "cuda and cpu samples differ: max level difference $diff (tolerance 2)"; fi
  fi
fi

# ---- result ----------------------------------------------------------------------------------
write_summary
failed=0; passed=0; skipped=0
for s in "${statuses[@]}"; do case "$s" in pass) passed=$((passed + 1)) ;; fail) failed=$((failed + 1)) ;; *) skipped=$((skipped + 1)) ;; esac; done
say "$passed passed, $failed failed, $skipped skipped in $(( $(date +%s) - t_start )) s; summary: $summary, log: $log"
[ "$failed" -eq 0 ]

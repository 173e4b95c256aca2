#!/usr/bin/env bash
# Offline sampling jobs (drift_sample), end to end:
#  1. the output is one valid sharded data set whose files are byte-identical for 1 and 3 ranks;
#  2. --classes=prior (the default) gives the training data's class frequencies;
#  3. a job killed with SIGKILL, or stopped with SIGTERM on 2 ranks, and started again with the
#     same flags ends with the same files as an uninterrupted run; a finished job is not redone;
#     other flags on an existing output are refused, naming each difference, and --force replaces;
#  4. png and npz outputs, read back by independent readers (Python: zlib for the PNG files,
#     numpy for the .npz, h5py for the shards), hold the same samples as the h5 output, and
#     drift_eval compare scores all three formats the same.
# Part 4 needs MNIST (.cache/data/mnist, fetched by scripts/install-deps.sh) and is skipped without it.
# Usage: sample_e2e.sh BIN_DIR PROJECT_DIR   (run by ctest)
set -euo pipefail
bin=$(cd "$1" && pwd)
root=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/driftlab_sample.XXXXXX)
trap 'pkill -KILL -f "$work/" 2>/dev/null || true; rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe  # the same for Open MPI 5 (PRRTE)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi() { local np=$1; shift; mpirun -np "$np" --bind-to none "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
py=/usr/bin/python3  # Debian's, with python3-numpy and python3-h5py
same_files() {  # same file names and bytes (the job record names its folder: left out)
  diff <(cd "$1" && find . -type f ! -name sampling.pbtxt | sort) <(cd "$2" && find . -type f ! -name sampling.pbtxt | sort) \
    >/dev/null || fail "$1 and $2 hold different files"
  while IFS= read -r f; do cmp -s "$1/$f" "$2/$f" || fail "$1/$f and $2/$f differ"; done \
    < <(cd "$1" && find . -type f ! -name sampling.pbtxt)
}

"$bin/drift_data" toy unequal --labels --out="$work/toy" --num=6000 --seed=2 --progress=false >/dev/null
# The toy recipe's discrete noise part too (--gen_noise_categories): its indices must follow the
# global sample index like the Gaussian part for the sampler's invariance checks below to hold.
"$bin/drift_train" --data="$work/toy" --run_dir="$work/run" --gen_width=32 --gen_depth=1 --gen_per_class=16 \
  --gen_noise_categories=16 --pos_per_class=16 --steps=2 --log_every=1 --image_every=0 --ckpt_every=2 \
  --threads=1 >"$work/train.log" 2>&1 ||
  { tail "$work/train.log"; fail "training the toy model"; }
sample() { local np=$1 out=$2; shift 2; mpi "$np" "$bin/drift_sample" --checkpoint="$work/run" --out="$work/$out" \
  --sample_threads=1 "$@" >"$work/$out.log" 2>&1; }

echo "== 1 and 3 ranks write the same files; the default class prior follows the data"
sample 1 a1 --num_samples=3000 --shard_size=256 || { cat "$work/a1.log"; fail "sampling on 1 rank"; }
sample 3 a3 --num_samples=3000 --shard_size=256 || { cat "$work/a3.log"; fail "sampling on 3 ranks"; }
same_files "$work/a1" "$work/a3"
[ "$(ls "$work/a1" | grep -c '^shard-.*-of-00012\.h5$')" = 12 ] || fail "expected 12 shards of 256 samples"
"$bin/drift_data" inspect "$work/a1" >"$work/inspect.txt" 2>&1 || { cat "$work/inspect.txt"; fail "drift_data inspect"; }
grep -q "3000" "$work/inspect.txt" || { cat "$work/inspect.txt"; fail "inspect does not report 3000 samples"; }
"$py" - "$work/toy" "$work/a1" <<'EOF' || fail "class frequencies of the samples"
import glob, sys, h5py, numpy as np
def labels(d): return np.concatenate([h5py.File(f)["labels"][:] for f in sorted(glob.glob(d + "/shard-*.h5"))])
data, gen = labels(sys.argv[1]), labels(sys.argv[2])
p, q = np.bincount(data) / len(data), np.bincount(gen, minlength=len(np.bincount(data))) / len(gen)
gap = np.abs(p - q).max()
print("class shares: data", np.round(p, 3), "samples", np.round(q, 3), "max gap", round(gap, 4))
# 3000 draws: one standard error is at most 0.0091, so 0.04 is > 4 standard errors.
sys.exit(0 if gap < 0.04 and p.max() / p.min() > 3 else 1)
EOF

echo "== SIGKILL in the middle, then the same command: the same files as an uninterrupted run"
flags=(--num_samples=24000 --shard_size=300 --batch_size=32)
sample 1 full "${flags[@]}" || { cat "$work/full.log"; fail "uninterrupted run"; }
sample 1 killed "${flags[@]}" & pid=$!
for _ in $(seq 600); do [ "$(ls "$work/killed" 2>/dev/null | grep -c '\.h5$')" -ge 3 ] && break; sleep 0.05; done
pkill -KILL -f "drift_sample.*$work/killed" || true
wait "$pid" 2>/dev/null || true
n=$(ls "$work/killed" | grep -c '\.h5$' || true)
[ "$n" -ge 3 ] && [ "$n" -lt 80 ] || fail "the kill should land mid-job ($n of 80 units committed)"
ls "$work/killed" | grep -q partial && echo "(a partial unit was left by the kill, as expected)"
sample 1 killed "${flags[@]}" || { cat "$work/killed.log"; fail "resuming after SIGKILL"; }
grep -q "resuming: $n unit(s) committed" "$work/killed.log" || { cat "$work/killed.log"; fail "no resume message"; }
same_files "$work/full" "$work/killed"
echo "killed after $n of 80 units; resumed; identical"

echo "== SIGTERM on 2 ranks: both finish their unit and exit 0; the rerun completes the same files"
sample 2 term "${flags[@]}" & pid=$!
for _ in $(seq 600); do [ "$(ls "$work/term" 2>/dev/null | grep -c '\.h5$')" -ge 4 ] && break; sleep 0.05; done
pkill -TERM -f "^$bin/drift_sample.*$work/term" || true
wait "$pid" || { cat "$work/term.log"; fail "a SIGTERM-stopped job must exit 0"; }
grep -q "stopped by signal 15" "$work/term.log" || { cat "$work/term.log"; fail "no stop message"; }
n=$(ls "$work/term" | grep -c '\.h5$' || true)
[ "$n" -lt 80 ] || fail "SIGTERM came too late to test (all units done)"
! ls "$work/term" | grep -q partial || fail "a graceful stop left a partial unit"
sample 2 term "${flags[@]}" || { cat "$work/term.log"; fail "resuming after SIGTERM"; }
same_files "$work/full" "$work/term"
sample 1 term "${flags[@]}" || fail "rerun of a finished job"
grep -q "already complete: nothing to do" "$work/term.log" || { cat "$work/term.log"; fail "a finished job was redone"; }
echo "stopped after $n of 80 units; resumed; identical; finished job not redone"

echo "== other flags on an existing output are refused (each difference named); --force replaces"
if sample 1 term "${flags[@]}" --sample_seed=7 --alpha=1; then fail "a different seed was accepted on an existing output"; fi
grep -q "sample_seed: '0' -> '7'" "$work/term.log" || { cat "$work/term.log"; fail "the refusal does not name the seed"; }
same_files "$work/full" "$work/term"
sample 1 term --num_samples=500 --force || { cat "$work/term.log"; fail "--force"; }
[ "$(ls "$work/term" | grep -c '\.h5$')" = 1 ] || fail "--force did not replace the output"

mnist="$root/.cache/data/mnist"
if [ ! -e "$mnist/t10k-images-idx3-ubyte" ] && [ ! -e "$mnist/t10k-images-idx3-ubyte.gz" ]; then
  echo "png/npz formats: skipped (no $mnist; scripts/install-deps.sh fetches it)"
  echo "all sampling checks passed"; exit 0
fi
echo "== png and npz outputs hold the samples of the h5 output; drift_eval reads all three"
sfx=""; [ -e "$mnist/t10k-images-idx3-ubyte" ] || sfx=".gz"
"$bin/drift_data" convert-idx "$mnist/t10k-images-idx3-ubyte$sfx" "$mnist/t10k-labels-idx1-ubyte$sfx" --out="$work/mnist" \
  --class_names=mnist --progress=false >/dev/null
"$bin/drift_train" --data="$work/mnist" --run_dir="$work/img" --gen_arch=conv --gen_width=8 --gen_noise_dim=16 \
  --num_classes_per_step=10 --gen_per_class=4 --pos_per_class=4 --steps=2 --image_every=0 --ckpt_every=2 --threads=2 \
  >"$work/img.log" 2>&1 || { tail "$work/img.log"; fail "training the image model"; }
isample() { local np=$1 out=$2; shift 2; mpi "$np" "$bin/drift_sample" --checkpoint="$work/img" --out="$work/$out" \
  --num_samples=300 --shard_size=64 --classes=all --sample_threads=1 "$@" >"$work/$out.log" 2>&1 || { cat "$work/$out.log"; fail "$out"; }; }
isample 3 ih5 --format=h5
isample 2 ipng --format=png
isample 1 inpz --format=npz
unzip -tq "$work/inpz/samples.npz" >/dev/null || fail "unzip -t rejects samples.npz"
[ "$(find "$work/ipng" -name '*.png' | wc -l)" = 300 ] || fail "expected 300 PNG files"
[ -d "$work/ipng/7" ] && [ -f "$work/ipng/7/000007.png" ] || fail "expected ipng/7/000007.png (class folder, padded index)"
"$py" - "$work" <<'EOF' || fail "independent readers disagree with the h5 output"
import glob, os, struct, sys, zlib, h5py, numpy as np
w = sys.argv[1]
shards = sorted(glob.glob(w + "/ih5/shard-*.h5"))
x = np.concatenate([h5py.File(f)["data"][:] for f in shards]); y = np.concatenate([h5py.File(f)["labels"][:] for f in shards])
z = np.load(w + "/inpz/samples.npz")
assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (300, 28, 28, 1), z["arr_0"].shape
assert (z["arr_0"] == x).all() and (z["labels"] == y).all(), "npz != h5"
def read_png(path):  # 8-bit gray, non-interlaced: enough for these files, written by libpng
    b = open(path, "rb").read(); assert b[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w_, h_ = 8, b"", 0, 0
    while pos < len(b):
        n, t = struct.unpack(">I4s", b[pos:pos + 8]); d = b[pos + 8:pos + 8 + n]; pos += 12 + n
        if t == b"IHDR": w_, h_, depth, color = struct.unpack(">IIBB", d[:10]); assert depth == 8 and color == 0
        if t == b"IDAT": idat += d
    raw, out, prev = zlib.decompress(idat), [], bytearray(w_)
    for r in range(h_):
        f, line = raw[r * (w_ + 1)], bytearray(raw[r * (w_ + 1) + 1:(r + 1) * (w_ + 1)])
        for i in range(w_):
            a, c, up = (line[i - 1] if i else 0), (prev[i - 1] if i else 0), prev[i]
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        out.append(bytes(line)); prev = line
    return np.frombuffer(b"".join(out), np.uint8).reshape(h_, w_, 1)
names = open(w + "/ipng/class_names.txt").read().split()
for i in range(300):
    f = "%s/ipng/%s/%06d.png" % (w, names[y[i]], i)
    assert os.path.exists(f), f
    assert (read_png(f) == x[i]).all(), f
print("npz and 300 PNG files equal the h5 output")
EOF
for f in ih5 ipng inpz; do
  "$bin/drift_eval" compare --generated="$work/$f" --reference="$work/mnist" --max_samples=200 --eval_threads=1 \
    --json="$work/$f.json" >"$work/$f.eval" 2>&1 || { cat "$work/$f.eval"; fail "drift_eval on $f"; }
  grep -q "generated: $work/$f.* ($( [ $f = inpz ] && echo npz || echo ${f#i}), 300 samples" "$work/$f.eval" || { cat "$work/$f.eval"; fail "eval format of $f"; }
done
cmp -s <(sed 's/"generated": "[^"]*"//' "$work/ih5.json") <(sed 's/"generated": "[^"]*"//' "$work/ipng.json") || fail "eval of png != h5"
cmp -s <(sed 's/"generated": "[^"]*"//' "$work/ih5.json") <(sed 's/"generated": "[^"]*"//' "$work/inpz.json") || fail "eval of npz != h5"
echo "== drift_eval nearest: copies of the training set are flagged; a class grid and a nearest panel"
# The converted set as 'generated' is all copies of itself as 'train': every distance 0, below the
# 1st percentile of the model's samples (the 'held-out' here), so the share reads 100%.
"$bin/drift_eval" nearest --generated="$work/mnist" --train="$work/mnist" --reference="$work/inpz" --max_samples=200 \
  --eval_threads=1 --grid_png="$work/grid.png" --png="$work/nearest.png" >"$work/nearest.txt" 2>&1 \
  || { cat "$work/nearest.txt"; fail "drift_eval nearest"; }
grep -q "^generated (200) .* 0.000 *0.000 *0.000$" "$work/nearest.txt" && grep -q "are: 100.0%" "$work/nearest.txt" \
  || { cat "$work/nearest.txt"; fail "copies not recognised as copies"; }
python3 - "$work" <<'EOF'
import struct, sys
def size(f):
    b = open(f, "rb").read(24)
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f
    return struct.unpack(">II", b[16:24])
# 28-pixel cells with 2 pixels of padding around and between them: 10 x 10 and 10 x (2 rows x 2)
for f, (cols, rows) in (("grid.png", (10, 10)), ("nearest.png", (10, 4))):
    w, h = size(sys.argv[1] + "/" + f)
    assert (w, h) == (cols * 30 + 2, rows * 30 + 2), (f, w, h)
print("grid 10 x 10 and panel 10 x 4 cells")
EOF
echo "all sampling checks passed"

#!/usr/bin/env bash
# Side outputs never stop training (issue 17): pictures, metrics rows and TensorBoard events are
# best effort.
#  1. 3-D points: the pictures show the first two coordinates; training passes picture steps.
#  2. 1-D points: the shape is found at start, pictures are skipped with exactly one warning.
#  3. Unwritable side outputs (a directory where the picture and metrics.jsonl would go): one
#     warning each, training finishes and commits its checkpoint.
# Usage: side_outputs.sh BIN_DIR   (run by ctest as train_side_outputs)
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_side.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

awk 'BEGIN { srand(5); for (i = 0; i < 2000; i++) printf "%.4f,%.4f,%.4f\n", rand() * 2 - 1, rand() - 0.5, rand() }' >"$work/p3.csv"
awk 'BEGIN { srand(6); for (i = 0; i < 2000; i++) printf "%.4f\n", rand() * 2 - 1 }' >"$work/p1.csv"
"$bin/drift_data" convert-csv "$work/p3.csv" --out="$work/p3" --progress=false >/dev/null
"$bin/drift_data" convert-csv "$work/p1.csv" --out="$work/p1" --progress=false >/dev/null
common=(--gen_width=32 --gen_depth=2 --gen_per_class=32 --pos_per_class=32 --taus=0.05 --threads=1 --prefetch=0
        --log_every=5 --image_every=5 --ckpt_every=100 --steps=12)

echo "== 3-D points: drawn as their first two coordinates"
"$bin/drift_train" "${common[@]}" --data="$work/p3" --run_dir="$work/r3" >"$work/r3.log" 2>&1 || fail "3-D training failed"
for f in samples_step5.png samples_step10.png samples.png; do [ -s "$work/r3/$f" ] || fail "3-D: no $f"; done
! grep -q "pictures are off\|not written" "$work/r3.log" || fail "3-D: pictures were skipped"

echo "== 1-D points: pictures skipped at start with one warning"
"$bin/drift_train" "${common[@]}" --data="$work/p1" --run_dir="$work/r1" >"$work/r1.log" 2>&1 || fail "1-D training failed"
[ "$(grep -c "training pictures are off" "$work/r1.log")" -eq 1 ] || fail "1-D: expected exactly one warning"
grep -q "training pictures are off: .*vectors of at least 2 coordinates" "$work/r1.log" || fail "1-D: the warning does not say why"
! ls "$work/r1/"*.png >/dev/null 2>&1 || fail "1-D: a picture was written"
grep -q "training finished" "$work/r1.log" || fail "1-D: training did not finish"

echo "== unwritable picture and metrics files: warnings, training finishes"
mkdir -p "$work/rw/samples_step5.png" "$work/rw/metrics.jsonl"
"$bin/drift_train" "${common[@]}" --data="$work/p3" --run_dir="$work/rw" >"$work/rw.log" 2>&1 ||
  fail "training with unwritable side outputs failed"
grep -q "^W.*step 5: training picture samples_step5.png not written (.*Is a directory); training continues" "$work/rw.log" ||
  fail "no warning about the unwritable picture"
[ "$(grep -c "metrics: cannot open it for appending" "$work/rw.log")" -eq 1 ] || fail "expected one warning about metrics.jsonl"
[ -s "$work/rw/samples_step10.png" ] || fail "the next picture was not written"
[ -z "$(find "$work/rw" -name '*.tmp')" ] || fail "temporary files left behind: $(find "$work/rw" -name '*.tmp')"
"$bin/drift_ckpt" list "$work/rw" | grep -q "complete.*step_00000012" || fail "no final checkpoint"
echo "all side-output checks passed"

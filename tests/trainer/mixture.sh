#!/usr/bin/env bash
# Unlabelled multi-modal data must not collapse (a fast version of the toy recipe check):
# three separated Gaussian modes with weights 0.6 / 0.3 / 0.1, written as a CSV without labels
# and trained with the shipped toy recipe (configs/toy2d.flags; only the step count and the
# per-step sets are smaller here), then 4,000 one-step samples are scored against 4,000 labelled
# held-out points. Asserts: no mode missed, every mode's weight within 4 points of the data's,
# energy distance within 3x its floor. The recipe before issue 15 (one temperature, AdamW beta2
# 0.95, gradient clipping at 2, cosine decay) put every sample on one or two modes here.
#   tests/trainer/mixture.sh BIN_DIR PROJECT_DIR
set -euo pipefail
bin=$1 project=$2
work=$(mktemp -d /tmp/driftlab_mixture.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "mixture: FAILED: $*" >&2; exit 1; }

# x,y[,mode]: Box-Muller draws from awk's seeded generator (deterministic for a seed).
mixture() {  # mixture N SEED WITH_LABELS
  awk -v n="$1" -v seed="$2" -v lab="$3" 'BEGIN {
    srand(seed); pi = 3.141592653589793
    cx[0] = -3; cy[0] = 0; cx[1] = 3; cy[1] = 0.5; cx[2] = 0; cy[2] = 4
    for (i = 0; i < n; i++) {
      u = rand(); k = (u < 0.6) ? 0 : (u < 0.9 ? 1 : 2)
      r = sqrt(-2 * log(1 - rand())); t = 2 * pi * rand()
      x = cx[k] + 0.2 * r * cos(t); y = cy[k] + 0.2 * r * sin(t)
      if (lab) printf "%.6f,%.6f,%d\n", x, y, k; else printf "%.6f,%.6f\n", x, y
    }
  }'
}
mixture 20000 1 0 > "$work/train.csv"
mixture 8000 2 1 > "$work/held.csv"
"$bin/drift_data" convert-csv "$work/train.csv" --out="$work/train" > /dev/null
"$bin/drift_data" convert-csv "$work/held.csv" --out="$work/held" --label_column=2 > /dev/null

cd "$project"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe --bind-to none -x DRIFTLAB_THREADS=1 "$bin/drift_train" --flagfile=configs/toy2d.flags \
  --data="$work/train" --run_dir="$work/run" --steps=600 --gen_per_class=512 --pos_per_class=512 --log_every=200 \
  --image_every=0 --ckpt_every=600 > "$work/train.log" 2>&1 || { tail -n 20 "$work/train.log"; fail "training failed"; }
"$bin/drift_sample" --checkpoint="$work/run" --num_samples=4000 --out="$work/sampled" > /dev/null 2>&1 ||
  fail "sampling failed"
"$bin/drift_eval" compare --generated="$work/sampled" --reference="$work/held" --max_samples=4000 \
  --json="$work/eval.json" > "$work/eval.txt" 2>&1 || { cat "$work/eval.txt"; fail "evaluation failed"; }
cat "$work/eval.txt"

# value and floor of a metric in eval.json
metric() { sed -n "s/.*{\"metric\": \"$1\", \"value\": \([^,]*\), \"floor\": \([^}]*\)}.*/\1 \2/p" "$work/eval.json"; }
read -r missed _ <<<"$(metric 'modes missed (nearest sample)')"
read -r gap _ <<<"$(metric 'largest mode-weight gap (points)')"
read -r ed ed_floor <<<"$(metric 'energy distance')"
[ -n "$missed" ] && [ -n "$gap" ] && [ -n "$ed" ] || fail "metrics missing from eval.json"
awk -v m="$missed" 'BEGIN { exit !(m == 0) }' || fail "$missed mode(s) missed"
awk -v g="$gap" 'BEGIN { exit !(g <= 4) }' || fail "a mode's weight is $gap points off the data's (limit 4)"
awk -v e="$ed" -v f="$ed_floor" 'BEGIN { exit !(e <= 3 * f) }' || fail "energy distance $ed is over 3x its floor $ed_floor"
echo "mixture: passed (no mode missed, largest weight gap $gap points, energy distance $ed vs floor $ed_floor)"

#!/usr/bin/env bash
# Unlabelled multi-modal data must not collapse (a fast version of the toy recipe check): six
# Gaussian modes with unequal weights, without labels, trained with the shipped toy recipe
# (configs/toy2d.flags; only the step count and the per-step sets are smaller here), then 4,000
# one-step samples are scored against 4,000 labelled held-out points. Asserts: no mode missed,
# every mode's weight within 3 points of the data's, energy distance within 60x its floor (a
# short run: the samples are on their modes in the right proportions but not yet sharp; measured
# 1.3 points and 18x). The recipe before issue 15 (one temperature, AdamW beta2 0.95, gradient
# clipping at 2, cosine decay) put every sample on one mode here (a 95-point gap, 6820x).
#   tests/trainer/mixture.sh BIN_DIR PROJECT_DIR    (KEEP=1 keeps the work folder for a look)
set -euo pipefail
bin=$1 project=$2
work=$(mktemp -d /tmp/driftlab_mixture.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail() { echo "mixture: FAILED: $*" >&2; exit 1; }

# The "unequal" toy: six Gaussian modes with weights 0.35 .. 0.05 (drift_data --help). Training
# data without labels; the held-out points carry their mode for the evaluation.
"$bin/drift_data" toy unequal --out="$work/train" --num=20000 --seed=1 > /dev/null
"$bin/drift_data" toy unequal --out="$work/held" --num=8000 --seed=2 --labels > /dev/null

cd "$project"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe --bind-to none -x DRIFTLAB_THREADS=1 "$bin/drift_train" --flagfile=configs/toy2d.flags \
  --data="$work/train" --run_dir="$work/run" --steps=1200 --gen_per_class=512 --pos_per_class=512 --log_every=200 \
  --image_every=0 --ckpt_every=1200 > "$work/train.log" 2>&1 || { tail -n 20 "$work/train.log"; fail "training failed"; }
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
awk -v g="$gap" 'BEGIN { exit !(g <= 3) }' || fail "a mode's weight is $gap points off the data's (limit 3)"
awk -v e="$ed" -v f="$ed_floor" 'BEGIN { exit !(e <= 60 * f) }' || fail "energy distance $ed is over 60x its floor $ed_floor"
echo "mixture: passed (no mode missed, largest weight gap $gap points, energy distance $ed vs floor $ed_floor)"

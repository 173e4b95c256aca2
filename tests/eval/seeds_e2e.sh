#!/usr/bin/env bash
# scripts/seeds.sh end to end at a tiny size: two training seeds of the toy recipe (a few steps,
# small sets) are trained, sampled and scored; each finished run is one JSON line of the results
# file, a second call with --score-only appends re-scored lines without training, and --summary
# prints the mean and spread over the runs (and a Markdown row with --row). Bad arguments are
# named errors.
#   tests/eval/seeds_e2e.sh PROJECT_DIR    (KEEP=1 keeps the work folder)
set -euo pipefail
project=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_seeds.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail() { echo "seeds_e2e: FAILED: $*" >&2; exit 1; }
cd "$project"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tiny=(--steps=6 --gen_per_class=64 --pos_per_class=64 --tau_warmup_steps=2 --log_every=3 --image_every=0 --ckpt_every=6)
run=(scripts/seeds.sh 8gaussians --runs="$work" --name=tiny --samples=300 --max_samples=100
     --eval_flags="--permutations=20 --resamples=2")
"${run[@]}" --seeds=3,4 -- "${tiny[@]}" > "$work/out.txt" 2>&1 || { tail -n 30 "$work/out.txt"; fail "the sweep failed"; }
results=$work/tiny/results.jsonl
[ "$(wc -l < "$results")" -eq 2 ] || fail "expected 2 result lines, got $(wc -l < "$results")"
python3 - "$results" <<'PY' || fail "results file"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["seed"] for r in runs] == [3, 4], [r["seed"] for r in runs]
for r in runs:
    names = [m["metric"] for m in r["eval"]["metrics"]]
    assert "energy distance" in names and "precision (k-NN)" in names, names
    assert r["eval"]["samples"] == 100 and r["eval"]["permutations"] == 20, r["eval"]
    assert r["train_s"] is not None and "--steps=6" in r["flags"], r
PY
# Both seeds trained their own model: different samples.
cmp -s <(sed 's/"generated": "[^"]*"//' "$work/tiny/seed-3/eval.json") <(sed 's/"generated": "[^"]*"//' "$work/tiny/seed-4/eval.json") &&
  fail "seeds 3 and 4 scored identically"
grep -q "2 runs (seeds 3,4)" "$work/out.txt" || { cat "$work/out.txt"; fail "no summary after the sweep"; }
grep -q "^| tiny (configs/toy2d-8gaussians.flags --steps=6" "$work/out.txt" || fail "no Markdown row after the sweep"
# Re-scoring: no training, two more lines with train_s null.
"${run[@]}" --seeds=3,4 --score-only > "$work/rescore.txt" 2>&1 || { cat "$work/rescore.txt"; fail "--score-only failed"; }
grep -q "training" "$work/rescore.txt" && fail "--score-only trained"
[ "$(grep -c '"train_s": null' "$results")" -eq 2 ] || fail "re-scored lines missing"
# Captured first: grep -q stops reading at its match, and with pipefail the writer's broken pipe fails.
scripts/seeds.sh --summary --runs="$work" --name=tiny 8gaussians > "$work/summary.txt" || fail "--summary failed"
grep -q "4 runs (seeds 3,4,3,4)" "$work/summary.txt" || { cat "$work/summary.txt"; fail "--summary"; }
# Errors name what is wrong.
expect_error() {
  local msg=$1; shift
  if out=$("$@" 2>&1); then fail "'$*' succeeded"; fi
  grep -q -- "$msg" <<<"$out" || fail "'$*' said '$out', expected '$msg'"
}
expect_error "--seeds expects comma-separated integers, got '1,x'" scripts/seeds.sh 8gaussians --seeds=1,x
expect_error "neither a toy" scripts/seeds.sh nosuchthing
expect_error "--reference is needed" scripts/seeds.sh configs/mnist.flags
expect_error "unknown option '--bogus'" scripts/seeds.sh --bogus 8gaussians
echo "seeds_e2e: passed"

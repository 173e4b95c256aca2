#!/usr/bin/env bash
# scripts/seeds.sh end to end at a tiny size: two training seeds of the toy recipe (a few steps,
# small sets) are trained, sampled and scored; each finished run is one JSON line of the results
# file, a second call with --score-only appends re-scored lines without training, --resample
# samples the same checkpoints again under other sampler flags (raw weights, a further EMA) into
# their own results files, and --summary
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
tiny=(--steps=6 --gen_per_class=64 --pos_per_class=64 --tau_warmup_steps=2 --log_every=3 --image_every=0 --ckpt_every=6
      --ema_extra_decays=0.5)
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
# The same runs under other sampler settings: raw weights, the further average of decay 0.5.
"${run[@]}" --seeds=3,4 --resample=raw --sample_flags=--ema=false > "$work/raw.txt" 2>&1 ||
  { tail -n 30 "$work/raw.txt"; fail "--resample=raw failed"; }
"${run[@]}" --seeds=3 --resample=ema0.5 --sample_flags=--ema_decay=0.5 > "$work/ema.txt" 2>&1 ||
  { tail -n 30 "$work/ema.txt"; fail "--resample=ema0.5 failed"; }
grep -q "training" "$work/raw.txt" "$work/ema.txt" && fail "--resample trained"
grep -q "raw weights" "$work/tiny/seed-3.sample-raw.log" || fail "--resample=raw did not sample the raw weights"
grep -q "decay 0.5, kept by --ema_extra_decays" "$work/tiny/seed-3.sample-ema0.5.log" || fail "not the average of decay 0.5"
python3 - "$work/tiny-raw/results.jsonl" "$work/tiny-ema0.5/results.jsonl" <<'PY' || fail "--resample results"
import json, sys
raw = [json.loads(l) for l in open(sys.argv[1])]
ema = [json.loads(l) for l in open(sys.argv[2])]
assert [r["seed"] for r in raw] == [3, 4] and [r["seed"] for r in ema] == [3], (raw, ema)
assert all(r["name"] == "tiny-raw" and r["train_s"] is None and r["flags"].endswith("drift_sample --ema=false") for r in raw), raw
assert ema[0]["name"] == "tiny-ema0.5" and ema[0]["eval"]["generated"].endswith("seed-3/sampled-ema0.5"), ema
PY
cmp -s <(sed 's/"generated": "[^"]*"//' "$work/tiny/seed-3/eval.json") <(sed 's/"generated": "[^"]*"//' "$work/tiny/seed-3/eval-raw.json") &&
  fail "the raw and the EMA weights scored identically"
[ "$(wc -l < "$results")" -eq 4 ] || fail "--resample wrote into the main results file"
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
expect_error "--resample: no checkpoints in $work/tiny/seed-9" "${run[@]}" --seeds=9 --resample=raw --sample_flags=--ema=false
expect_error "--resample expects a tag" scripts/seeds.sh 8gaussians --resample=a/b
echo "seeds_e2e: passed"

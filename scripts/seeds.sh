#!/usr/bin/env bash
# One recipe at several training seeds: trains each seed, samples from it, scores the samples with
# drift_eval compare and appends one JSON line per finished run to a results file; --summary prints
# every metric's mean and spread over the runs in that file. One run is one draw: compare recipes
# by their mean over seeds, next to the spread.
#
#   scripts/seeds.sh [options] TOY|FLAGFILE [-- extra drift_train flags]
#
# TOY          checkerboard, swissroll, 8gaussians, unequal, nested or separated: the toy recipe
#              (configs/toy2d-TOY.flags, or configs/toy2d.flags with that toy's data) on unlabelled
#              data it makes if missing, scored against 20,000 labelled held-out points.
# FLAGFILE     any drift_train config; then --reference is needed (and --classifier for images).
# --seeds=LIST       training seeds, comma-separated (default 0,1,2)
# --runs=DIR         folder of the sweeps (default runs/seeds)
# --name=NAME        runs go to DIR/NAME/seed-S and results to DIR/NAME/results.jsonl
#                    (default: the toy or config name, then the extra flags: 8gaussians_gen_width=512)
# --results=FILE     append the results here instead
# --samples=N        generated samples per run (default 10000; drift_eval uses at most --max_samples)
# --max_samples=N    drift_eval compare's --max_samples (default 10000)
# --reference=DIR    held-out data to score against (toys: made and chosen automatically)
# --classifier=FILE  image runs: drift_eval's classifier (Frechet distance, KID, class accuracy)
# --sample_flags=F   extra drift_sample flags, e.g. "--classes=all --alpha=1"
# --eval_flags=F     extra drift_eval compare flags, e.g. "--permutations=500"
# --ranks=N          training ranks on this node (default: one per core, at most 8)
# DRIFTLAB_BIN=DIR   the binaries (default build/bin), e.g. a frozen copy while the tree is rebuilt
# --score-only       do not train or sample: re-score the seeds' existing runs and append them
# --resample=TAG     do not train: sample each seed's existing checkpoint again with --sample_flags
#                    into RUN/sampled-TAG, score it (RUN/eval-TAG.json) and append to DIR/NAME-TAG/;
#                    the same training runs under another sampler setting, e.g. --resample=raw
#                    --sample_flags=--ema=false, or --sample_flags=--ema_decay=0.99 for an average
#                    the runs kept with --ema_extra_decays
# --summary          print the mean and spread of every metric over the results file, then exit
# --row              with --summary: also print one Markdown table row of the headline metrics
#                    (mean +- sd over seeds, real data's mean in brackets) for docs/results tables
#
# Runs resume (--resume=auto), so a stopped sweep continues where it was; start long sweeps in the
# background: nohup scripts/seeds.sh 8gaussians > runs/seeds-8gaussians.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set -euo/{/^set -euo/!p}' "$0"; }
seeds=0,1,2 runs_dir=runs/seeds name="" results="" samples=10000 max_samples=10000 reference="" classifier=""
sample_flags="" eval_flags="" ranks=$(( $(nproc) < 8 ? $(nproc) : 8 )) score_only=0 summary=0 row=0 target="" tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds=*) seeds=${1#*=} ;;
    --name=*) name=${1#*=} ;;
    --runs=*) runs_dir=${1#*=} ;;
    --results=*) results=${1#*=} ;;
    --samples=*) samples=${1#*=} ;;
    --max_samples=*) max_samples=${1#*=} ;;
    --reference=*) reference=${1#*=} ;;
    --classifier=*) classifier=${1#*=} ;;
    --sample_flags=*) sample_flags=${1#*=} ;;
    --eval_flags=*) eval_flags=${1#*=} ;;
    --ranks=*) ranks=${1#*=} ;;
    --score-only) score_only=1 ;;
    --resample=*) tag=${1#*=}
      [[ "$tag" =~ ^[A-Za-z0-9_.=-]+$ ]] || { echo "seeds.sh: --resample expects a tag of letters, digits and _.=-, got '$tag'" >&2; exit 2; } ;;
    --summary) summary=1 ;;
    --row) row=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "seeds.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$target" ] || { echo "seeds.sh: one TOY or FLAGFILE expected, got '$target' and '$1'" >&2; exit 2; }
       target=$1 ;;
  esac
  shift
done
extra=("$@")
name_given=0; [ -z "$name" ] || name_given=1
[ -n "$target" ] || { echo "seeds.sh: missing the TOY or FLAGFILE (see --help)" >&2; exit 2; }
[[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "seeds.sh: --seeds expects comma-separated integers, got '$seeds'" >&2; exit 2; }
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "seeds.sh: --ranks expects a positive integer, got '$ranks'" >&2; exit 2; }
[[ "$samples" =~ ^[1-9][0-9]*$ ]] || { echo "seeds.sh: --samples expects a positive integer, got '$samples'" >&2; exit 2; }
bin=${DRIFTLAB_BIN:-build/bin}  # DRIFTLAB_BIN: a frozen copy of the binaries, for sweeps beside development
toy_flags=() is_toy=0
case "$target" in
  checkerboard|swissroll|8gaussians|unequal|nested|separated)
    cfg=configs/toy2d-$target.flags
    [ "$target" != checkerboard ] || cfg=configs/toy2d.flags
    if [ ! -f "$cfg" ]; then cfg=configs/toy2d.flags; toy_flags=(--data=".cache/data/toy/$target-unlabelled"); fi
    [ -n "$reference" ] || reference=.cache/data/toy/$target-heldout-20k-modes
    [ -n "$name" ] || name=$target
    is_toy=1 ;;
  *)
    [ -f "$target" ] || { echo "seeds.sh: '$target' is neither a toy (checkerboard, swissroll, 8gaussians, unequal, nested, separated) nor a flag file" >&2; exit 2; }
    cfg=$target
    [ -n "$reference" ] || { echo "seeds.sh: --reference is needed for $cfg (held-out data to score against)" >&2; exit 2; }
    [ -n "$name" ] || name=$(basename "$cfg" .flags) ;;
esac
# An ablation (extra drift_train flags) gets its own folder unless --name says otherwise.
if [ "$name_given" -eq 0 ] && [ "${#extra[@]}" -gt 0 ]; then
  name=$name$(printf '_%s' "${extra[@]#--}" | tr -c 'A-Za-z0-9_.=,-' '_')
fi
dir=$runs_dir/$name
[ -n "$results" ] || results=$dir${tag:+-$tag}/results.jsonl

if [ "$summary" -eq 1 ]; then
  [ -s "$results" ] || { echo "seeds.sh: no results in $results yet" >&2; exit 1; }
  exec python3 - "$results" "$row" <<'EOF'
# Mean, sample standard deviation and range of every metric over the runs of a results file.
import json, math, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order, vals = [], {}
for r in runs:
    for m in r["eval"]["metrics"]:
        for key in ("value", "z", "p_value"):
            if key not in m:
                continue
            k = m["metric"] + ("" if key == "value" else " [" + key + "]")
            if k not in vals:
                order.append(k)
                vals[k] = []
            vals[k].append(m[key])
seeds = ",".join(str(r["seed"]) for r in runs)
print(f"{sys.argv[1]}: {len(runs)} runs (seeds {seeds}); mean, sd over runs (sample sd, n-1), min..max")
print(f"{'metric':58s} {'mean':>12s} {'sd':>11s}   range")
for k in order:
    v = vals[k]
    mean = sum(v) / len(v)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    print(f"{k:58s} {mean:12.6g} {sd:11.4g}   {min(v):.6g}..{max(v):.6g}")
if sys.argv[2] == "1":
    # Headline metrics present in these runs: mean +- sd over seeds (real data's mean in brackets).
    def ms(v):
        mean = sum(v) / len(v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
        return mean, sd
    def rows(name):
        return [m for r in runs for m in r["eval"]["metrics"] if m["metric"] == name]
    cells = []
    for name, short, digits in [("precision (k-NN)", "precision", 3), ("recall (k-NN)", "recall", 3),
                                ("share off every mode", "off every mode", 4),
                                ("largest mode-weight gap (points)", "weight gap (points)", 2),
                                ("classifier Frechet distance", "Frechet", 2), ("KID (classifier features)", "KID", 4),
                                ("classified as asked class", "as asked", 3)]:
        r = rows(name)
        if not r:
            continue
        mean, sd = ms([m["value"] for m in r])
        real, _ = ms([m.get("null_mean", float("nan")) for m in r])
        cells.append(f"{short} {mean:.{digits}f} +- {sd:.{digits}f} ({real:.{digits}f})")
    for name in ("energy distance", "energy distance (pixels)", "energy distance (classifier features)"):
        r = rows(name)
        if r:
            zm, zs = ms([m["z"] for m in r])
            told = sum(m["p_value"] < 0.01 for m in r)
            cells.append(f"{name}: z {zm:.1f} +- {zs:.1f}, p < 0.01 in {told} of {len(r)}")
    r = [m for m in rows("energy distance (V-statistic)") + rows("energy distance (V-statistic, pixels)")]
    if r:
        mean, sd = ms([m["value"] / m["floor"] for m in r])
        cells.append(f"V-statistic / expectation {mean:.2f}x +- {sd:.2f}")
    flags = runs[0].get("flags", "")
    print(f"| {runs[0]['name']} ({runs[0]['config']}{' ' + flags if flags else ''}), seeds {seeds} | " + "; ".join(cells) + " |")
EOF
fi

[ -x "$bin/drift_train" ] && [ -x "$bin/drift_eval" ] || scripts/build.sh
mkdir -p "$dir" "$(dirname "$results")"
if [ "$is_toy" -eq 1 ]; then  # toy data, made once
  labels=(); [ "$target" = swissroll ] || labels=(--labels)
  [ -d ".cache/data/toy/$target-unlabelled" ] ||
    "$bin/drift_data" toy "$target" --out=".cache/data/toy/$target-unlabelled" --num=100000 --seed=0
  [ -d "$reference" ] || "$bin/drift_data" toy "$target" --out="$reference" --num=20000 --seed=1 "${labels[@]}"
fi
[ -e "$reference" ] || { echo "seeds.sh: --reference '$reference' does not exist" >&2; exit 2; }
eval_extra=(); [ -z "$classifier" ] || eval_extra+=(--classifier="$classifier")
read -r -a sample_extra <<<"$sample_flags"
read -r -a eval_more <<<"$eval_flags"

IFS=, read -r -a seed_list <<<"$seeds"
for s in "${seed_list[@]}"; do
  run=$dir/seed-$s
  t0=$(date +%s) train_s=null
  sampled=$run/sampled${tag:+-$tag} ev=eval${tag:+-$tag} cmp=compare${tag:+-$tag}
  if [ "$score_only" -eq 0 ]; then
    if [ -n "$tag" ]; then
      [ -e "$run/checkpoints" ] || { echo "seeds.sh: --resample: no checkpoints in $run (train the seed first)" >&2; exit 1; }
      echo "== seeds.sh [$name]: seed $s: sampling again ($tag: $sample_flags)"
    else
      echo "== seeds.sh [$name]: seed $s: training ($cfg ${toy_flags[*]} ${extra[*]})"
      train=("$bin/drift_train" --flagfile="$cfg" "${toy_flags[@]}" --run_dir="$run" --seed="$s" --resume=auto "${extra[@]}")
      if [ "$ranks" -gt 1 ]; then
        launch/local.sh -n "$ranks" --threads 1 --plain -- "${train[@]}" > "$run.train.log" 2>&1 ||
          { tail -n 20 "$run.train.log"; echo "seeds.sh: seed $s: training failed (log: $run.train.log)" >&2; exit 1; }
      else
        "${train[@]}" > "$run.train.log" 2>&1 || { tail -n 20 "$run.train.log"; echo "seeds.sh: seed $s: training failed" >&2; exit 1; }
      fi
      train_s=$(( $(date +%s) - t0 ))
    fi
    log=$run.sample${tag:+-$tag}.log
    "$bin/drift_sample" --checkpoint="$run" --num_samples="$samples" --out="$sampled" --force "${sample_extra[@]}" \
      > "$log" 2>&1 || { tail -n 20 "$log"; echo "seeds.sh: seed $s: sampling failed" >&2; exit 1; }
  fi
  [ -e "$sampled" ] || { echo "seeds.sh: seed $s: no samples in $sampled (run without --score-only first)" >&2; exit 1; }
  echo "== seeds.sh [$name]: seed $s: scoring against $reference"
  "$bin/drift_eval" compare --generated="$sampled" --reference="$reference" --max_samples="$max_samples" \
    --json="$run/$ev.json" --png="$run/$cmp.png" "${eval_extra[@]}" "${eval_more[@]}" | tee "$run/$ev.txt"
  all_flags=("${toy_flags[@]}" "${extra[@]}"); [ -z "$tag" ] || all_flags+=("drift_sample $sample_flags")
  flags_json=$(printf '%s ' "${all_flags[@]}" | sed 's/ $//; s/\\/\\\\/g; s/"/\\"/g')
  printf '{"name": "%s", "config": "%s", "flags": "%s", "seed": %s, "run": "%s", "date": "%s", "train_s": %s, "eval": %s}\n' \
    "$name${tag:+-$tag}" "$cfg" "$flags_json" "$s" "$run" "$(date -u +%FT%TZ)" "$train_s" "$(tr -d '\n' < "$run/$ev.json")" >> "$results"
  echo "== seeds.sh [$name]: seed $s done in $(( $(date +%s) - t0 )) s; appended to $results"
done
"$0" --summary --row --results="$results" --runs="$runs_dir" --name="$name" "$target"

#!/usr/bin/env bash
# Every shipped config is usable: all its flags are known to drift_train, and every config whose
# data can be made here trains for 2 steps as shipped (only data, encoder, run folder, steps and
# threads overridden) and leaves a complete checkpoint that drift_sample draws from.
#   toy2d*.flags: a small toy data set of the same kind; mnist/fashion-mnist: MNIST from
#   .cache/data/mnist (skipped when absent) and an encoder pretrained for 5 steps;
#   imagenet-b2: flags checked only (a B/2 step needs a GPU).
# Usage: configs.sh BIN_DIR PROJECT_DIR   (run by ctest)
set -euo pipefail
bin=$(cd "$1" && pwd)
root=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/driftlab_configs.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mnist="$root/.cache/data/mnist"
checked=0

for cfg in "$root"/configs/*.flags; do
  name=$(basename "$cfg" .flags)
  # Flags check: a missing data set must be the first complaint, not an unknown flag.
  if out=$("$bin/drift_train" --flagfile="$cfg" --data="$work/no-such-data" --run_dir="$work/$name-flags" 2>&1); then
    fail "$name: drift_train accepted a missing data set"
  fi
  grep -q "no-such-data" <<<"$out" || { echo "$out" >&2; fail "$name: expected an error naming the missing data set"; }
  overrides=()
  case "$name" in
    toy2d*)
      toy=$(sed -n 's#^--data=.*/toy/\(.*\)$#\1#p' "$cfg")
      "$bin/drift_data" toy "$toy" --out="$work/$toy" --num=5000 --progress=false >/dev/null
      overrides=(--data="$work/$toy") ;;
    mnist|fashion-mnist)
      if [ ! -e "$mnist/train-images-idx3-ubyte" ]; then echo "$name: skipped (no $mnist; scripts/install-deps.sh fetches it)"; continue; fi
      [ -d "$work/mnist" ] || "$bin/drift_data" convert-idx "$mnist/t10k-images-idx3-ubyte" "$mnist/t10k-labels-idx1-ubyte" \
        --out="$work/mnist" --class_names=mnist --progress=false >/dev/null
      [ -f "$work/enc.pt" ] || "$bin/drift_encoder" pretrain --data="$work/mnist" --steps=5 --batch_size=8 --holdout=16 \
        --log_every=0 --out="$work/enc.pt" >/dev/null 2>&1 || fail "pretraining a test encoder"
      overrides=(--data="$work/mnist" --encoder="$work/enc.pt") ;;
    *) echo "$name: flags checked (no data for a training step here)"; checked=$((checked + 1)); continue ;;
  esac
  run="$work/$name-run"
  "$bin/drift_train" --flagfile="$cfg" "${overrides[@]}" --run_dir="$run" --steps=2 --threads=2 >"$run.log" 2>&1 ||
    { tail -n 20 "$run.log" >&2; fail "$name: 2 training steps"; }
  "$bin/drift_ckpt" inspect "$run" --flags=false >/dev/null 2>&1 || [ -f "$run/checkpoints/step_00000002/manifest.pb" ] ||
    fail "$name: no complete checkpoint after 2 steps"
  "$bin/drift_sample" --checkpoint="$run" --num_samples=20 --out="$work/$name-samples" >"$run.sample.log" 2>&1 ||
    { tail -n 20 "$run.sample.log" >&2; fail "$name: sampling"; }
  echo "$name: 2 steps, checkpoint and sampling ok"
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || fail "no config checked"
echo "configs: $checked config(s) checked"

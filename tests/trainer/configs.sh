#!/usr/bin/env bash
# Every shipped config is usable: all its flags are known to drift_train, and every config whose
# data can be made here trains for 2 steps as shipped (only data, encoder, run folder, steps and
# threads overridden), leaves a complete checkpoint whose checksums verify and whose recorded
# flags are those of the file (nested --flagfile included), and drift_sample draws from it.
# Configs name paths relative to the project root, so the test runs from there.
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
cd "$root"
# The --name=value lines of a config, following nested --flagfile lines in order.
config_flags() { local line; while IFS= read -r line; do
  case "$line" in --flagfile=*) config_flags "${line#--flagfile=}" ;; --*=*) echo "$line" ;; esac; done <"$1"; }
mnist="$root/.cache/data/mnist"
checked=0

# A typo in a flagfile, nested or not, is an error naming the file and line (gflags alone skips it).
printf -- '--steps=2\n--gen_widht=8\n' >"$work/typo.flags"
printf -- '# nested\n--flagfile=%s\n' "$work/typo.flags" >"$work/nested.flags"
for f in typo nested; do
  if out=$("$bin/drift_train" --flagfile="$work/$f.flags" --data="$work/no-such-data" 2>&1); then fail "$f.flags: typo accepted"; fi
  grep -qF "$work/typo.flags:2: unknown flag '--gen_widht'" <<<"$out" || { echo "$out" >&2; fail "$f.flags: expected the typo named"; }
done

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
      toy=$(sed -n 's#^--data=.*/toy/\(.*\)$#\1#p' "$cfg"); toy=${toy%-unlabelled}
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
  ckpt="$run/checkpoints/step_00000002"
  manifest=$("$bin/drift_ckpt" inspect "$ckpt" --verify 2>&1) || { echo "$manifest" >&2; fail "$name: no complete, verified checkpoint after 2 steps"; }
  # Later lines win, as in gflags; the overridden flags are not the file's.
  while IFS= read -r flag; do
    key=${flag%%=*}
    case " ${overrides[*]} --run_dir --steps --threads " in *" $key"[=\ ]*) continue ;; esac
    want=${flag#*=}
    got=$(sed -n "s/^  $key=//p" <<<"$manifest")
    [ "$got" = "$want" ] && continue
    # gflags prints doubles in full (0.3 -> 0.29999999999999999): numbers compare by value.
    awk -v a="$got" -v b="$want" 'BEGIN { n = "^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$";
      exit !(a ~ n && b ~ n && (a - b) ^ 2 <= 1e-20 * (b ^ 2 + 1e-300)) }' ||
      fail "$name: the checkpoint records $key=${got:-<nothing>}, the config says $want"
  done < <(config_flags "$cfg" | awk -F= '{last[$1]=$0; if (!($1 in seen)) {order[++n]=$1; seen[$1]=1}} END {for (i=1;i<=n;i++) print last[order[i]]}')
  "$bin/drift_sample" --checkpoint="$run" --num_samples=20 --out="$work/$name-samples" >"$run.sample.log" 2>&1 ||
    { tail -n 20 "$run.sample.log" >&2; fail "$name: sampling"; }
  echo "$name: 2 steps, checkpoint and sampling ok"
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || fail "no config checked"
echo "configs: $checked config(s) checked"

#!/usr/bin/env bash
# Class-conditional MNIST (or Fashion-MNIST) end to end on this machine: data sets, MAE-pretrained
# encoder, evaluation classifier, drifting training (configs/mnist.flags or
# configs/fashion-mnist.flags), one-step sampling of 10 000 images (1 000 per class) at alpha 1
# and at the guidance scale $DRIFTLAB_EVAL_ALPHA (default 1.5), and evaluation of both (share
# classified as the requested class, classifier-feature Frechet distance and its floor, k-NN
# precision/recall) into RUN/eval.json; a 10 x 10 grid per alpha (RUN/grid-alpha*.png, one row per
# class) and the nearest training images of 20 samples (RUN/nearest.png) with the copy statistic.
#   scripts/mnist.sh [mnist|fashion-mnist] [extra drift_train flags]
# Every stage is skipped when its output exists (delete it to redo); training resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-mnist}
shift || true
case "$name" in
  mnist) raw=.cache/data/mnist; cfg=configs/mnist.flags ;;
  fashion-mnist) raw=.cache/data/fashion-mnist; cfg=configs/fashion-mnist.flags ;;
  *) echo "mnist.sh: expected 'mnist' or 'fashion-mnist', got '$name'" >&2; exit 2 ;;
esac
bin=build/bin
run=runs/$name
data=.cache/data
enc=.cache/encoders/$name-mae.pt
clf=.cache/classifiers/$name.clf
alpha=${DRIFTLAB_EVAL_ALPHA:-1.5}
[ -x "$bin/drift_train" ] || scripts/build.sh
[ -e "$raw/train-images-idx3-ubyte" ] || [ -e "$raw/train-images-idx3-ubyte.gz" ] || scripts/install-deps.sh
sfx=""; [ -e "$raw/train-images-idx3-ubyte" ] || sfx=".gz"
t0=$(date +%s)
stage() { echo "== mnist.sh [$name]: $* ($(( $(date +%s) - t0 )) s so far)"; }
if [ ! -d "$data/$name-train" ]; then
  stage "converting the IDX files"
  "$bin/drift_data" convert-idx "$raw/train-images-idx3-ubyte$sfx" "$raw/train-labels-idx1-ubyte$sfx" \
    --out="$data/$name-train" --shards=4 --class_names="$name"
  "$bin/drift_data" convert-idx "$raw/t10k-images-idx3-ubyte$sfx" "$raw/t10k-labels-idx1-ubyte$sfx" \
    --out="$data/$name-test" --class_names="$name"
fi
if [ ! -f "$enc" ]; then
  stage "MAE pretraining of the feature encoder"
  mkdir -p "$(dirname "$enc")"
  "$bin/drift_encoder" pretrain --data="$data/$name-train" --steps=800 --finetune_steps=200 --out="$enc"
fi
if [ ! -f "$clf" ]; then
  stage "training the evaluation classifier"
  mkdir -p "$(dirname "$clf")"
  "$bin/drift_eval" train-classifier --data="$data/$name-train" --test_data="$data/$name-test" --out="$clf"
fi
stage "drifting training ($cfg)"
t1=$(date +%s)
"$bin/drift_train" --flagfile="$cfg" --resume=auto "$@"
echo "mnist.sh: training took $(( $(date +%s) - t1 )) s (a finished run is not retrained)"
# Diversity is judged without guidance (alpha 1); the shipped guidance scale trades recall for
# precision and class fidelity. Both go into eval.json ({"alpha_1": ..., "alpha_A": ...}).
evals=()
for a in 1 "$alpha"; do
  stage "sampling 10000 images with one forward pass each (alpha $a)"
  "$bin/drift_sample" --checkpoint="$run" --num_samples=10000 --classes=all --alpha="$a" --out="$run/sampled-alpha$a" --force
  stage "evaluating the alpha $a samples against the test split"
  "$bin/drift_eval" compare --generated="$run/sampled-alpha$a" --reference="$data/$name-test" --classifier="$clf" \
    --json="$run/eval-alpha$a.json" --png="$run/compare-alpha$a.png"
  evals+=("\"alpha_$a\": $(cat "$run/eval-alpha$a.json")")
  # A 10 x 10 grid (one row per class); at alpha 1 also the nearest training images of 20 samples
  # and the copy statistic (distances to the training set next to held-out images').
  stage "pictures of the alpha $a samples"
  nearest=(); [ "$a" != 1 ] || nearest=(--png="$run/nearest.png" --reference="$data/$name-test")
  "$bin/drift_eval" nearest --generated="$run/sampled-alpha$a" --train="$data/$name-train" \
    --grid_png="$run/grid-alpha$a.png" "${nearest[@]}" | tee "$run/nearest-alpha$a.txt"
  [ "$a" != "$alpha" ] || break  # DRIFTLAB_EVAL_ALPHA=1: one evaluation
done
( IFS=,; printf '{%s}\n' "${evals[*]}" ) > "$run/eval.json"
stage "done: $run/samples.png, $run/grid-alpha*.png (one row per class), $run/nearest.png, $run/compare-alpha*.png, $run/eval.json"

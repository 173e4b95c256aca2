#!/usr/bin/env bash
# The README's main job: install what is needed, build, make the toy 2-D data set, train the toy
# model (configs/toy2d.flags), sample from its checkpoint with one forward pass per sample,
# score the samples against held-out data, and write the pictures.
#   scripts/demo.sh [extra drift_train flags, e.g. --steps=500]
# Outputs: runs/toy2d/samples.png (training picture), runs/toy2d/sampled.png (drift_sample),
#          runs/toy2d/eval.json (drift_eval).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
bin=build/bin
start=$(date +%s)
if [ ! -d .cache/data/toy/checkerboard ]; then
  "$bin/drift_data" toy checkerboard --out=.cache/data/toy/checkerboard --num=100000 --seed=0
fi
if [ ! -d .cache/data/toy/checkerboard-heldout ]; then
  "$bin/drift_data" toy checkerboard --out=.cache/data/toy/checkerboard-heldout --num=5000 --seed=1
fi
# --resume=auto: a finished run is not retrained; an interrupted one continues.
"$bin/drift_train" --flagfile=configs/toy2d.flags --resume=auto "$@"
"$bin/drift_sample" --checkpoint=runs/toy2d --num_samples=5000 --out=runs/toy2d/sampled --force
if [ -x "$bin/drift_eval" ]; then
  "$bin/drift_eval" compare --generated=runs/toy2d/sampled --reference=.cache/data/toy/checkerboard-heldout \
    --json=runs/toy2d/eval.json --png=runs/toy2d/compare.png
fi
echo "demo: done in $(( $(date +%s) - start )) s after the build; pictures: runs/toy2d/samples.png, runs/toy2d/sampled.png"

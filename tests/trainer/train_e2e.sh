#!/usr/bin/env bash
# End-to-end trainer contracts (docs/ARCHITECTURE.md, 'Contracts'):
#  1. world-size invariance: the same flags on 1, 2 and 3 ranks give the same parameters
#     (unconditional toy, and class-conditional with guidance negatives);
#  2. resume on the same world size is bit-for-bit: 6 steps straight == 3 + resume + 3
#     (weights, EMA and optimizer state compared exactly), also across the end of the temperature
#     warm-up, where AdamW's moments restart (and only with --tau_warmup_reset);
#  3. resume on another world size (2 -> 3, 3 -> 1) continues the same run;
#  4. further averages (--ema_extra_decays) equal the main average of a run with that decay, resume
#     bit-for-bit, and drift_sample --ema_decay picks them (a missing one is a clear error);
#  5. a step directory without manifest is ignored on resume; resume refuses changed model and
#     objective settings (the warm-up's moment restart too), listing each (--allow_objective_change admits the objective ones); --resume=none refuses to
#     overwrite a run; sampling from the result works on 1 and 3 ranks with identical output.
# Usage: train_e2e.sh BIN_DIR   (run by ctest)
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe  # the same for Open MPI 5 (PRRTE)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi() { local np=$1; shift; mpirun -np "$np" --bind-to none "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin/drift_data" toy checkerboard --out="$work/toy" --num=4000 --seed=3 --progress=false >/dev/null
"$bin/drift_data" toy 8gaussians --out="$work/toy8" --num=4000 --seed=4 --labels --progress=false >/dev/null

common=(--data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=48 --pos_per_class=40 --taus=0.05,0.2
        --lr=1e-2 --log_every=2 --image_every=0 --ckpt_every=3 --keep_last=5 --threads=1 --prefetch=1 --precision=fp32)
train() { local np=$1 dir=$2; shift 2; mpi "$np" "$bin/drift_train" "${common[@]}" --run_dir="$work/$dir" "$@" >"$work/$dir.log" 2>&1 || { cat "$work/$dir.log"; fail "training $dir on $np ranks"; }; }
# Different world sizes reduce floats in another order; Adam turns that into parameter
# differences far below one update (lr 1e-2): 1e-4 is 1% of one step, a real bug moves ~1e-2.
# These contracts are fp32's (--precision=fp32 above); bf16 has its own section below.
tol=1e-4
ck() { echo "$work/$1/checkpoints/step_$(printf %08d "$2")"; }
cmp_ck() { "$bin/drift_ckpt" compare "$1" "$2" --tol="$3" ${4:+--prefix=$4} || fail "compare $1 $2 (tol $3)"; }

echo "== world-size invariance (unconditional)"
train 1 w1 --steps=6
train 2 w2 --steps=6
train 3 w3 --steps=6
cmp_ck "$(ck w1 6)" "$(ck w2 6)" "$tol" model/
cmp_ck "$(ck w1 6)" "$(ck w3 6)" "$tol" model/

echo "== world-size invariance (class-conditional, guidance negatives)"
cond=(--data="$work/toy8" --num_classes_per_step=3 --unc_per_class=8)
train 1 c1 --steps=4 "${cond[@]}"
train 3 c3 --steps=4 "${cond[@]}"
cmp_ck "$(ck c1 4)" "$(ck c3 4)" "$tol" model/

echo "== bit-for-bit resume on the same world size (1 and 2 ranks)"
train 1 r1 --steps=3
train 1 r1 --steps=6 --resume=auto
cmp_ck "$(ck w1 6)" "$(ck r1 6)" 0
train 2 r2 --steps=3
train 2 r2 --steps=6 --resume=auto
cmp_ck "$(ck w2 6)" "$(ck r2 6)" 0

echo "== the temperature warm-up's end restarts AdamW's moments; a resume at the boundary is bit-for-bit"
train 1 wu --steps=6 --tau_warmup_steps=3
cmp_ck "$(ck r1 3)" "$(ck wu 6)" 0 optim/steps  # 3 updates since the restart, as r1 after 3 steps
train 1 wun --steps=6 --tau_warmup_steps=3 --tau_warmup_reset=false
cmp_ck "$(ck w1 6)" "$(ck wun 6)" 0 optim/steps  # no restart: 6 updates
train 1 wur --steps=3 --tau_warmup_steps=3
train 1 wur --steps=6 --tau_warmup_steps=3 --resume=auto
cmp_ck "$(ck wu 6)" "$(ck wur 6)" 0

echo "== bf16 autocast (--precision=bf16): bit-for-bit resume, world-size invariance of the losses, the record"
# bf16 rounds each product's output: a last-bit difference of the fp32 accumulation (another
# world size, another blocking) becomes a bf16 step, and Adam's first updates (about lr x sign
# of the gradient) carry it into the weights (0.016-0.025 here, as far as fp32 is from bf16).
# So across world sizes the losses are compared: within 1e-3 relative, a quarter of bf16's unit
# roundoff (3.9e-3); measured 4e-5 with LibTorch 1.13, 4.1e-4 with 2.6 (other oneDNN kernels).
# A rank's samples missing from the field moves the losses by percents. Resume on the same
# world size stays bit-for-bit.
train 1 b1 --steps=6 --precision=bf16
grep -q "precision: bf16 autocast (--precision=bf16)" "$work/b1.log" || fail "bf16 not logged"
"$bin/drift_ckpt" inspect "$(ck b1 6)" > "$work/b1.inspect"  # to a file: grep -q would cut the pipe
grep -q "^precision: bf16$" "$work/b1.inspect" || fail "the record does not say bf16"
train 1 b1r --steps=3 --precision=bf16
train 1 b1r --steps=6 --precision=bf16 --resume=auto
cmp_ck "$(ck b1 6)" "$(ck b1r 6)" 0
train 2 b2 --steps=6 --precision=bf16
train 2 b2r --steps=3 --precision=bf16
train 2 b2r --steps=6 --precision=bf16 --resume=auto
cmp_ck "$(ck b2 6)" "$(ck b2r 6)" 0
train 3 b3 --steps=6 --precision=bf16
losses() { python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["loss"]) for l in open(sys.argv[1]) if "\"loss\"" in l))' "$work/$1/metrics.jsonl"; }
python3 - "$(losses b1)" "$(losses b2)" "$(losses b3)" "$(losses w1)" <<'PY' || fail "bf16 losses differ across world sizes"
import sys
b1, b2, b3, f1 = ([float(v) for v in a.split()] for a in sys.argv[1:])
assert len(b1) == len(b2) == len(b3) == 3, (b1, b2, b3)
worst = max(abs(x - y) / abs(y) for other in (b2, b3) for x, y in zip(other, b1))
print(f"bf16 losses, 1 vs 2 and 3 ranks: largest relative difference {worst:.2e}")
assert worst < 1e-3, worst
assert b1 != f1, "bf16 and fp32 gave the same losses: autocast did not take effect"
PY
# A precision change on resume is allowed and warned (the model and the objective are the same).
train 1 b1r --steps=7 --resume=auto --precision=fp32
grep -q "precision: 'bf16' -> 'fp32'" "$work/b1r.log" || { cat "$work/b1r.log"; fail "no warning for the precision change"; }
"$bin/drift_ckpt" inspect "$(ck b1r 7)" > "$work/b1r.inspect"
grep -q "^precision: fp32$" "$work/b1r.inspect" || fail "the resumed record does not say fp32"

echo "== resume on another world size (2 -> 3, 3 -> 1)"
train 2 x23 --steps=3
train 3 x23 --steps=6 --resume=auto
cmp_ck "$(ck w1 6)" "$(ck x23 6)" "$tol" model/
train 3 x31 --steps=3
train 1 x31 --steps=6 --resume=auto
cmp_ck "$(ck w1 6)" "$(ck x31 6)" "$tol"

echo "== incomplete checkpoints are ignored; --resume=none does not touch an existing run"
train 1 inc --steps=3
mkdir -p "$work/inc/checkpoints/step_00000005" && cp "$(ck inc 3)/shard_r00000.bin" "$work/inc/checkpoints/step_00000005/"
train 1 inc --steps=6 --resume=auto
grep -q "ignoring incomplete checkpoint" "$work/inc.log" || fail "no warning about the incomplete checkpoint"
cmp_ck "$(ck w1 6)" "$(ck inc 6)" 0
if mpi 1 "$bin/drift_train" "${common[@]}" --run_dir="$work/inc" --steps=9 >"$work/none.log" 2>&1; then fail "--resume=none overwrote a run"; fi
grep -q "already holds checkpoints" "$work/none.log" || { cat "$work/none.log"; fail "unclear --resume=none error"; }

echo "== --device: cpu named explicitly trains the same run; a device this machine lacks is a clear error"
train 1 dcpu --steps=3 --device=cpu
grep -q "over mpi on cpu" "$work/dcpu.log" || { cat "$work/dcpu.log"; fail "the device is not logged"; }
cmp_ck "$(ck w1 3)" "$(ck dcpu 3)" 0
if mpi 1 "$bin/drift_train" "${common[@]}" --run_dir="$work/dtpu" --steps=1 --device=tpu >"$work/dtpu.log" 2>&1; then fail "--device=tpu accepted"; fi
grep -q -- "--device=tpu: expected auto, cpu, cuda or cuda:N" "$work/dtpu.log" || { cat "$work/dtpu.log"; fail "unclear --device error"; }
if ! nvidia-smi -L >/dev/null 2>&1; then
  if mpi 1 "$bin/drift_train" "${common[@]}" --run_dir="$work/dcuda" --steps=1 --device=cuda >"$work/dcuda.log" 2>&1; then
    fail "--device=cuda accepted without a GPU"
  fi
  grep -q -- "--device=cuda: no CUDA device is visible" "$work/dcuda.log" || { cat "$work/dcuda.log"; fail "unclear --device=cuda error"; }
fi

echo "== resume refuses changed model and objective settings, listing each; --allow_objective_change"
if mpi 1 "$bin/drift_train" "${common[@]}" --run_dir="$work/inc" --steps=9 --resume=auto --taus=0.05 --gen_width=32 \
    --tau_warmup_reset=false >"$work/change.log" 2>&1; then fail "resumed with a changed model"; fi
grep -q -- "--gen_width: '64' -> '32'" "$work/change.log" && grep -q -- "--taus: '0.05,0.2' -> '0.05'" "$work/change.log" \
  && grep -q -- "--tau_warmup_reset: 'true' -> 'false'" "$work/change.log" \
  || { cat "$work/change.log"; fail "the refusal does not list every difference"; }
train 1 inc --steps=7 --resume=auto --taus=0.05 --allow_objective_change
grep -q "resuming with a changed setting --taus" "$work/inc.log" || { cat "$work/inc.log"; fail "no warning for the allowed change"; }

echo "== further averages (--ema_extra_decays): each is the average of that decay, resumed bit-for-bit, sampled by --ema_decay"
# The EMA does not feed back into training, so run ex's average of decay 0.5 must equal the main
# average of the same run trained with --ema_decay=0.5 (e5): the sampler's output proves it.
train 1 ex --steps=6 --ema_decay=0.9 --ema_extra_decays=0.5,0.99
train 1 e5 --steps=6 --ema_decay=0.5
cmp_ck "$(ck ex 6)" "$(ck e5 6)" 0 model/
data_of() { h5dump -d /data "$work/$1/shard-00000-of-00001.h5" | tail -n +3; }
smp() { local out=$1 run=$2; shift 2; mpi 1 "$bin/drift_sample" --checkpoint="$work/$run" --num_samples=40 --out="$work/$out" "$@" \
  >"$work/$out.log" 2>&1 || { cat "$work/$out.log"; fail "sampling $out"; }; }
smp sx5 ex --ema_decay=0.5
smp s5 e5
grep -q "EMA weights (decay 0.5, kept by --ema_extra_decays)" "$work/sx5.log" || { cat "$work/sx5.log"; fail "the chosen average is not logged"; }
cmp -s <(data_of sx5) <(data_of s5) || fail "--ema_decay=0.5 of run ex differs from the main average of run e5"
smp sx9 ex --ema_decay=0.9  # the main decay named explicitly: the main average
smp sxm ex
cmp -s <(data_of sx9) <(data_of sxm) || fail "--ema_decay=0.9 (the main decay) differs from the default"
cmp -s <(data_of sxm) <(data_of sx5) && fail "the averages of decay 0.9 and 0.5 gave the same samples"
if mpi 1 "$bin/drift_sample" --checkpoint="$work/ex" --num_samples=40 --out="$work/sx7" --ema_decay=0.7 >"$work/sx7.log" 2>&1; then
  fail "--ema_decay=0.7 accepted for a run without that average"; fi
grep -q -- "--ema_decay=0.7: checkpoint .* holds the EMA weights of decay 0.9 (the main one), 0.5, 0.99" "$work/sx7.log" ||
  { cat "$work/sx7.log"; fail "unclear error for an average the run lacks"; }
train 1 exr --steps=3 --ema_decay=0.9 --ema_extra_decays=0.5,0.99
train 1 exr --steps=6 --ema_decay=0.9 --ema_extra_decays=0.5,0.99 --resume=auto
cmp_ck "$(ck ex 6)" "$(ck exr 6)" 0  # every tensor, the further averages included
# An average asked for only on resume starts from the checkpoint's main one (warned).
train 1 exa --steps=3 --ema_decay=0.9
train 1 exa --steps=6 --ema_decay=0.9 --ema_extra_decays=0.5 --resume=auto
grep -q "holds no average ema@0.5/; it starts from the main EMA" "$work/exa.log" || { cat "$work/exa.log"; fail "no warning for the new average"; }
cmp_ck "$(ck ex 6)" "$(ck exa 6)" 0 model/
smp sxa exa --ema_decay=0.5

echo "== sampling: 1 rank and 3 ranks write the same data"
mpi 1 "$bin/drift_sample" --checkpoint="$work/w1" --num_samples=50 --batch_size=16 --out="$work/s1" >/dev/null 2>&1 || fail "sampling on 1 rank"
mpi 3 "$bin/drift_sample" --checkpoint="$work/w1" --num_samples=50 --batch_size=16 --out="$work/s3" >/dev/null 2>&1 || fail "sampling on 3 ranks"
h5dump -d /data "$work/s1/shard-00000-of-00001.h5" | tail -n +3 > "$work/s1.txt"
h5dump -d /data "$work/s3/shard-00000-of-00001.h5" | tail -n +3 > "$work/s3.txt"
cmp -s "$work/s1.txt" "$work/s3.txt" || fail "1-rank and 3-rank samples differ"
# More ranks than batches: idle ranks take part in the gather with an empty slice.
mpi 3 "$bin/drift_sample" --checkpoint="$work/w1" --num_samples=20 --out="$work/s20" >/dev/null 2>&1 || fail "sampling 20 on 3 ranks"
h5dump -d /data "$work/s20/shard-00000-of-00001.h5" | tail -n +3 | grep -q "(19,0)" || fail "20 samples expected"
echo "all trainer end-to-end checks passed"

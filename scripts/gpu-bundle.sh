#!/usr/bin/env bash
# Makes a relocatable folder of every library driftlab needs beyond LibTorch, CUDA and NCCL
# (Open MPI with mpirun, HDF5 with h5dump, protobuf with protoc, gflags, glog, GoogleTest,
# Google Benchmark, libpng, zlib, libzip, pkg-config) from Debian 12 packages, for a GPU machine
# without a package registry; and proves it complete in a clean Debian root (--prove).
#
#   scripts/gpu-bundle.sh                      # the bundle in out/gpu-bundle (+ env.sh)
#   scripts/gpu-bundle.sh --tar /tmp/b         # in /tmp/b, and /tmp/b.tar.gz
#   sudo scripts/gpu-bundle.sh --prove         # the bundle, then build + ctest in a clean root
#   . out/gpu-bundle/env.sh                    # on the target: PATH, LD_LIBRARY_PATH, ...
set -euo pipefail

me=gpu-bundle
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/scripts/lib/debian-root.sh"

usage() {
  cat <<EOF
Usage: $0 [options] [OUT_DIR]

Downloads (apt-get download, from this machine's Debian 12 mirror) the packages listed below and
the runtime libraries they need that a bare machine (compiler, CMake, ninja, Python) lacks,
unpacks them into OUT_DIR (default: out/gpu-bundle in the checkout) without documentation,
manual pages or unneeded static libraries, makes the links Debian's maintainer scripts would make
(mpicc, mpirun, mpi.pc, hdf5.pc, ...), rewrites pkg-config files to be relocatable, writes
OUT_DIR/env.sh, prints the size and fails when it exceeds --max-mib.

Options:
  --tar             also write OUT_DIR.tar.gz (unpack anywhere: env.sh finds its own folder).
  --debs DIR        where the .deb files are kept between runs (default: OUT_DIR.debs).
  --max-mib N       size limit of OUT_DIR in MiB (default 60); larger is an error (exit 1).
  --reuse           keep an existing OUT_DIR that has env.sh (default: made afresh).
  --prove           then prove the bundle complete (needs root): a clean Debian 12 root
                    (debootstrap --variant=minbase) with build-essential, cmake, ninja-build,
                    python3, python3-numpy, python3-h5py and libtorch-dev, from which every
                    package of the bundle (-dev and runtime) is then removed with
                    'dpkg --purge --force-depends'; the check that no MPI, HDF5, protobuf,
                    gflags, glog, GoogleTest, benchmark, libpng, libzip or pkg-config file is left
                    under /usr; 'ldd' of every program and library of the bundle with only the
                    bundle added; then configure (-DDRIFTLAB_WERROR=ON), build and ctest with
                    only OUT_DIR/env.sh, as on the GPU machine.
  --root DIR        the clean root of --prove (default /var/tmp/driftlab-bundle-root; reused).
  --mirror URL      Debian mirror for debootstrap (default: the machine's apt source).
  --jobs N          parallel compile jobs of --prove (default: number of cores).
  --nice N          niceness of the work in the root (default 10).
  --exclude REGEX   ctest -E of --prove (default '$default_exclude').
  -R REGEX          ctest -R of --prove: only these tests.
  --no-tests        --prove stops after the build.
  --clean-build     --prove removes its build folder first.
  -h, --help        this text.

Packages (Debian 12 names), with their runtime dependencies:
$(echo "${explicit_packages[*]}" | fold -s -w 94 | sed 's/^/  /')
Not carried: LibTorch, CUDA, NCCL (the GPU machine's); the base set (packages of priority
required/important and what ${base_seeds[*]} pull in); and what one node
never needs (remote launch over ssh, hwloc's X11/OpenCL plugins, Fortran, account tools):
$(echo "${dropped_packages[*]}" | fold -s -w 94 | sed 's/^/  /')

The target must have glibc and libstdc++ at least as new as Debian 12's (the script prints the
highest GLIBC_ and GLIBCXX_ versions the bundle needs), and LibTorch built with the C++11 ABI.
Exit status: 0 done (and proved, with --prove), 1 a step failed, 2 bad usage.
EOF
}

default_exclude='^(slurm_e2e|slurm_two_node)$'
# Headers, CMake/pkg-config files and the unversioned .so links come from the -dev packages; the
# rest are the libraries and programs. Runtime dependencies are added by apt-cache.
explicit_packages=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
  libhdf5-dev libhdf5-103-1 libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 hdf5-tools
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 protobuf-compiler libprotoc32
  libgflags-dev libgflags2.2 libgoogle-glog-dev libgoogle-glog0v6 libunwind-dev libunwind8
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian
  libpng-dev libpng16-16 zlib1g-dev libzip-dev libzip4
  pkgconf pkgconf-bin libpkgconf3
)
# Pulled in by the packages above but not needed to build or run on one node: ssh (mpirun's
# remote launch), hwloc's X11/OpenCL/NVML plugins, Fortran.
dropped_packages=(openssh-client libhwloc-plugins libxnvctrl0 ocl-icd-libopencl1 libx11-6 libx11-data libxau6
  libxcb1 libxdmcp6 libxext6 libgfortran5 gfortran-12 adduser passwd debconf cdebconf install-info)
# The packages a bare machine has (their closure is subtracted).
base_seeds=(build-essential cmake ninja-build python3 ca-certificates)

out=""
tar_out=0
debs=""
max_mib=60
reuse=0
prove=0
root=/var/tmp/driftlab-bundle-root
mirror=""
jobs=$(nproc)
niceness=10
exclude="$default_exclude"
only=""
run_tests=1
clean_build=0

die() { echo "$me: error: $*" >&2; exit 2; }
need_arg() { [ "$#" -ge 2 ] && [ -n "${2+x}" ] || die "option $1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tar) tar_out=1; shift ;;
    --debs) need_arg "$@"; debs="$2"; shift 2 ;;
    --max-mib) need_arg "$@"; max_mib="$2"; shift 2 ;;
    --reuse) reuse=1; shift ;;
    --prove) prove=1; shift ;;
    --root) need_arg "$@"; root="$2"; shift 2 ;;
    --mirror) need_arg "$@"; mirror="$2"; shift 2 ;;
    --jobs|-j) need_arg "$@"; jobs="$2"; shift 2 ;;
    --nice) need_arg "$@"; niceness="$2"; shift 2 ;;
    --exclude|-E) need_arg "$@"; exclude="$2"; shift 2 ;;
    -R) need_arg "$@"; only="$2"; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    --clean-build) clean_build=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$out" ] || die "one OUT_DIR expected, got '$out' and '$1'"; out="$1"; shift ;;
  esac
done
[[ "$max_mib" =~ ^[1-9][0-9]*$ ]] || die "--max-mib must be a positive number, not '$max_mib'"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$jobs'"
[[ "$niceness" =~ ^-?[0-9]+$ ]] || die "--nice must be a number, not '$niceness'"
out=$(realpath -m "${out:-$repo/out/gpu-bundle}")
[ "$out" != / ] || die "OUT_DIR must not be /"
debs=$(realpath -m "${debs:-$out.debs}")
root=$(realpath -m "$root")
[ "$root" != / ] || die "--root must name a folder other than /"
for tool in apt-get apt-cache dpkg-deb readelf; do
  command -v "$tool" >/dev/null || die "'$tool' not found (this script runs on Debian 12 with apt and binutils)"
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

# ---- timing ----------------------------------------------------------------------------------
# phase NAME / print_times: scripts/lib/debian-root.sh

# deps PKG...: the packages PKG... need to run (Depends and Pre-Depends; of alternatives the first).
deps() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null |
    awk '/^ *\|?(Pre)?Depends:/ { if (!skip) print $2; skip = ($1 ~ /^\|/); next } { skip = 0 }' | grep -v '^<' | sort -u
}
# closure STOP PKG...: PKG... and, recursively, what they need, not entering the packages listed
# (one a line) in the file STOP. One apt-cache call per level of the dependency tree.
closure() {
  local stop=$1; shift
  local seen; seen=$(mktemp)
  local level=("$@")
  while [ "${#level[@]}" -gt 0 ]; do
    printf '%s\n' "${level[@]}" >> "$seen"
    mapfile -t level < <(deps "${level[@]}" | grep -vxF -f "$seen" | grep -vxF -f "$stop")
  done
  sort -u "$seen"; rm -f "$seen"
}

# ---- the bundle ------------------------------------------------------------------------------
make_bundle() {
  phase resolve
  local runtime=() p
  for p in "${explicit_packages[@]}"; do
    case "$p" in *-dev) ;; *) runtime+=("$p") ;; esac
  done
  # Base: priority required/important (dpkg, apt, libc, coreutils...) and the toolchain's closure.
  local stop; stop=$(mktemp)
  apt-cache dumpavail | awk '/^Package: /{p=$2} /^Priority: (required|important)$/{print p}' > "$stop"
  printf '%s\n' "${dropped_packages[@]}" >> "$stop"
  closure "$stop" "${base_seeds[@]}" >> "$stop"
  sort -u -o "$stop" "$stop"
  mapfile -t wanted < <( { printf '%s\n' "${explicit_packages[@]}"; closure "$stop" "${runtime[@]}" |
    grep -vxF -f "$stop" | grep -v -- '-dev$'; } | sort -u)
  rm -f "$stop"
  echo "$me: ${#wanted[@]} packages: ${wanted[*]}"

  phase download
  mkdir -p "$debs"
  local missing=()
  for p in "${wanted[@]}"; do
    compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "$me: apt-get download ${#missing[@]} packages into $debs"
    (cd "$debs" && apt-get download -q "${missing[@]}" > "$debs/download.log" 2>&1) ||
      { tail -n 20 "$debs/download.log" >&2; echo "$me: error: apt-get download failed (log: $debs/download.log; is the Debian mirror reachable? 'apt-get update' first)" >&2; exit 1; }
  fi
  echo "$me: $(du -sh "$debs" | cut -f1) of .deb files in $debs"

  phase unpack
  rm -rf "$out.new"; mkdir -p "$out.new/control"
  for p in "${wanted[@]}"; do
    local f; f=$(ls "$debs/${p}"_*.deb | head -n 1)
    dpkg-deb -x "$f" "$out.new"
    dpkg-deb -e "$f" "$out.new/control/$p"
  done
  local U="$out.new/usr" L="$out.new/usr/lib/$multiarch"
  # The links Debian's maintainer scripts make with update-alternatives (mpicc, mpirun, mpi.pc,
  # hdf5.pc, the MPI include folder...): every '--install LINK NAME PATH' and '--slave LINK NAME
  # PATH' whose PATH the bundle holds, as a relative link.
  local link target
  while read -r link target; do
    [ -e "$out.new$target" ] && [ ! -e "$out.new$link" ] && [ ! -L "$out.new$link" ] || continue
    mkdir -p "$(dirname "$out.new$link")"
    ln -s "$(realpath -m -s --relative-to="$(dirname "$link")" "$target")" "$out.new$link"
  done < <(cat "$out.new"/control/*/postinst 2>/dev/null | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' |
    grep -oE -- '--(install|slave) +[^ ]+ +[^ ]+ +[^ ]+' | awk '{print $2, $4}')
  rm -rf "$out.new/control"
  # Not needed to build or run: documentation, manual pages, Fortran and C++-binding wrappers,
  # the HDF5 tools other than h5dump, static libraries (GoogleTest's and benchmark_main are
  # only static), Open MPI's Fortran libraries and Java.
  rm -rf "$L/fortran" "$U/share/doc" "$U/share/man" "$U/share/info" "$U/share/lintian" "$U/share/bug" \
    "$U/share/doc-base" "$U/share/locale" "$U/share/bash-completion" "$out.new/etc/init.d"
  # (Static libraries a CMake package file names, as gflags' gflags_static, must stay.)
  local keep_a
  keep_a=$(find "$out.new" -name '*.cmake' -exec grep -ohE 'lib[A-Za-z0-9_+.-]+\.a\b' {} + 2>/dev/null | sort -u)
  find "$out.new" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' ! -name 'libbenchmark*.a' -print |
    while read -r f; do grep -qxF "$(basename "$f")" <<< "$keep_a" || rm -f "$f"; done
  find "$L/openmpi/lib" \( -name 'libmpi_mpifh*' -o -name 'libmpi_usempi*' -o -name 'libompitrace*' -o -name '*.mod' \
    -o -name 'libmpi_java*' -o -name 'mpi.jar' \) -exec rm -rf {} + 2>/dev/null || true
  find "$U/bin" \( -name 'h5*' ! -name 'h5dump' ! -name 'h5cc' ! -name 'h5c++' \) -delete 2>/dev/null || true
  find "$U/bin" \( -name 'mpif*' -o -name 'mpijava*' -o -name 'oshfort*' -o -name 'shmemfort*' \) -delete 2>/dev/null || true
  find "$out.new" -xtype l -delete   # links into what was removed
  # pkg-config files: prefix relative to their own folder (${pcfiledir}), so they work wherever
  # the bundle lies.
  # A link to a .pc file in another folder becomes a copy (${pcfiledir} is the link's folder).
  local pc rel
  while IFS= read -r pc; do
    [ "$(dirname "$(realpath "$pc")")" = "$(realpath "$(dirname "$pc")")" ] || cp --remove-destination "$(realpath "$pc")" "$pc"
  done < <(find "$out.new" -name '*.pc' -type l)
  while IFS= read -r pc; do
    rel=$(realpath -m --relative-to="$(dirname "$pc")" "$U")
    sed -i -E "s#(^[a-z_]+=|[ =]|-I|-L)/usr(/|\$| )#\1\${pcfiledir}/$rel\2#g" "$pc"
  done < <(find "$out.new" -name '*.pc' -type f)
  # CMake package files that name /usr/share (glog's module path for FindUnwind): relative too.
  local cm
  while IFS= read -r cm; do
    rel=$(realpath -m -s --relative-to="$(dirname "$cm")" "$U")
    sed -i "s#\"/usr/share/#\"\${CMAKE_CURRENT_LIST_DIR}/$rel/share/#g" "$cm"
  done < <(grep -rl '"/usr/share/' --include='*.cmake' "$out.new" || true)
  write_env "$out.new"
  for p in "${wanted[@]}"; do
    dpkg-deb -f "$(ls "$debs/${p}"_*.deb | head -n 1)" Package Version | paste -sd' '
  done > "$out.new/packages.txt"
  rm -rf "$out"; mv "$out.new" "$out"

  phase measure
  local kib mib
  kib=$(du -sk "$out" | cut -f1); mib=$(( (kib + 1023) / 1024 ))
  echo "$me: bundle $out: $(find "$out" -type f | wc -l) files, $kib KiB ($(awk -v k="$kib" 'BEGIN{printf "%.1f", k / 1024}') MiB; limit $max_mib MiB)"
  local glibc glibcxx
  glibc=$(find "$out" -type f \( -name '*.so*' -o -perm -u+x \) -exec readelf -W --version-info {} + 2>/dev/null |
    grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -n 1 || true)
  glibcxx=$(find "$out" -type f \( -name '*.so*' -o -perm -u+x \) -exec readelf -W --version-info {} + 2>/dev/null |
    grep -oE 'GLIBCXX_[0-9.]+' | sort -uV | tail -n 1 || true)
  echo "$me: the bundle needs $glibc and $glibcxx on the target (Debian 12: GLIBC_2.36, GLIBCXX_3.4.30)"
  if [ "$tar_out" -eq 1 ]; then
    tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
    echo "$me: $out.tar.gz: $(du -k "$out.tar.gz" | cut -f1) KiB"
  fi
  [ "$mib" -le "$max_mib" ] || { echo "$me: error: the bundle is $mib MiB, over --max-mib $max_mib" >&2; exit 1; }
}

# write_env DIR: DIR/env.sh, which finds its own folder, so the bundle can be moved or unpacked
# anywhere. Open MPI's compiled-in paths (/usr/...) are replaced through OPAL_PREFIX and the
# OPAL_* install-directory variables (help files, MCA components, wrapper data, mca-params.conf),
# PMIx's (Debian's prefix: lib/<arch>/pmix2) through PMIX_INSTALL_PREFIX; HDF5 is found by CMake through HDF5_ROOT (Debian keeps it
# in lib/<arch>/hdf5/serial), MPI through the relocated mpicc on PATH.
write_env() {
  cat > "$1/env.sh" <<EOF
# driftlab dependency bundle (scripts/gpu-bundle.sh): source it, do not run it.
#   . /path/to/bundle/env.sh
_b=\$(cd "\$(dirname "\${BASH_SOURCE[0]:-\$0}")" && pwd)
_u=\$_b/usr
_l=\$_u/lib/$multiarch
export DRIFTLAB_BUNDLE=\$_b
export PATH=\$_u/bin\${PATH:+:\$PATH}
export LD_LIBRARY_PATH=\$_l:\$_b/lib/$multiarch:\$_l/openmpi/lib:\$_l/hdf5/serial:\$_l/ucx\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export CMAKE_PREFIX_PATH=\$_u\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
export PKG_CONFIG_PATH=\$_l/pkgconfig:\$_u/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}
export HDF5_ROOT=\$_l/hdf5/serial
export MPI_HOME=\$_u
export OPAL_PREFIX=\$_u
export OPAL_EXEC_PREFIX=\$_u
export OPAL_BINDIR=\$_u/bin
export OPAL_LIBDIR=\$_l/openmpi/lib
export OPAL_INCLUDEDIR=\$_l/openmpi/include
export OPAL_DATAROOTDIR=\$_u/share
export OPAL_DATADIR=\$_u/share
export OPAL_PKGDATADIR=\$_u/share/openmpi
export OPAL_PKGLIBDIR=\$_l/openmpi/lib/openmpi3
export OPAL_SYSCONFDIR=\$_b/etc/openmpi
export PMIX_INSTALL_PREFIX=\$_l/pmix2
# Open MPI 4's launcher refuses to start, even on one node, when its remote agent (ssh or rsh)
# is missing; a bare machine has neither. 'false' is never run for local ranks.
command -v ssh >/dev/null 2>&1 || command -v rsh >/dev/null 2>&1 || export OMPI_MCA_plm_rsh_agent=\${OMPI_MCA_plm_rsh_agent:-false}
unset _b _u _l
EOF
}

if [ "$reuse" -eq 1 ] && [ -f "$out/env.sh" ]; then
  echo "$me: reusing the bundle in $out ($(du -sk "$out" | cut -f1) KiB)"
else
  make_bundle
fi

if [ "$prove" -eq 0 ]; then
  print_times
  echo "$me: done; on the target: . $out/env.sh"
  exit 0
fi

# ---- the proof in a clean root ---------------------------------------------------------------
phase root
debroot_require_tools bookworm
[ -n "$mirror" ] || mirror=$(debroot_default_mirror)
debroot_make bookworm "$mirror"
mkdir -p "$root/work"
src="$root/work/driftlab"
bld="$root/work/build"
inside=/opt/driftlab-bundle   # another path than where the bundle was made: relocation is tested

# Installed packages of the root that would provide what the bundle must provide.
shadowing() {
  chroot "$root" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 ~ /^[ih]/ {print $2}' |
    grep -E '^(lib(open)?mpi|openmpi|mpi-default|libhdf5|hdf5-|libprotobuf|libprotoc|protobuf-compiler|libgflags|libgoogle-glog|libgtest|libgmock|googletest|libbenchmark|libpng|libzip|zlib1g-dev|pkgconf|pkg-config|libpkgconf|libunwind-dev)' || true
}
# Files under /usr of the root that the build or a test could find instead of the bundle's.
leftovers() {
  (cd "$root" && find usr etc/alternatives \( -name 'libmpi.so*' -o -name 'mpi.h' -o -name 'mpicc*' -o -name 'mpirun*' \
    -o -name 'mpiexec*' -o -name 'orterun' -o -name 'libhdf5*' -o -name 'hdf5.h' -o -name 'h5dump' -o -name 'h5cc*' \
    -o -name 'libprotobuf*' -o -name 'protoc' -o -name 'libgflags*' -o -name 'libglog*' -o -name 'libgtest*' \
    -o -name 'libgmock*' -o -name 'libbenchmark*' -o -name 'libpng*.so*' -o -name 'png.h' -o -name 'libzip.so*' \
    -o -name 'zip.h' -o -name 'zlib.h' -o -name 'pkg-config' -o -name 'pkgconf' -o -name 'GTestConfig.cmake' \
    -o -name 'glog-config.cmake' -o -name 'gflags-config.cmake' \) -print 2>/dev/null) | sort
}

phase packages
marker="$root/work/bundle-proof-packages.done"
base_tools=(build-essential cmake ninja-build python3 procps unzip)
rest=(python3-numpy python3-h5py libtorch-dev libopenblas0-pthread)
if [ -f "$marker" ]; then
  echo "$me: the root's packages are in place ($(cat "$marker"))"
else
  in_root apt-get update -qq || { echo "$me: error: apt-get update in the root failed (is $mirror reachable?)" >&2; exit 1; }
  echo "$me: installing the base set: ${base_tools[*]}"
  in_root nice -n "$niceness" apt-get install -y -qq --no-install-recommends "${base_tools[@]}" > "$root/work/apt-base.log" 2>&1 ||
    { tail -n 30 "$root/work/apt-base.log" >&2; echo "$me: error: apt-get install in the root failed (log: $root/work/apt-base.log)" >&2; exit 1; }
  # The bundle on the base set alone: every program and library must find its libraries.
  rm -rf "$root$inside"; cp -a "$out" "$root$inside"
  in_root bash -c ". $inside/env.sh; find $inside -type f \\( -name '*.so*' -o -perm -u+x \\) | while read -r f; do
      case \$(head -c 4 \"\$f\" | od -An -c | tr -d ' ') in *ELF*) ;; *) continue ;; esac
      ldd \"\$f\" 2>&1 | sed -n \"s|^[[:space:]]*\\(.*not found\\)|\$f: \\1|p\"; done" > "$root/work/ldd-base.txt" 2>&1 || true
  echo "$me: ldd on the base set: $(grep -c 'not found' "$root/work/ldd-base.txt" || true) unresolved libraries (list: $root/work/ldd-base.txt)"
  echo "$me: installing ${rest[*]} (LibTorch and what it pulls in, which is removed below)"
  in_root nice -n "$niceness" apt-get install -y -qq --no-install-recommends "${rest[@]}" > "$root/work/apt.log" 2>&1 ||
    { tail -n 30 "$root/work/apt.log" >&2; echo "$me: error: apt-get install in the root failed (log: $root/work/apt.log)" >&2; exit 1; }
  in_root apt-get clean
  alt="/usr/lib/$multiarch/openblas-pthread/libblas.so.3"
  [ ! -e "$root$alt" ] || chroot "$root" update-alternatives --set "libblas.so.3-$multiarch" "$alt" >/dev/null 2>&1 || true
  mapfile -t purge < <(shadowing)
  echo "$me: removing ${#purge[@]} packages that LibTorch pulled in and the bundle replaces: ${purge[*]}"
  chroot "$root" dpkg --purge --force-depends "${purge[@]}" > "$root/work/purge.log" 2>&1 ||
    { tail -n 20 "$root/work/purge.log" >&2; echo "$me: error: dpkg --purge failed (log: $root/work/purge.log)" >&2; exit 1; }
  echo "$(date -u +%FT%TZ): removed ${purge[*]}" > "$marker"
fi
left_pkgs=$(shadowing | tr '\n' ' ')
left_files=$(leftovers)
if [ -n "$left_pkgs" ] || [ -n "$left_files" ]; then
  echo "$me: error: the root still has what the bundle must provide: packages '${left_pkgs}' files:" >&2
  echo "$left_files" | head -n 20 >&2
  exit 1
fi
echo "$me: no MPI, HDF5, protobuf, gflags, glog, GoogleTest, benchmark, libpng, libzip, zlib headers or pkg-config left in the root"
torch_pkg=$(chroot "$root" dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo '?')

phase copy
rm -rf "$root$inside"; cp -a "$out" "$root$inside"
debroot_copy_tree "$repo" "$src"
mkdir -p "$src/build"; ln -s /work/build/bin "$src/build/bin"   # scripts/seeds.sh (ctest seeds_e2e)
in_root bash -c ". $inside/env.sh; find $inside -type f \\( -name '*.so*' -o -perm -u+x \\) | while read -r f; do
    case \$(head -c 4 \"\$f\" | od -An -c | tr -d ' ') in *ELF*) ;; *) continue ;; esac
    ldd \"\$f\" 2>&1 | sed -n \"s|^[[:space:]]*\\(.*not found\\)|\$f: \\1|p\"; done" > "$root/work/ldd.txt" 2>&1 || true
echo "$me: ldd of the bundle in the root: $(grep -c 'not found' "$root/work/ldd.txt" || true) unresolved (list: $root/work/ldd.txt)"
in_root bash -c ". $inside/env.sh; mpicc -showme; mpirun --version | head -n 1; protoc --version; pkg-config --modversion libzip; h5dump --version" \
  > "$root/work/tools.txt" 2>&1 || { cat "$root/work/tools.txt" >&2; echo "$me: error: a tool of the bundle failed in the root" >&2; exit 1; }
sed "s/^/$me:   /" "$root/work/tools.txt"

phase configure
[ "$clean_build" -eq 0 ] || rm -rf "$bld"
if ! in_root bash -c ". $inside/env.sh && nice -n $niceness cmake -S /work/driftlab -B /work/build -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DDRIFTLAB_WERROR=ON" > "$root/work/configure.log" 2>&1; then
  tail -n 40 "$root/work/configure.log" >&2
  echo "$me: error: configure with the bundle failed (log: $root/work/configure.log)" >&2; print_times; exit 1
fi
sed -n '/driftlab .* configuration/,$p' "$root/work/configure.log"
# What the build uses must come from the bundle: every found library path of the cache.
outside=$(grep -E '^(MPI|HDF5|Protobuf|PROTOBUF|gflags|glog|GTest|benchmark|PNG|ZLIB|LIBZIP|PKG_CONFIG|Unwind)[A-Za-z0-9_]*:(FILEPATH|PATH|STRING|INTERNAL)=/' \
  "$bld/CMakeCache.txt" | grep -v "$inside" | grep -vE '=/usr/lib/gcc|=/usr/lib/'"$multiarch"'/lib(m|dl|pthread|rt|c)\.|NOTFOUND' || true)
if [ -n "$outside" ]; then
  echo "$me: error: the configure found these outside the bundle:" >&2; echo "$outside" >&2; print_times; exit 1
fi
echo "$me: every MPI, HDF5, protobuf, gflags, glog, GTest, benchmark, PNG, zlib and libzip path of the CMake cache is in $inside"

phase build
set +e
in_root bash -c ". $inside/env.sh && nice -n $niceness cmake --build /work/build -j$jobs -- -k 0" > "$root/work/build.log" 2>&1
build_rc=$?
set -e
if [ "$build_rc" -ne 0 ]; then
  grep -E 'error|FAILED' "$root/work/build.log" | head -n 30 >&2
  echo "$me: error: build with the bundle failed (log: $root/work/build.log)" >&2; print_times; exit 1
fi
echo "$me: build passed (-DDRIFTLAB_WERROR=ON; log: $root/work/build.log)"
if [ "$run_tests" -eq 0 ]; then
  print_times
  echo "$me: bundle $(du -sk "$out" | cut -f1) KiB: configure and build passed in the clean root (LibTorch $torch_pkg); tests not run (--no-tests)"
  exit 0
fi

phase test
ctest_args=(--test-dir /work/build --output-on-failure)
[ -z "$exclude" ] || ctest_args+=(-E "$exclude")
[ -z "$only" ] || ctest_args+=(-R "$only")
set +e
in_root bash -c '. '"$inside"'/env.sh && nice -n '"$niceness"' ctest "$@"' ctest "${ctest_args[@]}" > "$root/work/ctest.log" 2>&1
test_rc=$?
set -e
print_times
IFS=$'\t' read -r counts failed_names < <(ctest_counts "$root/work/ctest.log")
read -r passed failed skipped total <<< "$counts"
grep -q 'tests failed out of' "$root/work/ctest.log" || echo "$me: ctest ended before its summary (status $test_rc)"
echo "$me: bundle $(du -sk "$out" | cut -f1) KiB, LibTorch $torch_pkg: $passed passed, $failed failed${failed_names:+ ($failed_names)}, $skipped skipped of $total run (excluded: ${exclude:-none}${only:+; only: $only}; log: $root/work/ctest.log)"
[ "$test_rc" -eq 0 ] || exit 1

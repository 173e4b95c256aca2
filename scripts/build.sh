#!/usr/bin/env bash
# Configures and builds driftlab into build/ (binaries in build/bin/). Extra arguments go to
# CMake's configure step, e.g. scripts/build.sh -DTorch_DIR=/path/to/libtorch/share/cmake/Torch
# Under CI=true, warnings in project code are errors.
set -euo pipefail
cd "$(dirname "$0")/.."
werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
jobs="${DRIFTLAB_JOBS:-$(nproc)}"
start=$(date +%s)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDRIFTLAB_WERROR="$werror" "$@"
cmake --build build -j"$jobs"
echo "build: done in $(( $(date +%s) - start )) s; binaries in $(pwd)/build/bin"

#!/usr/bin/env bash
# The README's test command: installs what is needed, builds, and runs the whole test suite
# (unit tests, multi-rank tests under mpirun -np 2 and -np 3, end-to-end scripts).
# Extra arguments go to ctest, e.g. scripts/test.sh -R drift
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
start=$(date +%s)
ctest --test-dir build --output-on-failure -j"${DRIFTLAB_JOBS:-$(nproc)}" "$@"
echo "test: passed in $(( $(date +%s) - start )) s"

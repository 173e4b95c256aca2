#!/usr/bin/env bash
# Compiles (syntax and types only: -fsyntax-only) every source file with CUDA code paths as a CUDA
# build would, on a machine whose LibTorch has no CUDA: the build's own compile command of each
# file (or of a file beside it, for files only a CUDA build compiles), with a driftlab_config.h
# that says DRIFTLAB_WITH_CUDA 1 and DRIFTLAB_WITH_NCCL 1 put first on the include path. LibTorch's
# c10/cuda and ATen/cuda headers and the CUDA toolkit's headers must be installed (Debian's
# libtorch-dev has the former; the toolkit is what WITH_NCCL found). Errors in code that only a GPU
# machine compiles show up here instead of in the first minutes of a GPU slot.
#
#   scripts/check-cuda-code.sh [BUILD_DIR]     (default: build; run by ctest as cuda_code_compiles)
#
# Files checked: every .cpp under src/, tests/ and bench/ that mentions DRIFTLAB_WITH_CUDA.
# Exit status: 0 all compile, 1 a file does not, 2 the set-up is missing (message says what).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$repo/build}" 2>/dev/null && pwd) || { echo "check-cuda-code: no build folder '${1:-build}'" >&2; exit 2; }
db="$build/compile_commands.json"
[ -f "$db" ] || { echo "check-cuda-code: $db is missing (configure with CMake >= 3.22; the project turns it on)" >&2; exit 2; }
if grep -q '^#define DRIFTLAB_WITH_CUDA 1' "$build/include/driftlab_config.h"; then
  echo "check-cuda-code: this build already compiles the CUDA code paths (DRIFTLAB_WITH_CUDA 1): nothing to check"
  exit 0
fi

tmp=$(mktemp -d /tmp/driftlab-cuda-code.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
sed -e 's/^#define DRIFTLAB_WITH_CUDA .*/#define DRIFTLAB_WITH_CUDA 1/' \
    -e 's/^#define DRIFTLAB_WITH_NCCL .*/#define DRIFTLAB_WITH_NCCL 1/' "$build/include/driftlab_config.h" > "$tmp/driftlab_config.h"

# A CPU LibTorch lacks the one header its CUDA build generates (c10/cuda/impl/cuda_cmake_macros.h:
# whether c10_cuda is a shared library); the stand-in says what every PyTorch wheel has (shared).
if ! find /usr/include /usr/local/include -path '*c10/cuda/impl/cuda_cmake_macros.h' -print -quit 2>/dev/null | grep -q .; then
  mkdir -p "$tmp/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/c10/cuda/impl/cuda_cmake_macros.h"
fi

mapfile -t files < <(cd "$repo" && grep -rl --include='*.cpp' 'DRIFTLAB_WITH_CUDA' src tests bench | sort)
[ "${#files[@]}" -gt 0 ] || { echo "check-cuda-code: no file mentions DRIFTLAB_WITH_CUDA" >&2; exit 2; }

# One shell-quoted command line per file: its own entry in the database, else that of a file in
# the same folder; output flags dropped, -fsyntax-only and the forced configuration added.
python3 - "$db" "$repo" "$tmp" "${files[@]}" > "$tmp/commands" <<'PY'
import json, os, shlex, sys
db, repo, tmp, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
entries = json.load(open(db))
by_file = {os.path.realpath(e["file"]): e for e in entries}
def args_of(e):
    return e["arguments"] if "arguments" in e else shlex.split(e["command"])
for f in files:
    path = os.path.realpath(os.path.join(repo, f))
    e = by_file.get(path)
    if e is None:
        near = [p for p in by_file if os.path.dirname(p) == os.path.dirname(path)]
        if not near:
            sys.exit(f"check-cuda-code: no compile command for {f} nor for a file beside it (is its folder built?)")
        e = by_file[sorted(near)[0]]
    a = args_of(e)
    out, skip = [a[0], "-I" + tmp, "-fsyntax-only"], False
    for i, x in enumerate(a[1:], 1):
        if skip:
            skip = False
            continue
        if x in ("-o", "-c", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if x in ("-MD", "-MMD") or x == e["file"] or os.path.realpath(os.path.join(e["directory"], x)) == os.path.realpath(e["file"]):
            continue
        out.append(x)
    out.append(path)
    print(f + "\t" + e["directory"] + "\t" + shlex.join(out))
PY

fail=0
while IFS=$'\t' read -r f dir cmd; do
  t0=$(date +%s)
  if (cd "$dir" && eval "$cmd") > "$tmp/out" 2>&1; then
    echo "ok    $f ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAIL  $f"
    sed -n '1,60p' "$tmp/out"
    fail=1
  fi
done < "$tmp/commands"
[ $fail -eq 0 ] && echo "check-cuda-code: ${#files[@]} file(s) compile with DRIFTLAB_WITH_CUDA=1" || echo "check-cuda-code: FAILED" >&2
exit $fail

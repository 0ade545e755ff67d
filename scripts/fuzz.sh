#!/usr/bin/env bash
# Runs every parser fuzz target for a bounded time (FUZZ_SECONDS each,
# default 60), seeded with real Go binaries from the workload builds.
# Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export AYA_BUILD_SKIP=1
for target in buildinfo elf pclntab dwarf prologue; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  # Seeds: the Go binaries the tests built (if any), read-only copies.
  for seed in target/workloads/*/loadgen; do
    [ -f "$seed" ] && cp -n "$seed" "$corpus/$(echo "$seed" | tr / _)" || true
  done
  echo "fuzz: $target for ${seconds}s" >&2
  (cd fuzz && cargo +nightly fuzz run "$target" "../$corpus" -- \
      -max_total_time="$seconds" -max_len=$((16 << 20)) -rss_limit_mb=4096) || {
    echo "fuzz: $target FOUND A CRASH (see fuzz/artifacts/$target)" >&2
    exit 1
  }
done
echo "fuzz: no crash in any target" >&2

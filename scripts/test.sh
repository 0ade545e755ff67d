#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds goscope (with its
# eBPF programs), runs every test, then a bounded fuzz run. Run as root:
# the eBPF tests need it, and with GOSCOPE_CI=1 (set by .ci/run) a test
# that cannot run is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release
# The release artifacts (static binary, completions, man pages, .deb):
# tests/integration/dist.rs checks them.
cargo xtask dist
cargo test --release -- --test-threads="${GOSCOPE_TEST_THREADS:-2}"
# A bounded fuzz run of every target (FUZZ_SECONDS each; GOSCOPE_FUZZ=0
# skips it). The test above already replayed the committed corpus.
if [ "${GOSCOPE_FUZZ:-1}" != 0 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-10} ./scripts/fuzz.sh
fi

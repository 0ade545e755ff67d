#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds goscope (with its
# eBPF programs) and runs every test. Run as root: the eBPF tests need it,
# and with GOSCOPE_CI=1 (set by .ci/run) a test that cannot run is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release
cargo test --release -- --test-threads="${GOSCOPE_TEST_THREADS:-2}"

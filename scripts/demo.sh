#!/usr/bin/env bash
# The main job on an embedded default: installs prerequisites, builds
# goscope, starts the bundled demo Go workload (workloads/loadgen, mixed
# allocation/GC/goroutine/cgo load), attaches `goscope doctor` to it and
# prints the report. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release
target_bin=$(cargo xtask workload --go "${GOSCOPE_DEMO_GO:-1.27}")
"$target_bin" -work mixed -background >/dev/null &
demo_pid=$!
trap 'kill $demo_pid 2>/dev/null || true' EXIT
sleep 1
echo "demo: Go workload running as pid $demo_pid ($target_bin)" >&2
echo "demo: sudo goscope doctor --pid $demo_pid --duration ${GOSCOPE_DEMO_SECONDS:-10}" >&2
./target/release/goscope doctor --pid "$demo_pid" --duration "${GOSCOPE_DEMO_SECONDS:-10}" "$@"

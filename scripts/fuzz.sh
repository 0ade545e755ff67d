#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 60;
# FUZZ_TARGETS narrows the list). Seeds: the committed corpus
# fuzz/corpus/<target>/ (never written here) and, for the targets that take
# an executable, the Go binaries the tests built. New inputs go to
# fuzz/target/corpus/<target>/. A crash, an input over FUZZ_TIMEOUT seconds
# (default 10) or one allocation over 2 GiB fails the run, with the input
# in fuzz/artifacts/<target>/. Needs the nightly toolchain and cargo-fuzz
# (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-10}
all="buildinfo elf pclntab dwarf prologue lines layout globals snapshot memprofile goroutines cgroup proc"
targets=${FUZZ_TARGETS:-$all}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The fuzz crate is its own workspace (fuzz/target): skipping the eBPF
# build there does not touch the main build.
export AYA_BUILD_SKIP=1
start=$(date +%s)
(cd fuzz && cargo +nightly fuzz build 2>&1 | tail -n 3) >&2
echo "fuzz: built in $(( $(date +%s) - start ))s" >&2
for target in $targets; do
  work=fuzz/target/corpus/$target
  mkdir -p "$work"
  dirs=("$work")
  [ -d "fuzz/corpus/$target" ] && dirs+=("fuzz/corpus/$target")
  case $target in
    buildinfo|elf|pclntab|dwarf|layout|globals)
      # Seeds: up to four of the Go binaries the tests built (spread over
      # their versions and build modes), copied.
      mapfile -t built < <(ls target/workloads/*/loadgen 2>/dev/null || true)
      n=${#built[@]}
      if [ "$n" -gt 0 ]; then
        for i in 0 $((n / 3)) $((2 * n / 3)) $((n - 1)); do
          seed=${built[$i]}
          cp -n "$seed" "$work/$(echo "$seed" | tr / _)" || true
        done
      fi ;;
  esac
  echo "fuzz: $target for ${seconds}s" >&2
  (cd fuzz && cargo +nightly fuzz run "$target" "${dirs[@]/#/../}" -- \
      -max_total_time="$seconds" -timeout="$timeout" -max_len=$((16 << 20)) \
      -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1 2>&1 |
      { grep -E '^(stat::number_of_executed_units|==|SUMMARY|Done)|ERROR|panicked' >&2 || true; }) || {
    echo "fuzz: $target FOUND A CRASH (see fuzz/artifacts/$target)" >&2
    exit 1
  }
done
echo "fuzz: no crash in any target ($(( $(date +%s) - start ))s)" >&2

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the libFuzzer harnesses built by `make fuzz` (LAMINA_FUZZ=ON), each for a fixed time.
#
#   tests/fuzz/run_fuzz.sh BUILD_DIR SECONDS [TARGET...]     (no TARGET: all of them)
#
# Each target starts from its seed corpus (tests/fuzz/corpus/TARGET/, never written to) plus
# what earlier runs found (BUILD_DIR/fuzz-corpus/TARGET/, where new inputs go), with its
# dictionary (tests/fuzz/TARGET.dict) when there is one. A crash, leak, timeout or failed
# check is saved as BUILD_DIR/fuzz-artifacts/TARGET-crash-<sha1> (reproduce: run the target's
# binary on that file). Prints one line of figures per target; exits 1 when any target failed.
set -uo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(mount_options manifest layer_tar oci_json store_json registry)
fi
# The store harnesses make a temp store per run: on tmpfs when there is one (no disk syncs).
if [[ -z "${TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"
failed=()
for t in "${targets[@]}"; do
  bin="$build/bin/fuzz_$t"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz: no $bin (build with LAMINA_FUZZ=ON: make fuzz)" >&2
    failed+=("$t")
    continue
  fi
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$build/fuzz-artifacts/$t-")
  [[ -f "$here/$t.dict" ]] && args+=(-dict="$here/$t.dict")
  log="$build/fuzz-logs/$t.log"
  "$bin" "${args[@]}" "$work" "$here/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  printf 'fuzz %-14s %5ss  execs %-10s exec/s %-7s cov %-6s ft %-6s corpus %s\n' "$t" \
    "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
  if [[ $rc -ne 0 ]]; then
    echo "fuzz: $t FAILED (exit $rc); the end of $log:" >&2
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x|Test unit written' "$log" | head -n 30 | cut -c1-240 >&2
    failed+=("$t")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"

#!/usr/bin/env bash
# Runs every fuzz target for a short fixed time (CI): the committed seeds and regressions
# first, then libFuzzer's own mutations for MUSUBI_FUZZ_SECONDS (default 8) per target.
#
# It builds the targets the way `cargo fuzz build -s none --release` does (coverage
# instrumentation, no sanitizer), with plain cargo, so CI needs neither cargo-fuzz nor
# nightly: RUSTC_BOOTSTRAP=1 allows the one unstable flag set on the stable toolchain.
# Long runs with AddressSanitizer are described in fuzz/README.md.
#
#   scripts/fuzz-smoke.sh            # every target
#   scripts/fuzz-smoke.sh sync_frame # some targets
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${MUSUBI_FUZZ_SECONDS:-8}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# Its own target directory: these flags would otherwise invalidate cargo-fuzz's build.
export CARGO_TARGET_DIR="$PWD/target/smoke"

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed -n 's/\.rs$//p')
fi

# The enrollment targets need musubi-engine's `net` (feature `net` of the fuzz crate); every
# other target is built first without it, which shows it needs musubi-core alone.
net_targets=" cert_answer cert_request enroll_cert enroll_ticket "
core_bins=()
net_bins=()
for t in "${targets[@]}"; do
  case "$net_targets" in
    *" $t "*) net_bins+=(--bin "$t") ;;
    *) core_bins+=(--bin "$t") ;;
  esac
done
echo "fuzz-smoke: building ${#targets[@]} targets"
if [ "${#core_bins[@]}" -gt 0 ]; then
  cargo build --release --locked --target "$triple" "${core_bins[@]}"
fi
if [ "${#net_bins[@]}" -gt 0 ]; then
  cargo build --release --locked --target "$triple" --features net "${net_bins[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$triple/release/$t"
  inputs=()
  [ -d "corpus-seed/$t" ] && inputs+=("corpus-seed/$t")
  [ -d "regressions/$t" ] && inputs+=("regressions/$t")
  mkdir -p "$work/$t"
  # The regressions hold inputs of findings that are documented and accepted in
  # fuzz/README.md (set order); a target decides on its own whether they fail.
  if "$bin" "$work/$t" "${inputs[@]}" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="$work/$t-" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")"
    echo "fuzz-smoke: $t ok (${runs:-?} runs in ${seconds}s)"
  else
    echo "fuzz-smoke: $t FAILED; its log:" >&2
    tail -n 40 "$work/$t.log" >&2
    failed=1
  fi
done
exit "$failed"

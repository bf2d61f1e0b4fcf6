#!/usr/bin/env bash
# `make fuzz`: runs every target (or those named) for FUZZ_SECONDS each (default 600), with
# libFuzzer's limits: 512 MiB of memory, 10 s per input. Corpora grow in fuzz/corpus/NAME;
# a crash input lands in fuzz/artifacts/NAME/ (keep it: the replay test runs it on stable).
# libFuzzer needs nightly flags: RUSTC_BOOTSTRAP lets the stable toolchain take them.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${FUZZ_SECONDS:-600}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^haul-fuzz$')
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
status=0
for target in "${targets[@]}"; do
  mkdir -p "artifacts/$target"
  log=$(mktemp)
  if cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" \
    -rss_limit_mb=512 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$target: $result, ${runs:-?} executions in ${seconds} s, corpus $(ls "corpus/$target" | wc -l) files"
  [ "$result" = ok ] || tail -30 "$log"
  rm -f "$log"
done
exit $status

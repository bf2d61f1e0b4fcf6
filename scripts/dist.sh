#!/usr/bin/env bash
# make dist: writes dist/ with one self-contained haul per machine a site runs, each with its
# .sha256 (`sha256sum -c haul-….sha256` in dist/) and a CycloneDX SBOM of the crates it holds:
#   haul-x86_64-linux        x86_64 Linux, glibc 2.17 or later (RHEL 7 onwards)
#   haul-aarch64-linux       arm64 Linux, glibc 2.17 or later
#   haul-x86_64-windows.exe  Windows 10 or later, x86_64
# The Linux binaries are linked by zig against glibc 2.17's symbols; the Windows one by
# mingw-w64. `haul --version` names the commit. Usage: scripts/dist.sh [TARGET…] (default all
# three; HAUL_DIST_TARGETS too).
set -euo pipefail
cd "$(dirname "$0")/.."

all=(x86_64-linux aarch64-linux x86_64-windows)
if [ "$#" -gt 0 ]; then targets=("$@"); else read -ra targets <<<"${HAUL_DIST_TARGETS:-${all[*]}}"; fi
MAX_BYTES=$((25 * 1024 * 1024))

scripts/install-dist-deps.sh
# Ctrl-C or SIGTERM ends the run through `exit`, so the EXIT trap removes what was half made.
trap 'rm -f dist/.*.partial haul_bin.cdx.json' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p dist
# The commit goes into every binary's --version, whatever tree cargo sees.
export HAUL_COMMIT
HAUL_COMMIT=$(git log -1 --format='%h %cs' 2>/dev/null || true)
if [ -n "$HAUL_COMMIT" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  HAUL_COMMIT=${HAUL_COMMIT/ /-dirty }
fi

for name in "${targets[@]}"; do
  start=$SECONDS
  case "$name" in
    x86_64-linux)
      triple=x86_64-unknown-linux-gnu; exe=haul
      cargo zigbuild --locked --profile dist --target "$triple.2.17" ;;
    aarch64-linux)
      triple=aarch64-unknown-linux-gnu; exe=haul
      cargo zigbuild --locked --profile dist --target "$triple.2.17" ;;
    x86_64-windows)
      triple=x86_64-pc-windows-gnu; exe=haul.exe
      CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
      CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc \
      AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar \
        cargo build --locked --profile dist --target "$triple" ;;
    *) echo "dist: unknown target $name (known: ${all[*]})" >&2; exit 2 ;;
  esac
  out=haul-$name${exe#haul}
  # Under temporary names first, renamed once the binary, its checksum and its SBOM are all
  # written: dist/ never holds a half-written file under a final name, and an interrupted run
  # leaves none (the trap).
  cp "$TARGET_DIR/$triple/dist/$exe" "dist/.$out.partial"
  size=$(stat -c %s "dist/.$out.partial")
  if [ "$size" -gt "$MAX_BYTES" ]; then
    echo "dist: $out is $size bytes, over the 25 MiB a site should have to carry" >&2
    exit 1
  fi
  sum=$(sha256sum "dist/.$out.partial" | cut -d' ' -f1)
  echo "$sum  $out" > "dist/.$out.sha256.partial"
  # The SBOM of the crates this target's build holds (dependencies of other platforms left out;
  # build-time crates such as cc and cmake too: they are not in the binary).
  cargo cyclonedx --quiet --format json --spec-version 1.5 --target "$triple" --describe binaries \
    --no-build-deps
  mv haul_bin.cdx.json "dist/.$out.cdx.json.partial"
  mv "dist/.$out.partial" "dist/$out"
  mv "dist/.$out.sha256.partial" "dist/$out.sha256"
  mv "dist/.$out.cdx.json.partial" "dist/$out.cdx.json"
  echo "dist: dist/$out  $((size / 1024 / 1024)) MiB  built in $((SECONDS - start)) s" >&2
done

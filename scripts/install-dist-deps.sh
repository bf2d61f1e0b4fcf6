#!/usr/bin/env bash
# Installs what `make dist` builds with, when missing (each tool pinned; see "Refreshing" below):
#   rustup targets   the standard library for aarch64-unknown-linux-gnu and x86_64-pc-windows-gnu
#                    (rustup, the toolchain's own client)
#   zig              the C compiler and linker for the Linux targets, against glibc 2.17's symbols
#                    (PyPI's ziglang wheel, with the system's pip and its configured index)
#   cargo-zigbuild   drives cargo with zig as linker (cargo install)
#   cargo-cyclonedx  writes the CycloneDX SBOM of the crates each binary holds (cargo install)
#   Debian packages  gcc-mingw-w64-x86-64 (the Windows linker and C compiler), nasm (aws-lc's
#                    assembly for Windows)
# Refreshing: change a version below, run `make dist` and then `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
CYCLONEDX_VERSION=0.5.9
TARGETS=(aarch64-unknown-linux-gnu x86_64-pc-windows-gnu)

scripts/install-test-deps.sh gcc-mingw-w64-x86-64 nasm

toolchain=$(rustc --version | awk '{print $2}')
installed=$(rustup target list --installed)
for target in "${TARGETS[@]}"; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIG_VERSION" ]; then
  echo "install-dist-deps: installing zig $ZIG_VERSION (PyPI ziglang)" >&2
  python3 -m pip install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi

installed_crates=$(cargo install --list)
for tool in "cargo-zigbuild $ZIGBUILD_VERSION" "cargo-cyclonedx $CYCLONEDX_VERSION"; do
  set -- $tool
  if ! grep -q "^$1 v$2:" <<<"$installed_crates"; then
    echo "install-dist-deps: installing $1 $2" >&2
    cargo install --quiet --locked "$1" --version "$2"
  fi
done
echo "install-dist-deps: rustc $toolchain, zig $ZIG_VERSION, cargo-zigbuild $ZIGBUILD_VERSION, cargo-cyclonedx $CYCLONEDX_VERSION" >&2

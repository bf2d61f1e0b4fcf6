#!/usr/bin/env bash
# The machines a site runs, for tests/it/sites.rs to run `make dist`'s binaries in:
#   $ROOTS/bullseye-amd64   Debian 11 (glibc 2.31) minbase, made with debootstrap; no
#                           ca-certificates (minbase has none): a site's minimal root
#   $ROOTS/bullseye-arm64   Debian 11 arm64, unpacked by debootstrap's first stage, with
#                           Debian's qemu-aarch64-static inside at /usr/bin: `chroot ROOT
#                           /usr/bin/qemu-aarch64-static /bin/haul …` runs an arm64 program in an
#                           arm64 root (no binfmt_misc needed)
#   $WINE                   a wine64 prefix (Debian's wine 8), with a stand-in for
#                           bcryptprimitives.dll, which wine 8 lacks and Rust's std imports
#                           (ProcessPrng; Windows 10 and later have it)
# ROOTS is /var/lib/haul-test/roots, WINE /var/lib/haul-test/wine (HAUL_TEST_STATE moves both).
# Idempotent: what is complete is kept. The mirror is the system's own apt source's.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

STATE=${HAUL_TEST_STATE:-/var/lib/haul-test}
ROOTS=$STATE/roots
WINE=$STATE/wine
SUITE=bullseye

scripts/install-test-deps.sh debootstrap qemu-user-static wine64 gcc-mingw-w64-x86-64

system_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' |
    grep -v -- '-security' | head -n1 | tr -d ' ' || true
}
mirror=${HAUL_TEST_MIRROR:-$(system_mirror)}
if [ -z "$mirror" ]; then
  echo "install-site-roots: no Debian mirror in the system's apt sources; set HAUL_TEST_MIRROR" >&2
  exit 1
fi

# debootstrap into a temporary folder, renamed when complete: a cut run leaves no half root.
make_root() { # NAME ARCH [debootstrap options]
  local name=$1 arch=$2; shift 2
  [ -f "$ROOTS/$name/.haul-root" ] && return 0
  rm -rf "$ROOTS/.$name.partial" "$ROOTS/$name"
  mkdir -p "$ROOTS"
  echo "install-site-roots: debootstrap $SUITE $arch into $ROOTS/$name" >&2
  debootstrap --arch="$arch" --variant=minbase "$@" "$SUITE" "$ROOTS/.$name.partial" "$mirror" \
    >"$ROOTS/.$name.log" 2>&1 || { tail -20 "$ROOTS/.$name.log" >&2; exit 1; }
  if [ "$arch" = arm64 ]; then
    cp /usr/bin/qemu-aarch64-static "$ROOTS/.$name.partial/usr/bin/"
  fi
  touch "$ROOTS/.$name.partial/.haul-root"
  mv "$ROOTS/.$name.partial" "$ROOTS/$name"
}
make_root bullseye-amd64 amd64
make_root bullseye-arm64 arm64 --foreign

if [ ! -f "$WINE/.haul-prefix" ]; then
  echo "install-site-roots: a wine64 prefix in $WINE" >&2
  rm -rf "$WINE"
  mkdir -p "$WINE"
  WINEPREFIX=$WINE WINEDEBUG=-all /usr/lib/wine/wine64 wineboot -u >/dev/null 2>&1 || true
  x86_64-w64-mingw32-gcc -O2 -shared -o "$WINE/drive_c/windows/system32/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -lbcrypt
  touch "$WINE/.haul-prefix"
fi

#!/usr/bin/env bash
# install-sigstore-clients.sh — put the cosign / oras clients that haul's
# signature / referrer tests drive under /opt/haul-test/clients/bin.
#
# Interface (what tests rely on):
#   /opt/haul-test/clients/bin/cosign    Debian trixie's cosign (2.x)
#   /opt/haul-test/clients/bin/oras      Debian trixie's oras (1.2.x)
#   /opt/haul-test/clients/bin/cosign3   Debian sid's cosign (3.x; experimental's if sid has none)
#   skopeo                               bookworm's, from the system apt (installed if missing)
#   usage: scripts/install-sigstore-clients.sh
#   On success prints one line per client:
#     <name> <debian package version> (<suite>) <path>: <what `<client> version` says>
#   The package version is the useful one: Debian's builds of cosign report
#   "GitVersion: devel" from `cosign version`.
#
# How: like scripts/start-docker-containerd-store.sh, the .debs are fetched with
# `apt-get download` through a PRIVATE apt configuration (own sources list,
# lists, cache, empty status/preferences; the system's sources, pins and dpkg
# database are not touched), from the same mirror as the system's apt sources,
# and unpacked with `dpkg -x`. Its apt folder is $PREFIX/apt-clients, NOT the
# $PREFIX/apt of that script (whose sources.list names trixie only), and its
# lock is a different file, so the two scripts never step on each other.
# The binaries are Go programs that need only GLIBC_2.34: they run on
# bookworm's glibc 2.36.
#
# Idempotent and safe to run concurrently (flock on /run/haul-test/.clients.lock):
# when everything is in place it only checks the clients and prints the lines.
# Env overrides: HAUL_TEST_PREFIX (/opt/haul-test), HAUL_TEST_MIRROR (taken
# from the system's apt sources; the script stops if they name none).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

PREFIX=${HAUL_TEST_PREFIX:-/opt/haul-test}
RUN_DIR=/run/haul-test
LOCK=$RUN_DIR/.clients.lock
CLIENTS=$PREFIX/clients
BIN=$CLIENTS/bin
PKGROOT=$CLIENTS/pkgs          # one dpkg -x tree per package version
STAMP=$CLIENTS/.haul-installed # lines: <bin> <package> <version> <suite>
APT_DIR=$PREFIX/apt-clients

# bin name, Debian package, binary inside the package, suites to look in
# (first that has a version of the wanted major wins), wanted version prefix.
CLIENT_SPECS=(
    "cosign  cosign usr/bin/cosign trixie          2."
    "oras    oras   usr/bin/oras   trixie          1.2."
    "cosign3 cosign usr/bin/cosign sid,experimental 3."
)
SUITES=(trixie sid experimental)

log() { echo "haul-test: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers
# First line of `<client> version` that says something useful.
client_version() { # path
    local out
    out=$(timeout 20 "$1" version 2>&1) || return 1
    printf '%s\n' "$out" | awk '
        /^(GitVersion|Version):/ { sub(/^[A-Za-z]+:[ \t]*/, ""); v = $0 }
        /^(GoVersion|Go version):/ { sub(/^[A-Za-z ]+:[ \t]*/, ""); g = $0 }
        END { if (v == "") exit 1; printf "%s%s\n", v, (g != "" ? ", " g : "") }'
}

installed() {
    [ -f "$STAMP" ] || return 1
    local spec name
    for spec in "${CLIENT_SPECS[@]}"; do
        read -r name _ <<<"$spec"
        [ -x "$BIN/$name" ] && grep -q "^$name " "$STAMP" || return 1
    done
    command -v skopeo >/dev/null 2>&1
}

report() {
    local spec name pkg ver suite v
    for spec in "${CLIENT_SPECS[@]}"; do
        read -r name _ <<<"$spec"
        read -r _ pkg ver suite < <(grep "^$name " "$STAMP")
        v=$(client_version "$BIN/$name") || die "$BIN/$name ($pkg $ver) does not run here"
        echo "$name $ver ($suite) $BIN/$name: $v"
    done
    ver=$(dpkg-query -W -f='${Version}' skopeo 2>/dev/null || echo '?')
    v=$(skopeo --version 2>&1) || die "skopeo does not run"
    echo "skopeo $ver (system apt) $(command -v skopeo): $v"
}

install_host_deps() {
    local missing=()
    command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
    command -v flock >/dev/null 2>&1 || missing+=(util-linux)
    command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]} (system apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Same Debian mirror as the system's apt sources (deb822 or one-line); no built-in default.
detect_mirror() {
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ') || true
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; \
add one there (or set HAUL_TEST_MIRROR=URL of a Debian mirror) and run again"
    echo "${m%/}"
}

APT_OPTS=()
set_apt_opts() {
    APT_OPTS=(
        -o Dir::Etc::SourceList="$APT_DIR/sources.list"
        -o Dir::Etc::SourceParts="$APT_DIR/empty.d"
        -o Dir::Etc::Preferences="$APT_DIR/preferences"
        -o Dir::Etc::PreferencesParts="$APT_DIR/empty.d"
        -o Dir::State="$APT_DIR/state"
        -o Dir::State::Lists="$APT_DIR/state/lists"
        -o Dir::State::status="$APT_DIR/state/status"
        -o Dir::Cache="$APT_DIR/cache"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -o Acquire::Languages=none
        -o APT::Architecture=amd64 -o APT::Architectures=amd64
    )
}
apt_private() { apt-get -q "${APT_OPTS[@]}" "$@"; }
apt_cache_private() { apt-cache "${APT_OPTS[@]}" "$@"; }

# Highest version of PKG in SUITE starting with PREFIX (empty if none).
pick_version() { # pkg suite prefix
    apt_cache_private madison "$1" 2>/dev/null |
        awk -F'|' -v s=" $2/" -v p="$3" '
            index($3, s) { v = $2; gsub(/ /, "", v); if (index(v, p) == 1) print v }' |
        sort -V | tail -n1
}

versions_seen() { # pkg
    apt_cache_private madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); split($3,a," "); printf "%s%s (%s)", sep, $2, a[2]; sep=", "} END {print ""}'
}

install_clients() {
    local mirror spec name pkg path suites want suite ver deb dest tmp
    mirror=${HAUL_TEST_MIRROR:-$(detect_mirror)}
    log "fetching cosign/oras from $mirror ${SUITES[*]} (private apt state in $APT_DIR)"
    mkdir -p "$APT_DIR/empty.d" "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
    : >"$APT_DIR/preferences"
    [ -f "$APT_DIR/state/status" ] || : >"$APT_DIR/state/status"
    for suite in "${SUITES[@]}"; do
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
    done >"$APT_DIR/sources.list"
    if id _apt >/dev/null 2>&1; then chown -R _apt "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs" || true; fi
    set_apt_opts
    apt_private update >"$APT_DIR/update.log" 2>&1 || { cat "$APT_DIR/update.log" >&2; die "apt-get update failed"; }

    mkdir -p "$PKGROOT" "$BIN"
    : >"$STAMP.new"
    for spec in "${CLIENT_SPECS[@]}"; do
        read -r name pkg path suites want <<<"$spec"
        ver=
        for suite in ${suites//,/ }; do
            ver=$(pick_version "$pkg" "$suite" "$want")
            [ -n "$ver" ] && break
        done
        [ -n "$ver" ] || die "no $pkg $want* in ${suites//,/ or } (versions there: $(versions_seen "$pkg"))"
        dest=$PKGROOT/${pkg}_$ver
        if [ ! -x "$dest/$path" ]; then
            rm -f "$APT_DIR"/debs/"${pkg}"_*.deb
            (cd "$APT_DIR/debs" && apt_private download "$pkg=$ver") >"$APT_DIR/download.log" 2>&1 ||
                { cat "$APT_DIR/download.log" >&2; die "apt-get download $pkg=$ver failed"; }
            deb=$(ls "$APT_DIR"/debs/"${pkg}"_*.deb)
            tmp=$(mktemp -d "$PKGROOT/.${pkg}.XXXXXX")
            dpkg-deb -x "$deb" "$tmp"
            [ -x "$tmp/$path" ] || die "$deb has no $path"
            rm -rf "$dest"
            mv "$tmp" "$dest"
            rm -f "$deb"
        fi
        ln -sfn "$dest/$path" "$BIN/$name.new" && mv -Tf "$BIN/$name.new" "$BIN/$name"
        client_version "$BIN/$name" >/dev/null || die "$BIN/$name ($pkg $ver) does not run on this system"
        echo "$name $pkg $ver $suite" >>"$STAMP.new"
    done
    mv "$STAMP.new" "$STAMP"
    # drop what no symlink points to any more
    for dest in "$PKGROOT"/*; do
        [ -d "$dest" ] || continue
        grep -qF " $(basename "$dest" | sed 's/_/ /') " "$STAMP" || rm -rf "$dest"
    done
    # keep only the small config; the lists (~20 MB with sid) are re-fetched if ever needed
    rm -rf "$APT_DIR"/debs/*.deb "$APT_DIR"/state/lists/*Packages* "$APT_DIR"/state/lists/*Release*
}

# ---------------------------------------------------------------- main
if installed; then report; exit 0; fi
[ "$(id -u)" = 0 ] || die "the clients are missing; run as root to install them (make test does)"

mkdir -p "$RUN_DIR" "$PREFIX"
if ! command -v flock >/dev/null 2>&1; then install_host_deps; fi
exec 9>"$LOCK"
flock -w 600 9 || die "could not take $LOCK"
if installed; then report; exit 0; fi

install_host_deps
install_clients
report

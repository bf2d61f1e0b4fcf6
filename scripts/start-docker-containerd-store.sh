#!/usr/bin/env bash
# start-docker-containerd-store.sh — start a SECOND Docker engine that uses the
# containerd image store ("containerd-snapshotter" feature), for haul's
# integration tests (checking that exported tars `docker load` there too).
#
# Interface (what tests rely on):
#   socket : unix:///run/haul-test/docker-cs.sock
#            e.g. docker -H unix:///run/haul-test/docker-cs.sock load -i img.tar
#   client : any docker client works (API version negotiation); the matching
#            Docker 26.1 client is also at /opt/haul-test/bin/docker-cs
#   usage  : scripts/start-docker-containerd-store.sh          # start (default)
#            scripts/start-docker-containerd-store.sh stop     # stop both daemons
#   On success prints exactly one line:
#     containerd-store engine ready at unix:///run/haul-test/docker-cs.sock (Docker <ver>)
#
# How: Debian bookworm's docker.io (20.10) has no containerd image store, so
# Debian trixie's docker.io/docker-cli (26.1.x) and containerd (1.7.x) are
# fetched with `apt-get download` through a PRIVATE apt configuration under
# /opt/haul-test/apt (own sources list, lists, cache, empty status/preferences;
# the system's sources, pins and dpkg database are not touched), then unpacked
# with `dpkg -x` into /opt/haul-test/trixie. They need only GLIBC_2.34, so they
# run on bookworm's glibc 2.36. Trixie's runc and dynamic tini need GLIBC_2.38
# and do NOT run here, so bookworm's runc (apt-installed if missing) is used,
# and docker-init is trixie's statically linked tini-static.
#
# The engine runs beside the system one without clashing: its own containerd
# (config/root/state/socket under */haul-test/containerd), its own dockerd
# --data-root/--exec-root/--pidfile/socket, its own cgroup parent, no iptables
# rules, no ip-forward/masquerade changes, and its own bridge haul-cs0
# (198.18.254.1/24, host-only: no NAT, nothing leaves the machine).
# NOT --bridge=none: dockerd then deletes any interface named docker0, i.e.
# the FIRST engine's bridge (its default-network containers then fail with
# "could not find bridge docker0"). The daemon stays in the host network
# namespace, so it can pull from a registry on 127.0.0.1 (127.0.0.0/8 is
# insecure-by-default). In tests prefer `run --network none`; the default
# bridge network also works (host-only, no DNS/internet).
#
# Idempotent and safe to run concurrently (flock): when the engine already
# answers it just prints the ready line and exits 0.
# Logs: /var/log/haul-test/{containerd,dockerd}.log
# Env overrides: HAUL_TEST_PREFIX (/opt/haul-test), HAUL_TEST_MIRROR (taken
# from the system's apt sources; the script stops if they name none),
# HAUL_TEST_SUITE (trixie), HAUL_TEST_TIMEOUT (60 s), HAUL_TEST_BRIDGE
# (haul-cs0), HAUL_TEST_BRIDGE_CIDR (198.18.254.1/24).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

PREFIX=${HAUL_TEST_PREFIX:-/opt/haul-test}
SUITE=${HAUL_TEST_SUITE:-trixie}
TIMEOUT=${HAUL_TEST_TIMEOUT:-60}
RUN_DIR=/run/haul-test
LIB_DIR=/var/lib/haul-test
LOG_DIR=/var/log/haul-test
BRIDGE=${HAUL_TEST_BRIDGE:-haul-cs0}
BRIDGE_CIDR=${HAUL_TEST_BRIDGE_CIDR:-198.18.254.1/24}

ROOTFS=$PREFIX/trixie          # dpkg -x target
SBIN=$PREFIX/daemon-bin        # PATH for the daemons (symlinks)
BIN=$PREFIX/bin                # client symlink docker-cs
ETC=$PREFIX/etc
APT_DIR=$PREFIX/apt

CTRD_DIR=$RUN_DIR/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
CTRD_PID=$RUN_DIR/containerd.pid
DOCKER_SOCK=$RUN_DIR/docker-cs.sock
DOCKER_HOST_URL=unix://$DOCKER_SOCK
DOCKER_PID=$RUN_DIR/docker-cs.pid
DOCKER_EXEC_ROOT=$RUN_DIR/docker
CTRD_LOG=$LOG_DIR/containerd.log
DOCKER_LOG=$LOG_DIR/dockerd.log

# The trixie packages we unpack. runc is deliberately NOT among them (needs
# glibc 2.38); tini only for its static tini-static (docker-init).
PKGS=(docker.io docker-cli containerd tini)

# Our docker calls must not be redirected by the caller's environment.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_API_VERSION

log() { echo "haul-test: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- helpers
docker_cs() { timeout 10 "$ROOTFS/usr/bin/docker" -H "$DOCKER_HOST_URL" "$@"; }

# Prints the server version if the engine answers and uses the containerd
# image store; fails otherwise.
engine_ready() {
    [ -S "$DOCKER_SOCK" ] && [ -x "$ROOTFS/usr/bin/docker" ] || return 1
    # dockerd answers `info` even when its containerd is gone: check that too
    live_pid "$CTRD_PID" "$ROOTFS/usr/bin/containerd" >/dev/null || return 1
    local out
    out=$(docker_cs info --format '{{.ServerVersion}} {{json .DriverStatus}}' 2>/dev/null) || return 1
    case $out in
        *io.containerd.snapshotter.v1*) echo "${out%% *}" ;;
        *) return 1 ;;
    esac
}

ready_line() { echo "containerd-store engine ready at $DOCKER_HOST_URL (Docker $1)"; }

# pid from a pidfile if that process is alive and runs the expected binary.
live_pid() { # pidfile exe
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ] || return 1
    echo "$pid"
}

tail_logs() {
    local f
    for f in "$CTRD_LOG" "$DOCKER_LOG"; do
        [ -f "$f" ] || continue
        echo "----- last lines of $f -----" >&2
        grep -v 'msg="loading plugin' "$f" | tail -n 30 >&2 || true
    done
}

stop_engine() {
    local pid name pidfile exe _
    for name in dockerd containerd; do
        if [ $name = dockerd ]; then pidfile=$DOCKER_PID exe=$ROOTFS/usr/sbin/dockerd
        else pidfile=$CTRD_PID exe=$ROOTFS/usr/bin/containerd; fi
        pid=$(live_pid "$pidfile" "$exe") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$pidfile"
    done
    rm -f "$DOCKER_SOCK"
    # dockerd leaves its data-root self-bind-mount and netns/default behind
    # (so does the system one); drop ours, deepest first, so that
    # `rm -rf /var/lib/haul-test` works after a stop.
    local mnt
    awk '{print $2}' /proc/mounts | grep -E "^($LIB_DIR|$RUN_DIR)(/|\$)" | sort -r |
        while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
    log "stopped (data kept in $LIB_DIR)"
}

# ---------------------------------------------------------------- install
have_install() {
    [ -f "$ROOTFS/.haul-installed" ] &&
    [ -x "$ROOTFS/usr/sbin/dockerd" ] && [ -x "$ROOTFS/usr/bin/docker" ] &&
    [ -x "$ROOTFS/usr/bin/containerd" ] && [ -x "$ROOTFS/usr/bin/containerd-shim-runc-v2" ] &&
    [ -x "$ROOTFS/usr/bin/tini-static" ]
}

# Same Debian mirror as the system's apt sources (deb822 or one-line); no built-in default:
# the machine's own configuration says where packages come from.
detect_mirror() {
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ') || true
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; \
add one there (or set HAUL_TEST_MIRROR=URL of a Debian mirror) and run again"
    echo "${m%/}"
}

apt_private() { # apt-get with a private sources list / state; the system's apt is untouched
    apt-get -q \
        -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
        -o Dir::Etc::SourceParts="$APT_DIR/empty.d" \
        -o Dir::Etc::Preferences="$APT_DIR/preferences" \
        -o Dir::Etc::PreferencesParts="$APT_DIR/empty.d" \
        -o Dir::State="$APT_DIR/state" \
        -o Dir::State::Lists="$APT_DIR/state/lists" \
        -o Dir::State::status="$APT_DIR/state/status" \
        -o Dir::Cache="$APT_DIR/cache" \
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::Languages=none \
        -o APT::Architecture=amd64 -o APT::Architectures=amd64 \
        "$@"
}

install_host_deps() {
    # bookworm packages: runc (trixie's needs glibc 2.38), tools used here.
    local missing=()
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    command -v flock >/dev/null 2>&1 || missing+=(util-linux)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    # shared libraries dockerd links against (all in a normal bookworm base)
    dpkg-query -W -f='${Status}\n' libsystemd0 2>/dev/null | grep -q 'ok installed' || missing+=(libsystemd0)
    dpkg-query -W -f='${Status}\n' libseccomp2 2>/dev/null | grep -q 'ok installed' || missing+=(libseccomp2)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]} (bookworm)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

install_trixie() {
    local mirror tmp deb
    mirror=${HAUL_TEST_MIRROR:-$(detect_mirror)}
    log "fetching ${PKGS[*]} from $mirror $SUITE (private apt state in $APT_DIR)"
    mkdir -p "$APT_DIR/empty.d" "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
    : >"$APT_DIR/preferences"
    [ -f "$APT_DIR/state/status" ] || : >"$APT_DIR/state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" >"$APT_DIR/sources.list"
    # let apt's download sandbox user write there (avoids the "unsandboxed" warning)
    if id _apt >/dev/null 2>&1; then chown -R _apt "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs" || true; fi
    apt_private update >"$APT_DIR/update.log" 2>&1 || { cat "$APT_DIR/update.log" >&2; die "apt-get update ($SUITE) failed"; }
    rm -f "$APT_DIR"/debs/*.deb
    (cd "$APT_DIR/debs" && apt_private download "${PKGS[@]}") >"$APT_DIR/download.log" 2>&1 ||
        { cat "$APT_DIR/download.log" >&2; die "apt-get download failed"; }
    tmp=$(mktemp -d "$PREFIX/.trixie.XXXXXX")
    for deb in "$APT_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
    # shellcheck disable=SC2016 # dpkg-deb format, not shell
    for deb in "$APT_DIR"/debs/*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"; done >"$tmp/.haul-installed"
    rm -rf "$ROOTFS.old"
    [ -e "$ROOTFS" ] && mv "$ROOTFS" "$ROOTFS.old"
    mv "$tmp" "$ROOTFS"
    # keep only the small config; lists (~20 MB) and debs are re-fetched if ever needed
    rm -rf "$ROOTFS.old" "$APT_DIR"/debs/*.deb "$APT_DIR"/state/lists/*Packages* "$APT_DIR"/state/lists/*Release*
}

link_binaries() {
    local runc_bin
    runc_bin=$(command -v runc) || die "runc not found"
    mkdir -p "$SBIN" "$BIN"
    # Only what the daemons should find on PATH; trixie's own runc/tini are not usable here.
    ln -sfn "$ROOTFS/usr/bin/containerd" "$SBIN/containerd"
    ln -sfn "$ROOTFS/usr/bin/containerd-shim-runc-v2" "$SBIN/containerd-shim-runc-v2"
    ln -sfn "$ROOTFS/usr/bin/ctr" "$SBIN/ctr"
    ln -sfn "$ROOTFS/usr/sbin/dockerd" "$SBIN/dockerd"
    ln -sfn "$ROOTFS/usr/sbin/docker-proxy" "$SBIN/docker-proxy"
    ln -sfn "$ROOTFS/usr/bin/docker" "$SBIN/docker"
    ln -sfn "$ROOTFS/usr/bin/tini-static" "$SBIN/docker-init"
    ln -sfn "$runc_bin" "$SBIN/runc"
    ln -sfn "$ROOTFS/usr/bin/docker" "$BIN/docker-cs"
}

write_configs() {
    mkdir -p "$ETC"
    cat >"$ETC/containerd.toml.new" <<EOF
# generated by scripts/start-docker-containerd-store.sh
version = 2
root = "$LIB_DIR/containerd"
state = "$CTRD_DIR"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = "$CTRD_DIR/debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$LIB_DIR/containerd-opt"
EOF
    cat >"$ETC/daemon.json.new" <<EOF
{
  "features": { "containerd-snapshotter": true },
  "cgroup-parent": "/haul-test-docker-cs",
  "init-path": "$SBIN/docker-init",
  "userland-proxy-path": "$SBIN/docker-proxy"
}
EOF
    mv "$ETC/containerd.toml.new" "$ETC/containerd.toml"
    mv "$ETC/daemon.json.new" "$ETC/daemon.json"
}

# ---------------------------------------------------------------- daemons
# Minimal, predictable environment for the daemons; our daemon-bin first on
# PATH so containerd finds the trixie shim and the shim finds bookworm's runc.
DAEMON_ENV=(env -i "PATH=$SBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root LANG=C.UTF-8)

# spawn LOGFILE CMD...: run CMD detached (own session, so the caller's Ctrl-C /
# process-group kill does not reach it), stdin from /dev/null, output to
# LOGFILE, and with every other inherited fd closed (our lock fd 9, or a pipe
# of whoever runs this script, must not be held open by the daemon, or
# `out=$(script)` would never return). The subshell execs, so SPAWNED_PID is
# the daemon's own pid.
spawn() {
    local logfile=$1; shift
    (
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        exec setsid "${DAEMON_ENV[@]}" "$@" </dev/null >>"$logfile" 2>&1
    ) &
    SPAWNED_PID=$!
}

start_containerd() {
    local pid _
    if pid=$(live_pid "$CTRD_PID" "$ROOTFS/usr/bin/containerd"); then
        return 0
    fi
    # A dockerd left from before would only reconnect after a gRPC backoff:
    # restart it along with its containerd.
    if pid=$(live_pid "$DOCKER_PID" "$ROOTFS/usr/sbin/dockerd"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$CTRD_PID" "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"
    mkdir -p "$CTRD_DIR" "$LIB_DIR/containerd" "$LOG_DIR"
    chmod 711 "$CTRD_DIR"
    echo "=== $(date -Is) starting containerd" >>"$CTRD_LOG"
    spawn "$CTRD_LOG" "$ROOTFS/usr/bin/containerd" --config "$ETC/containerd.toml"
    echo "$SPAWNED_PID" >"$CTRD_PID"
    for _ in $(seq 1 $((TIMEOUT * 5))); do
        if [ -S "$CTRD_SOCK" ] && timeout 5 "$ROOTFS/usr/bin/ctr" --address "$CTRD_SOCK" version >/dev/null 2>&1; then
            return 0
        fi
        live_pid "$CTRD_PID" "$ROOTFS/usr/bin/containerd" >/dev/null || { tail_logs; die "containerd exited"; }
        sleep 0.2
    done
    tail_logs
    die "containerd did not answer on $CTRD_SOCK within ${TIMEOUT}s"
}

# The engine's own bridge (see header: --bridge=none would delete docker0).
ensure_bridge() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    if ! ip -4 addr show dev "$BRIDGE" | grep -q inet; then
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

DOCKERD_SPAWNED=
start_dockerd() {
    if live_pid "$DOCKER_PID" "$ROOTFS/usr/sbin/dockerd" >/dev/null; then
        return 0 # running (maybe still starting): just wait for it below
    fi
    rm -f "$DOCKER_PID" "$DOCKER_SOCK"
    ensure_bridge
    mkdir -p "$DOCKER_EXEC_ROOT" "$LIB_DIR/docker" "$LOG_DIR"
    echo "=== $(date -Is) starting dockerd" >>"$DOCKER_LOG"
    spawn "$DOCKER_LOG" "$ROOTFS/usr/sbin/dockerd" \
        --config-file "$ETC/daemon.json" \
        -H "$DOCKER_HOST_URL" \
        --containerd "$CTRD_SOCK" \
        --data-root "$LIB_DIR/docker" \
        --exec-root "$DOCKER_EXEC_ROOT" \
        --pidfile "$DOCKER_PID" \
        --bridge "$BRIDGE" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --userland-proxy=false
    DOCKERD_SPAWNED=$SPAWNED_PID
}

wait_engine() {
    local deadline ver
    deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        if ver=$(engine_ready); then
            ready_line "$ver"
            return 0
        fi
        if [ -n "$DOCKERD_SPAWNED" ]; then
            [ -d "/proc/$DOCKERD_SPAWNED" ] || { tail_logs; die "dockerd exited"; }
        elif ! live_pid "$DOCKER_PID" "$ROOTFS/usr/sbin/dockerd" >/dev/null; then
            tail_logs; die "dockerd is not running"
        fi
        sleep 0.3
    done
    tail_logs
    die "engine did not answer on $DOCKER_HOST_URL within ${TIMEOUT}s"
}

# ---------------------------------------------------------------- main
case ${1:-start} in
    start) ;;
    stop)
        mkdir -p "$RUN_DIR"
        exec 9>"$RUN_DIR/.lock"; flock -w 120 9 || die "lock busy"
        stop_engine; exit 0 ;;
    *) die "usage: $0 [start|stop]" ;;
esac

# Fast path: already up.
if ver=$(engine_ready); then ready_line "$ver"; exit 0; fi

mkdir -p "$RUN_DIR" "$PREFIX"
if ! command -v flock >/dev/null 2>&1; then install_host_deps; fi
exec 9>"$RUN_DIR/.lock"
flock -w $((TIMEOUT * 5)) 9 || die "could not take $RUN_DIR/.lock"
# Another run may have started it while we waited for the lock.
if ver=$(engine_ready); then ready_line "$ver"; exit 0; fi

install_host_deps
have_install || install_trixie
link_binaries
write_configs
start_containerd
start_dockerd
wait_engine

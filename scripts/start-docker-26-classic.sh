#!/usr/bin/env bash
# start-docker-26-classic.sh — start a THIRD Docker engine for haul's integration tests: the
# same Docker 26.1 as the containerd-store engine, with the classic image store (overlay2,
# layers kept by chain ID), to check that what `docker save` of a newer classic store gives
# back rebuilds a patch delta as 20.10's does.
#
# Interface (what tests rely on):
#   socket : unix:///run/haul-test/docker-26.sock
#   usage  : scripts/start-docker-26-classic.sh          # start (default)
#            scripts/start-docker-26-classic.sh stop     # stop this dockerd
#   On success prints exactly one line:
#     classic 26.1 engine ready at unix:///run/haul-test/docker-26.sock (Docker <ver>)
#
# How: scripts/start-docker-containerd-store.sh installs Debian trixie's Docker 26.1 under
# /opt/haul-test and starts a containerd; it runs first (idempotent). This dockerd shares that
# containerd under its own namespaces, with its own data root, exec root, pid file, socket,
# cgroup parent and host-only bridge (haul-c26, 198.18.253.1/24; no iptables, no NAT).
# Logs: /var/log/haul-test/dockerd-26-classic.log
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_API_VERSION

PREFIX=${HAUL_TEST_PREFIX:-/opt/haul-test}
RUN_DIR=/run/haul-test
LIB_DIR=/var/lib/haul-test
LOG=/var/log/haul-test/dockerd-26-classic.log
SOCK=$RUN_DIR/docker-26.sock
PID=$RUN_DIR/docker-26.pid
EXEC_ROOT=$RUN_DIR/docker-26
DATA_ROOT=$LIB_DIR/docker-26
CTRD_SOCK=$RUN_DIR/containerd/containerd.sock
BRIDGE=haul-c26
BRIDGE_CIDR=198.18.253.1/24
SBIN=$PREFIX/daemon-bin
DOCKERD=$PREFIX/trixie/usr/sbin/dockerd
DOCKER=$PREFIX/trixie/usr/bin/docker
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "start-docker-26-classic: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# Prints the version when this engine answers with the classic store.
ready() {
    [ -S "$SOCK" ] || return 1
    local out
    out=$(timeout 10 "$DOCKER" -H "unix://$SOCK" info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null) || return 1
    case $out in
        *" overlay2") echo "${out%% *}" ;;
        *) return 1 ;;
    esac
}

live_pid() {
    local pid
    [ -s "$PID" ] || return 1
    pid=$(tr -dc '0-9' <"$PID")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$DOCKERD")" ] || return 1
    echo "$pid"
}

case ${1:-start} in
    start) ;;
    stop)
        if pid=$(live_pid); then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
            [ -d "/proc/$pid" ] && kill -KILL "$pid"
        fi
        rm -f "$PID" "$SOCK"
        awk '{print $2}' /proc/mounts | grep -E "^($DATA_ROOT|$EXEC_ROOT)(/|\$)" | sort -r |
            while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; done
        ip link del "$BRIDGE" 2>/dev/null || true
        exit 0 ;;
    *) die "usage: $0 [start|stop]" ;;
esac

if ver=$(ready); then echo "classic 26.1 engine ready at unix://$SOCK (Docker $ver)"; exit 0; fi
# The binaries and the containerd this engine shares.
"$HERE/start-docker-containerd-store.sh" >/dev/null
mkdir -p "$RUN_DIR" "$(dirname "$LOG")"
exec 9>"$RUN_DIR/.lock-26"
flock -w 300 9 || die "could not take $RUN_DIR/.lock-26"
if ver=$(ready); then echo "classic 26.1 engine ready at unix://$SOCK (Docker $ver)"; exit 0; fi
if ! live_pid >/dev/null; then
    rm -f "$PID" "$SOCK"
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip -4 addr show dev "$BRIDGE" | grep -q inet || ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    mkdir -p "$EXEC_ROOT" "$DATA_ROOT"
    echo "=== $(date -Is) starting dockerd" >>"$LOG"
    # Detached, in its own session, stdin closed and no inherited descriptor (the lock on fd 9).
    setsid env -i "PATH=$SBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root LANG=C.UTF-8 \
        "$DOCKERD" \
        -H "unix://$SOCK" \
        --containerd "$CTRD_SOCK" \
        --containerd-namespace haul-26-classic \
        --containerd-plugins-namespace haul-26-classic-plugins \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PID" \
        --storage-driver overlay2 \
        --cgroup-parent /haul-test-docker-26 \
        --init-path "$SBIN/docker-init" \
        --bridge "$BRIDGE" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --userland-proxy=false \
        </dev/null >>"$LOG" 2>&1 9>&- &
fi
for _ in $(seq 1 200); do
    if ver=$(ready); then echo "classic 26.1 engine ready at unix://$SOCK (Docker $ver)"; exit 0; fi
    sleep 0.3
done
tail -n 30 "$LOG" >&2
die "dockerd did not answer on unix://$SOCK within 60 s"

#!/usr/bin/env bash
# Starts Debian's dockerd (classic image store) in the background when no engine answers on
# the default socket, and waits until it does. Logs: /var/log/haul-test/dockerd-classic.log.
set -euo pipefail
# The default socket, whatever the caller's environment points docker at.
unset DOCKER_HOST DOCKER_CONTEXT

if docker info >/dev/null 2>&1; then exit 0; fi
if [ ! -x /usr/sbin/dockerd ]; then
  echo "start-dockerd: /usr/sbin/dockerd is missing; run scripts/install-test-deps.sh" >&2
  exit 1
fi
# A dockerd that died (machine restarted, killed) leaves its pid file, and a new one refuses to
# start while it exists.
pidfile=/var/run/docker.pid
if [ -s "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  rm -f "$pidfile"
fi
mkdir -p /var/log/haul-test
log=/var/log/haul-test/dockerd-classic.log
# Detached from this shell's pipes, so `$(…)` and make do not wait for it.
setsid /usr/sbin/dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "classic engine ready at unix:///var/run/docker.sock ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 0.5
done
echo "start-dockerd: dockerd did not answer within 60 s; its log ends with:" >&2
tail -n 30 "$log" >&2
exit 1

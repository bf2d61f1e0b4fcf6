#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when missing:
#   docker-registry  the real registry the tests push to and haul pulls from
#   docker.io        Docker 20.10 (classic image store) that loads and runs exported tars
#   skopeo           a second reader of the tars
#   podman           a third loader (docker, docker-v1 and OCI formats)
#   busybox-static   the one static binary of the runnable test images
#   zstd, apache2-utils (htpasswd for the basic-auth registry), curl
#   strace           shows that keyless checks open no connection (tests/it/keyless.rs)
# Runs `apt-get update` first unless the package lists are less than a day old.
set -euo pipefail

packages=(docker-registry docker.io skopeo podman busybox-static zstd apache2-utils curl time openssh-server openssh-client strace)
if [ "$#" -gt 0 ]; then packages=("$@"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${missing[*]}; run as root (or install them with apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
lists=/var/lib/apt/lists
updated=
if [ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
  apt-get update -qq
  updated=1
fi
echo "install-test-deps: installing ${missing[*]}" >&2
# Lists younger than a day can still name a version the mirror no longer has: update, retry.
if ! install; then
  [ -z "$updated" ] || exit 1
  echo "install-test-deps: apt-get install failed; updating the package lists and retrying" >&2
  apt-get update -qq
  install
fi

#!/usr/bin/env bash
# `make demo`: haul's main job against a local registry. Starts Debian's `docker-registry` on
# a free loopback port, builds and pushes a small runnable image (busybox plus two layers),
# exports it with haul, twice (the second run is served by the cache), lists the tar, and
# loads and runs it where a Docker engine answers.
#
#   HAUL_BIN  the haul binary to run (default: the release build, target/release/haul, under
#             CARGO_TARGET_DIR when set, else under this repository)
#
# Needs bash, curl, tar, gzip, sha256sum, /usr/bin/docker-registry and /bin/busybox (Debian's
# busybox-static): `scripts/install-test-deps.sh docker-registry busybox-static curl`.
# Everything it makes (registry storage, layers, cache, tar) lives in one temporary folder,
# removed on exit, also on failure or Ctrl-C; the registry is stopped then too.
set -Eeuo pipefail
# Whatever fails without a message of its own below is named here (once: not again in the
# subshell of a command substitution).
trap '[ "$BASH_SUBSHELL" -gt 0 ] || echo "demo: failed (line $LINENO): $BASH_COMMAND" >&2' ERR

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAUL_BIN=${HAUL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/haul}

repository=demo/hello
tag=1
message="hello from an image exported by haul"

DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
DOCKER_CONFIG_TYPE=application/vnd.docker.container.image.v1+json
DOCKER_LAYER_GZIP=application/vnd.docker.image.rootfs.diff.tar.gzip

die() {
  echo "demo: $*" >&2
  exit 1
}

step() {
  printf '\n==> %s\n' "$1"
}

# --- what the demo needs -----------------------------------------------------------------

[ -x "$HAUL_BIN" ] || die "no haul binary at $HAUL_BIN; run \`make demo\`, which builds it (or set HAUL_BIN)"
for tool in curl tar gzip sha256sum; do
  command -v "$tool" >/dev/null || die "\`$tool\` is not on PATH; run scripts/install-test-deps.sh docker-registry busybox-static curl"
done
[ -x /usr/bin/docker-registry ] || die "/usr/bin/docker-registry is missing; run scripts/install-test-deps.sh docker-registry"
[ -x /bin/busybox ] || die "/bin/busybox is missing; run scripts/install-test-deps.sh busybox-static"

# --- one temporary folder, the registry, and their cleanup -------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/haul-demo.XXXXXX")
registry_pid=
loaded=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$loaded" ]; then
    docker rmi -f "$loaded" >/dev/null 2>&1 || true
  fi
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM

# The registry is local: no proxy of the caller's environment is to be asked for it.
export NO_PROXY="127.0.0.1${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1${no_proxy:+,$no_proxy}"
curl_() { curl --silent --show-error --noproxy '*' --max-time 60 "$@"; }

# Starts docker-registry on 127.0.0.1, port 0: the registry binds a port that is free, with no
# window for another process to take it between picking and binding, and logs which one.
start_registry() {
  local log=$work/registry/registry.log
  mkdir -p "$work/registry"
  cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
EOF
  /usr/bin/docker-registry serve "$work/registry/config.yml" >"$log" 2>&1 </dev/null &
  registry_pid=$!
  local port='' code
  for _ in $(seq 1 200); do # 20 s
    if ! kill -0 "$registry_pid" 2>/dev/null; then
      wait "$registry_pid" 2>/dev/null || true
      registry_pid=
      die "docker-registry exited at start; its log:"$'\n'"$(cat "$log")"
    fi
    if [ -z "$port" ]; then
      port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    fi
    if [ -n "$port" ]; then
      code=$(curl_ --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null) || code=
      if [ "$code" = 200 ]; then
        registry=127.0.0.1:$port
        return
      fi
    fi
    sleep 0.1
  done
  die "docker-registry did not answer GET /v2/ within 20 s; its log ends with:"$'\n'"$(tail -n 20 "$log")"
}

# --- building the image -------------------------------------------------------------------

digest_of() { # FILE -> sha256:HEX
  local sum
  sum=$(sha256sum "$1")
  echo "sha256:${sum%% *}"
}
size_of() { wc -c <"$1" | tr -d ' '; }

layers=() # the compressed blobs, in order
diff_ids=()

# Adds a layer: a deterministic tar of PATHS under DIR, gzip-compressed.
add_layer() { # NAME DIR PATHS...
  local name=$1 dir=$2
  shift 2
  local tar=$work/layers/$name.tar
  mkdir -p "$work/layers"
  tar --create --file "$tar" --directory "$dir" --format=ustar \
    --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -- "$@" ||
    die "cannot build the $name layer (tar failed)"
  diff_ids+=("$(digest_of "$tar")")
  gzip -n -c "$tar" >"$tar.gz" || die "cannot compress the $name layer"
  layers+=("$tar.gz")
}

# A runnable base: the host's static busybox and a few applet links.
busybox_layer() {
  local dir=$work/rootfs/busybox
  mkdir -p "$dir/bin" "$dir/etc"
  cp /bin/busybox "$dir/bin/busybox"
  chmod 0755 "$dir/bin" "$dir/etc" "$dir/bin/busybox"
  for applet in sh cat echo ls; do
    ln -s busybox "$dir/bin/$applet"
  done
  add_layer busybox "$dir" bin etc
}

# A layer holding one small text file.
text_layer() { # NAME PATH CONTENTS
  local dir=$work/rootfs/$1
  mkdir -p "$dir/$(dirname "$2")"
  printf '%s' "$3" >"$dir/$2"
  chmod 0644 "$dir/$2"
  add_layer "$1" "$dir" "$2"
}

# The config (Docker image config, linux/amd64, a Cmd that prints $message) and the Docker
# schema 2 manifest, as Image::runnable of the test harness makes them.
write_config_and_manifest() {
  local ids="" history="" layer_list="" comma="" i
  for i in "${!layers[@]}"; do
    ids+="$comma\"${diff_ids[$i]}\""
    history+="$comma{\"created\":\"2024-01-01T00:00:00Z\",\"created_by\":\"haul demo\"}"
    layer_list+="$comma{\"mediaType\":\"$DOCKER_LAYER_GZIP\",\"digest\":\"$(digest_of "${layers[$i]}")\",\"size\":$(size_of "${layers[$i]}")}"
    comma=,
  done
  config=$work/config.json
  printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-01-01T00:00:00Z\",\"config\":{\"Cmd\":[\"/bin/busybox\",\"echo\",\"$message\"],\"Env\":[\"PATH=/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$ids]},\"history\":[$history]}" >"$config"
  manifest=$work/manifest.json
  printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"$DOCKER_MANIFEST\",\"config\":{\"mediaType\":\"$DOCKER_CONFIG_TYPE\",\"digest\":\"$(digest_of "$config")\",\"size\":$(size_of "$config")},\"layers\":[$layer_list]}" >"$manifest"
}

# --- pushing it (the registry API, monolithic uploads) -----------------------------------

# The value of header NAME in the response headers curl wrote to FILE (the last response's).
header() { # FILE NAME
  tr -d '\r' <"$1" | sed -n "s/^$2: *//Ip" | tail -n 1
}

push_blob() { # FILE
  local file=$1 digest code location separator
  digest=$(digest_of "$file")
  code=$(curl_ -X POST -D "$work/headers" -o "$work/body" -w '%{http_code}' \
    "http://$registry/v2/$repository/blobs/uploads/") ||
    die "cannot start an upload of $digest to http://$registry (curl failed)"
  [ "$code" = 202 ] || die "starting an upload of $digest: HTTP $code: $(cat "$work/body")"
  location=$(header "$work/headers" location)
  [ -n "$location" ] || die "starting an upload of $digest: the registry sent no Location"
  case $location in
  /*) location=http://$registry$location ;;
  esac
  case $location in
  *\?*) separator='&' ;;
  *) separator='?' ;;
  esac
  code=$(curl_ -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" \
    -D "$work/headers" -o "$work/body" -w '%{http_code}' "$location${separator}digest=$digest") ||
    die "cannot upload $digest (curl failed)"
  [ "$code" = 201 ] || die "uploading $digest: HTTP $code: $(cat "$work/body")"
}

push_manifest() { # FILE MEDIA_TYPE
  local code digest answered
  digest=$(digest_of "$1")
  code=$(curl_ -X PUT -H "Content-Type: $2" --data-binary "@$1" \
    -D "$work/headers" -o "$work/body" -w '%{http_code}' \
    "http://$registry/v2/$repository/manifests/$tag") ||
    die "cannot push the manifest (curl failed)"
  [ "$code" = 201 ] || die "pushing the manifest: HTTP $code: $(cat "$work/body")"
  answered=$(header "$work/headers" docker-content-digest)
  [ -z "$answered" ] || [ "$answered" = "$digest" ] ||
    die "the registry stored the manifest as $answered, not $digest"
  manifest_digest=$digest
}

# --- haul ---------------------------------------------------------------------------------

cache=$work/cache
haul() {
  echo "\$ haul $*"
  "$HAUL_BIN" --cache-dir "$cache" "$@" || die "haul $* failed (exit $?)"
}

# --- the demo -----------------------------------------------------------------------------

step "starting a local registry (docker-registry)"
start_registry
echo "registry at http://$registry"

step "building and pushing $repository:$tag (busybox + 2 layers)"
busybox_layer
text_layer motd etc/motd $'exported by haul, verified blob by blob\n'
text_layer version etc/version $'1\n'
write_config_and_manifest
push_blob "$config"
for layer in "${layers[@]}"; do
  push_blob "$layer"
done
push_manifest "$manifest" "$DOCKER_MANIFEST"
reference=$registry/$repository:$tag
echo "pushed $reference ($manifest_digest)"

tar=$work/hello.tar

step "exporting it (cold cache: every blob is downloaded and verified)"
haul export "$reference" -o "$tar"

step "exporting it again (warm cache: only the manifest is asked for)"
haul export "$reference" -o "$tar"

step "what the tar holds"
tar tvf "$tar" || die "tar cannot list $tar"

step "haul cache ls"
haul cache ls

step "loading it into Docker"
if command -v docker >/dev/null && docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
  docker load -i "$tar" || die "docker load failed"
  loaded=$reference # removed on exit
  docker run --rm --network none "$reference" || die "docker run $reference failed"
else
  echo "no Docker engine answers here: skipped loading (start dockerd, or run \`make test\`, to see it run)"
fi

printf '\ndone: the registry stops and the demo'"'"'s files are removed\n'

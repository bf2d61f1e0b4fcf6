#!/usr/bin/env bash
# Seeds every corpus under fuzz/corpus/ with real files: tars a Docker engine wrote
# (`docker save`) and haul wrote (each layout, a delta, a patch delta, a parts set), haul's
# records and receipts, manifests and configs as a registry serves them, and the sigstore
# vectors the tests use (bundles, certificates, timestamps, checkpoints). Run once by hand
# (`fuzz/seeds.sh`; needs a Docker engine, /usr/bin/docker-registry and a built haul); its
# output is committed. The fuzzers grow the corpora from there (`make fuzz`).
set -Eeuo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
haul=${HAUL_BIN:-$root/target/debug/haul}
corpus=$root/fuzz/corpus
work=$(mktemp -d "${TMPDIR:-/tmp}/haul-seeds.XXXXXX")
registry_pid=
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
  docker rmi -f fuzzseed/app:v1 fuzzseed/app:v2 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
seed() { # seed TARGET NAME < bytes
  mkdir -p "$corpus/$1"
  cat >"$corpus/$1/$2"
}

# Two tiny images, built and saved by the engine: the same base layer, then v2 changes v1's
# file.
cd "$work"
printf 'a base line\n%.0s' $(seq 1 20) >base.txt
# Noise (so that the changed layer travels as a patch, smaller than its gzip), deterministic.
python3 -c 'import base64,random; r=random.Random(7); print(base64.encodebytes(bytes(r.getrandbits(8) for _ in range(30000))).decode())' >a.txt
printf 'FROM scratch\nCOPY base.txt /etc/base.txt\nCOPY a.txt /etc/a.txt\n' >Dockerfile
DOCKER_BUILDKIT=0 docker build --network none -q -t fuzzseed/app:v1 . >/dev/null
sed -i '3s/.*/a changed line/' a.txt
DOCKER_BUILDKIT=0 docker build --network none -q -t fuzzseed/app:v2 . >/dev/null
docker save fuzzseed/app:v1 -o saved-v1.tar
docker save fuzzseed/app:v1 fuzzseed/app:v2 -o saved-both.tar

# A registry, the images pushed into it by haul, and every bundle haul writes of them.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >registry.yml <<YML
version: 0.1
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
YML
/usr/bin/docker-registry serve registry.yml >registry.log 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
export HAUL_CACHE_DIR=$work/cache
reg=127.0.0.1:$port
"$haul" -q push saved-both.tar "$reg"
"$haul" -q export "$reg/fuzzseed/app:v1" -o v1.tar --receipt v1.receipt
"$haul" -q export "$reg/fuzzseed/app:v1" -o v1-oci.tar --format oci
"$haul" -q export "$reg/fuzzseed/app:v1" -o v1-classic.tar --format docker-v1
"$haul" -q export "$reg/fuzzseed/app:v2" -o v2-delta.tar --since v1.tar
"$haul" -q export "$reg/fuzzseed/app:v2" -o v2-patch.tar --since v1.receipt --patch
mkdir disc
"$haul" -q export "$reg/fuzzseed/app:v1" "$reg/fuzzseed/app:v2" -o disc/both.tar --split 64K --parity 1
printf '%s\n' "# a list" "$reg/fuzzseed/app:v1" "" "$reg/fuzzseed/app:v2   # comment" >images.txt
"$haul" -q lock -f images.txt -o images.lock

for tar in saved-v1.tar saved-both.tar v1.tar v1-oci.tar v1-classic.tar v2-delta.tar v2-patch.tar; do
  seed bundle "$tar" <"$tar"
done
seed parts_record both.tar.parts <disc/both.tar.parts
for tar in v2-delta.tar v2-patch.tar; do
  tar -xOf "$tar" haul-delta.json | seed delta_record "$tar.json"
done
seed receipt v1.receipt <v1.receipt
seed image_list images.txt <images.txt
seed image_list images.lock <images.lock
# The patch blob: the one file of the patch delta haul-delta.json names as a patch.
patch=$(tar -xOf v2-patch.tar haul-delta.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["patched"][0]["patch"]["path"])')
tar -xOf v2-patch.tar "$patch" | seed patch v2.patch
# Layer tars for the encoder: the classic layout's uncompressed layers.
n=0
for layer in $(tar -tf v1-classic.tar | grep 'layer.tar$'); do
  n=$((n + 1))
  tar -xOf v1-classic.tar "$layer" | seed patch_encode "layer-$n.tar"
done
# Manifests, the index and configs as the registry serves them.
accept='application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json'
for tag in v1 v2; do
  curl -fs -H "Accept: $accept" "http://$reg/v2/fuzzseed/app/manifests/$tag" | seed manifest "$tag.json"
done
for name in $(tar -tf v1-oci.tar | grep '^blobs/sha256/'); do
  body=$(tar -xOf v1-oci.tar "$name" | head -c 1 || true)
  [ "$body" = "{" ] || continue
  tar -xOf v1-oci.tar "$name" | seed manifest "oci-$(basename "$name")"
  tar -xOf v1-oci.tar "$name" | seed config "oci-$(basename "$name")"
done
tar -xOf v1-oci.tar index.json | seed manifest index.json
printf '%s' "$reg/fuzzseed/app:v1" | seed reference tag
printf '%s' "docker.io/library/busybox:1.36@sha256:$(printf x | sha256sum | cut -d' ' -f1)" | seed reference digest
printf '%s' "linux/arm64/v8" | seed reference platform
printf '%s' 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:app:pull,push"' | seed www_authenticate bearer
printf '%s' 'Basic realm="registry"' | seed www_authenticate basic
printf '%s' '{"token":"abc","access_token":"def","expires_in":300}' | seed token_response both
printf '%s' '0-16777215' | seed upload_range range
printf '%s' 'bytes=0-0' | seed upload_range empty

# The sigstore vectors: bundles, and what they carry.
python3 - "$root/crates/haul-sigstore/src" "$corpus" <<'PY'
import base64, json, os, sys
src, corpus = sys.argv[1], sys.argv[2]
def seed(target, name, data):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)
seed("trusted_root", "public-good.json", open(os.path.join(src, "public-good-trusted-root.json"), "rb").read())
for name in sorted(os.listdir(os.path.join(src, "testdata"))):
    if not name.endswith(".json"):
        continue
    data = open(os.path.join(src, "testdata", name), "rb").read()
    doc = json.loads(data)
    if "mediaType" not in doc:
        seed("trusted_root", name, data)
        continue
    seed("sigstore_bundle", name, data)
    material = doc.get("verificationMaterial", {})
    cert = material.get("certificate", {}).get("rawBytes")
    for i, c in enumerate(material.get("x509CertificateChain", {}).get("certificates", [])):
        cert = cert or c["rawBytes"]
    if cert:
        der = base64.b64decode(cert)
        seed("x509", name + ".der", der)
        seed("der", name + ".der", der)
        pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
        seed("x509", name + ".pem", pem)
        seed("cosign_layer", name, json.dumps({"dev.sigstore.cosign/certificate": pem.decode()}).encode())
    for i, t in enumerate(material.get("timestampVerificationData", {}).get("rfc3161Timestamps", [])):
        token = base64.b64decode(t["signedTimestamp"])
        seed("timestamp", f"{name}.{i}", token)
        seed("der", f"{name}.tsa{i}", token)
    for i, entry in enumerate(material.get("tlogEntries", [])):
        proof = entry.get("inclusionProof", {})
        checkpoint = proof.get("checkpoint", {}).get("envelope")
        if checkpoint:
            seed("checkpoint", f"{name}.{i}", checkpoint.encode())
        if proof.get("hashes"):
            index, size = int(proof["logIndex"]), int(proof["treeSize"])
            blob = index.to_bytes(8, "little") + size.to_bytes(8, "little")
            blob += b"".join(base64.b64decode(h) for h in proof["hashes"])
            seed("inclusion_proof", f"{name}.{i}", blob)
PY
echo "seeded: $(find "$corpus" -type f | wc -l) files in $(ls "$corpus" | wc -l) corpora"

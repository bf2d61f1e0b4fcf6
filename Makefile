# haul: build, test, demo, bench. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
# Where cargo puts its builds (honours CARGO_TARGET_DIR, like cargo does).
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))

.PHONY: build release dist test test-deps site-roots engines lint fmt clippy demo bench fuzz clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# dist/: a stripped haul for x86_64 Linux, aarch64 Linux (both glibc 2.17 or later) and x86_64
# Windows, each with its .sha256 and CycloneDX SBOM (scripts/dist.sh installs what it builds with).
dist:
	scripts/dist.sh

# Installs what is missing (Debian packages; the cosign and oras clients), starts the Docker
# engines, builds dist/ and the machines its binaries are tested on (a Debian 11 root, an arm64
# root under qemu-user, wine), then lints and runs every test.
test: test-deps engines dist site-roots lint
	$(CARGO) test --workspace

test-deps:
	scripts/install-test-deps.sh
	scripts/install-sigstore-clients.sh

site-roots:
	scripts/install-site-roots.sh

engines: test-deps
	scripts/start-dockerd.sh
	scripts/start-docker-containerd-store.sh
	scripts/start-docker-26-classic.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Starts a local registry with a sample image, exports it, loads it where an engine answers.
# One build: only the haul binary (scripts/demo.sh needs no dev-dependency).
demo:
	scripts/install-test-deps.sh docker-registry busybox-static curl
	$(CARGO) build --release
	HAUL_BIN=$(TARGET_DIR)/release/haul scripts/demo.sh

# criterion micro-benchmarks, then the end-to-end comparisons (write BENCHMARKS.md).
bench:
	scripts/install-test-deps.sh docker-registry busybox-static skopeo curl time debootstrap zstd
	$(CARGO) bench
	$(CARGO) build --release
	HAUL_BIN=$(TARGET_DIR)/release/haul $(CARGO) run --release --example bench
	HAUL_BIN=$(TARGET_DIR)/release/haul $(CARGO) run --release --example bench_fleet
	HAUL_BIN=$(TARGET_DIR)/release/haul $(CARGO) run --release --example bench_patch

# Every fuzz target for FUZZ_SECONDS (default 600) each; crash inputs land in fuzz/artifacts/
# (`make test` replays them and the corpora on stable Rust).
fuzz:
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),600) fuzz/run.sh

clean:
	$(CARGO) clean

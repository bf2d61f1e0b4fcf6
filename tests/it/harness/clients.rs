//! The cosign and oras clients `make test` installs (scripts/install-sigstore-clients.sh):
//! cosign 2 (Debian trixie), cosign 3 (sid) and oras 1.2 under /opt/haul-test/clients/bin.
//! Each [`Clients`] runs them with a home of its own (HOME, DOCKER_CONFIG, the XDG folders,
//! TUF_ROOT), without the caller's COSIGN_*, SIGSTORE_*, ORAS_*, TUF_* or proxy variables, so
//! no key, credential or trust cache of the machine's is read and nothing is left behind. Every
//! command has a timeout. Against the harness's registry (plain HTTP on 127.0.0.1) cosign needs
//! no flag; oras needs `--plain-http`, which the helpers here add.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::output_within;

/// Where scripts/install-sigstore-clients.sh puts the clients.
pub const CLIENTS_BIN: &str = "/opt/haul-test/clients/bin";

/// How long one client command may take (they take well under a second against a local
/// registry; a hang fails the test).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The caller's variables that would change what the clients sign, trust or read (by prefix):
/// dropped. COSIGN_PASSWORD is set empty, as the keys here are made.
const ENV_PREFIXES_DROPPED: [&str; 4] = ["COSIGN_", "SIGSTORE_", "ORAS_", "TUF_"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// cosign 2.5 (Debian trixie).
    Cosign,
    /// cosign 3.1 (Debian sid).
    Cosign3,
    /// oras 1.2 (Debian trixie).
    Oras,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Cosign => "cosign",
            Client::Cosign3 => "cosign3",
            Client::Oras => "oras",
        }
    }

    pub fn path(self) -> PathBuf {
        Path::new(CLIENTS_BIN).join(self.name())
    }
}

/// A cosign key pair (`cosign generate-key-pair`, empty password).
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub key: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }

    pub fn public(&self) -> &str {
        self.public.to_str().unwrap()
    }
}

/// The clients, with a home folder of their own (removed on drop).
pub struct Clients {
    pub home: tempfile::TempDir,
}

impl Clients {
    /// Fails the test, saying to run `make test`, when a client is missing.
    #[track_caller]
    pub fn new() -> Clients {
        for client in [Client::Cosign, Client::Cosign3, Client::Oras] {
            let path = client.path();
            assert!(
                path.is_file(),
                "{} is missing: run `make test`, which installs the cosign and oras clients \
                 (scripts/install-sigstore-clients.sh)",
                path.display()
            );
        }
        let home = tempfile::tempdir().unwrap();
        for dir in [
            ".docker",
            ".config",
            ".cache",
            ".local/share",
            ".sigstore/root",
        ] {
            std::fs::create_dir_all(home.path().join(dir)).unwrap();
        }
        Clients { home }
    }

    /// A file in the clients' home.
    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// Writes `contents` to `name` in the clients' home; returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A command running `client` in the clients' home, with nothing of the caller's
    /// environment that would change what it signs, trusts or reads.
    pub fn command(&self, client: Client) -> Command {
        let home = self.home.path();
        let mut command = Command::new(client.path());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if ENV_PREFIXES_DROPPED.iter().any(|p| name.starts_with(p))
                || name.to_ascii_lowercase().ends_with("_proxy")
            {
                command.env_remove(&name);
            }
        }
        command
            .current_dir(home)
            .env("HOME", home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("TUF_ROOT", home.join(".sigstore/root"))
            .env("COSIGN_PASSWORD", "");
        command
    }

    /// Runs `client` with `args` and `env` (name, value) added; its output, whatever its exit.
    pub fn output(&self, client: Client, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(client);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        output_within(&mut command, None, CLIENT_TIMEOUT)
    }

    /// Runs `client` with `args`; fails the test (with the client's stderr) unless it
    /// succeeds; returns its stdout.
    #[track_caller]
    pub fn ok(&self, client: Client, args: &[&str]) -> String {
        self.ok_with_env(client, args, &[])
    }

    #[track_caller]
    pub fn ok_with_env(&self, client: Client, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self.output(client, args, env);
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}{}",
            client.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `client` with `args`; fails the test unless it fails; returns its stderr.
    #[track_caller]
    pub fn fails(&self, client: Client, args: &[&str]) -> String {
        let output = self.output(client, args, &[]);
        assert!(
            !output.status.success(),
            "{} {args:?} should have failed:\n{}{}",
            client.name(),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `cosign generate-key-pair --output-key-prefix NAME`: NAME.key and NAME.pub in the home.
    #[track_caller]
    pub fn key_pair(&self, name: &str) -> KeyPair {
        self.ok(
            Client::Cosign,
            &["generate-key-pair", "--output-key-prefix", name],
        );
        let pair = KeyPair {
            key: self.path(&format!("{name}.key")),
            public: self.path(&format!("{name}.pub")),
        };
        assert!(pair.key.is_file() && pair.public.is_file(), "{pair:?}");
        pair
    }

    /// A trusted root with nothing in it: cosign verifies key-based bundles against it
    /// without fetching Sigstore's TUF root from the network.
    pub fn empty_trusted_root(&self) -> PathBuf {
        self.write(
            "empty-trusted-root.json",
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
        )
    }

    /// `cosign3 signing-config create`: a signing config naming no service (no Fulcio, Rekor
    /// or timestamp authority), so cosign 3 signs offline.
    #[track_caller]
    pub fn signing_config(&self) -> PathBuf {
        let path = self.path("signing-config.json");
        self.ok(
            Client::Cosign3,
            &["signing-config", "create", "--out", path.to_str().unwrap()],
        );
        path
    }

    /// cosign 2's `sign --key` (a layer of the `sha256-<hex>.sig` tag), no transparency log.
    #[track_caller]
    pub fn cosign_sign(&self, key: &KeyPair, reference: &str, extra: &[&str]) {
        let mut args = vec!["sign", "--yes", "--key", key.key(), "--tlog-upload=false"];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ok(Client::Cosign, &args);
    }

    /// cosign 2's `sign --registry-referrers-mode=oci-1-1`: an OCI 1.1 referrer (listed under
    /// the fallback tag `sha256-<hex>` here), no `.sig` tag.
    #[track_caller]
    pub fn cosign_sign_referrer(&self, key: &KeyPair, reference: &str) {
        self.ok_with_env(
            Client::Cosign,
            &[
                "sign",
                "--yes",
                "--key",
                key.key(),
                "--tlog-upload=false",
                "--registry-referrers-mode=oci-1-1",
                reference,
            ],
            &[("COSIGN_EXPERIMENTAL", "1")],
        );
    }

    /// cosign 3's `sign --key` with a signing config: a sigstore bundle (a DSSE in-toto
    /// statement) as an OCI 1.1 referrer.
    #[track_caller]
    pub fn cosign3_sign(&self, key: &KeyPair, reference: &str) {
        let config = self.signing_config();
        let root = self.empty_trusted_root();
        self.ok(
            Client::Cosign3,
            &[
                "sign",
                "--yes",
                "--key",
                key.key(),
                "--signing-config",
                config.to_str().unwrap(),
                "--trusted-root",
                root.to_str().unwrap(),
                reference,
            ],
        );
    }

    /// cosign 2's `attest --key --type TYPE --predicate FILE` (a layer of the `.att` tag, or
    /// with `--new-bundle-format` in `extra` a bundle referrer), no transparency log.
    #[track_caller]
    pub fn cosign_attest(
        &self,
        key: &KeyPair,
        kind: &str,
        predicate: &Path,
        reference: &str,
        extra: &[&str],
    ) {
        let mut args = vec![
            "attest",
            "--yes",
            "--key",
            key.key(),
            "--type",
            kind,
            "--predicate",
            predicate.to_str().unwrap(),
            "--tlog-upload=false",
        ];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ok(Client::Cosign, &args);
    }

    /// `cosign verify --key` offline (no transparency log); `extra` before the reference.
    #[track_caller]
    pub fn cosign_verify(&self, key: &KeyPair, reference: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "verify",
            "--key",
            key.public(),
            "--insecure-ignore-tlog=true",
        ];
        args.extend_from_slice(extra);
        args.push(reference);
        self.ok(Client::Cosign, &args)
    }

    /// `oras attach --plain-http --artifact-type TYPE REFERENCE FILE...` (files named
    /// relative to the home, `name[:media type]`); returns the artifact's digest.
    #[track_caller]
    pub fn oras_attach(
        &self,
        reference: &str,
        artifact_type: &str,
        files: &[&str],
        extra: &[&str],
    ) -> String {
        let mut args = vec!["attach", "--plain-http", "--artifact-type", artifact_type];
        args.extend_from_slice(extra);
        args.push(reference);
        args.extend_from_slice(files);
        let stdout = self.ok(Client::Oras, &args);
        printed_digest(&stdout)
    }

    /// `oras discover --plain-http --format json REFERENCE`: the direct referrers.
    #[track_caller]
    pub fn oras_discover(&self, reference: &str) -> serde_json::Value {
        let stdout = self.ok(
            Client::Oras,
            &["discover", "--plain-http", "--format", "json", reference],
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("oras discover printed no JSON ({e}):\n{stdout}"))
    }

    /// The (digest, artifactType) pairs `oras discover` lists for `reference`, sorted.
    #[track_caller]
    pub fn oras_referrers(&self, reference: &str) -> Vec<(String, String)> {
        let listing = self.oras_discover(reference);
        let mut pairs: Vec<(String, String)> = listing["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("no manifests in {listing}"))
            .iter()
            .map(|m| {
                (
                    m["digest"].as_str().unwrap_or_default().to_string(),
                    m["artifactType"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    }
}

/// The digest in the `Digest: sha256:…` line oras prints after a push or an attach.
#[track_caller]
pub fn printed_digest(stdout: &str) -> String {
    let digest = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no `Digest:` line in:\n{stdout}"));
    digest.trim().to_string()
}

//! Test harness: a real registry process (Debian's `docker-registry`) on a free loopback port,
//! images built here from real tar layers and pushed with the registry API, the haul binary,
//! and the two Docker engines `make test` starts (the classic store on the default socket,
//! the containerd store on /run/haul-test/docker-cs.sock).
//!
//! Nothing is skipped: a missing tool fails the test and says to run `make test`.

#![allow(dead_code)]

pub mod images;
pub mod registry;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use images::*;
pub use registry::*;

/// The containerd-store engine's socket (scripts/start-docker-containerd-store.sh).
pub const CONTAINERD_STORE_HOST: &str = "unix:///run/haul-test/docker-cs.sock";

// ---------------------------------------------------------------------------------------
// haul

/// Runs haul with its own cache folder.
pub struct Haul {
    pub cache: tempfile::TempDir,
    pub workdir: tempfile::TempDir,
}

/// The outcome of one haul run.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(self) -> Run {
        assert!(
            self.status.success(),
            "haul failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts failure with a message containing every one of `needles` (case-insensitive).
    #[track_caller]
    pub fn failure(self, needles: &[&str]) -> Run {
        assert!(
            !self.status.success(),
            "haul should have failed:\n{}",
            self.stderr
        );
        assert_eq!(self.status.code(), Some(1), "exit code: {}", self.stderr);
        let lower = self.stderr.to_lowercase();
        assert!(lower.contains("error:"), "no error line: {}", self.stderr);
        for needle in needles {
            assert!(
                lower.contains(&needle.to_lowercase()),
                "{needle:?} not in:\n{}",
                self.stderr
            );
        }
        self
    }
}

impl Haul {
    pub fn new() -> Haul {
        Haul {
            cache: tempfile::tempdir().unwrap(),
            workdir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_haul"));
        command
            .arg("--cache-dir")
            .arg(self.cache.path())
            .current_dir(self.workdir.path())
            .env_remove("HAUL_CACHE_DIR")
            .env(
                "DOCKER_CONFIG",
                self.workdir.path().join("no-docker-config"),
            )
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, |_| {})
    }

    pub fn run_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Run {
        let mut command = self.command();
        command.args(args);
        adjust(&mut command);
        let output = command.output().expect("run haul");
        Run {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs haul with `input` on standard input.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut command = self.command();
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Exports `references` to `name` in the work folder; returns the tar's path.
    pub fn export(&self, references: &[&str], name: &str) -> PathBuf {
        let mut args = vec!["export"];
        args.extend_from_slice(references);
        args.extend_from_slice(&["-o", name]);
        self.run(&args).success();
        self.workdir.path().join(name)
    }

    /// Files in the work folder (tars and partial files included, hidden ones too).
    pub fn workdir_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.workdir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "no-docker-config")
            .collect();
        names.sort();
        names
    }

    /// Asserts every file under the cache's blobs/ hashes to its name.
    #[track_caller]
    pub fn assert_cache_clean(&self) {
        let dir = self.cache.path().join("blobs/sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(
                hex_of(&sha256(&bytes)),
                entry.file_name().to_string_lossy(),
                "cache holds a blob that does not match its name"
            );
        }
    }

    pub fn partials(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.cache.path().join("ingest")) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "partial"))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Reading tars

/// Entries of a tar: path → contents.
pub fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    tar_entries_of(&bytes)
}

pub fn tar_entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.path().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect()
}

pub fn tar_json(path: &Path, name: &str) -> serde_json::Value {
    let entries = tar_entries(path);
    let (_, data) = entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()));
    serde_json::from_slice(data).unwrap()
}

// ---------------------------------------------------------------------------------------
// Docker engines and skopeo

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Docker's classic image store (Debian bookworm's 20.10), default socket.
    Classic,
    /// The containerd image store (Debian trixie's 26.1), started by make test.
    ContainerdStore,
}

impl Engine {
    pub fn docker(self) -> Command {
        let mut command = Command::new("docker");
        if self == Engine::ContainerdStore {
            command.args(["-H", CONTAINERD_STORE_HOST]);
        }
        command
    }

    #[track_caller]
    fn ok(self, args: &[&str]) -> String {
        let output: Output = self
            .docker()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("docker is missing ({e}): run `make test`"));
        assert!(
            output.status.success(),
            "docker {args:?} on {self:?} failed (is the engine running? `make test` starts it):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `docker load -i tar`; returns the loaded names.
    #[track_caller]
    pub fn load(self, tar: &Path) -> String {
        self.ok(&["load", "-i", tar.to_str().unwrap()])
    }

    #[track_caller]
    pub fn image_id(self, reference: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", reference])
            .trim()
            .to_string()
    }

    /// `docker run --rm --network none reference args…`; returns stdout.
    #[track_caller]
    pub fn run(self, reference: &str, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm", "--network", "none", reference];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    pub fn remove(self, reference: &str) {
        let _ = self.docker().args(["rmi", "-f", reference]).output();
    }
}

/// `skopeo inspect docker-archive:FILE` (config digest and layers as skopeo sees them).
#[track_caller]
pub fn skopeo_inspect(tar: &Path) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}", tar.display())])
        .output()
        .unwrap_or_else(|e| panic!("skopeo is missing ({e}): run `make test`"));
    assert!(
        output.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A name unique to this test process and call, for repositories and docker tags.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

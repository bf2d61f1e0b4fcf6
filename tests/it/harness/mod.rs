//! Test harness: a real registry process (Debian's `docker-registry`) on a free loopback port
//! (open, basic auth, or token auth with a token service the harness runs), images built here
//! from real tar layers and pushed with the registry API, the haul binary, the cosign and
//! oras clients (clients.rs), and the two Docker engines `make test` starts (the classic
//! store on the default socket, the containerd store on /run/haul-test/docker-cs.sock).
//!
//! Nothing is skipped: a missing tool fails the test and says to run `make test`.

#![allow(dead_code)]

pub mod clients;
pub mod images;
pub mod registry;
pub mod sigstore;
pub mod sites;
pub mod tls;
pub mod token;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use clients::*;
pub use images::*;
pub use registry::*;
#[allow(unused_imports)]
pub use tls::*;

/// The containerd-store engine's socket (scripts/start-docker-containerd-store.sh).
pub const CONTAINERD_STORE_HOST: &str = "unix:///run/haul-test/docker-cs.sock";
/// Docker 26.1 with the classic store (scripts/start-docker-26-classic.sh).
pub const CLASSIC_26_HOST: &str = "unix:///run/haul-test/docker-26.sock";

/// How long one haul, docker or skopeo command may take: a hang fails the test instead of
/// stalling the whole run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `command` with `input` on its standard input (or none), capturing stdout and stderr;
/// kills it and fails the test when it takes longer than `timeout`.
#[track_caller]
pub fn output_within(command: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let writer = {
        let stdin = child.stdin.take();
        let input = input.map(<[u8]>::to_vec);
        std::thread::spawn(move || {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                let _ = stdin.write_all(&input); // the command may exit without reading it
            }
        })
    };
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "{command:?} did not finish within {timeout:?}; it was killed. stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

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

    /// Asserts it ended as an interruption does (exit 130), its last line saying `note`.
    #[track_caller]
    pub fn interrupted(self, note: &str) -> Run {
        assert_eq!(self.status.code(), Some(130), "exit code: {}", self.stderr);
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("interrupted; ") && last.contains(note),
            "{note:?} not in the last line of:\n{}",
            self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
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
            // Nothing of the machine's: no configuration file, no proxies (tests set their own).
            .env_remove("HAUL_CONFIG")
            .env("XDG_CONFIG_HOME", self.workdir.path().join("no-config"))
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("NO_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .env_remove("no_proxy")
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
        Run::from(output_within(&mut command, None, COMMAND_TIMEOUT))
    }

    /// Runs haul with `input` on standard input.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        self.run_stdin_bytes(args, input.as_bytes())
    }

    /// Runs haul with `input` (e.g. a tar) on standard input.
    pub fn run_stdin_bytes(&self, args: &[&str], input: &[u8]) -> Run {
        let mut command = self.command();
        command.args(args);
        Run::from(output_within(&mut command, Some(input), COMMAND_TIMEOUT))
    }

    /// Runs haul with `args`, sends it `signal` (`"INT"`, `"TERM"`) once `ready` holds (checked
    /// every 2 ms, for at most a minute), and returns how it ended. Panics when it ended
    /// before `ready` held: the test would prove nothing.
    pub fn interrupt_when(&self, args: &[&str], signal: &str, ready: impl Fn() -> bool) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            if let Some(status) = child.try_wait().unwrap() {
                let output = child.wait_with_output().unwrap();
                panic!(
                    "haul {args:?} ended ({status}) before it could be interrupted: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(Instant::now() < deadline, "haul {args:?}: never ready");
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        Run::from(child.wait_with_output().unwrap())
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
    /// Docker 26.1 with the classic store (overlay2), started by make test.
    Classic26,
}

impl Engine {
    /// A `docker` command talking to this engine (and to no other: the caller's DOCKER_HOST
    /// and context are ignored).
    #[track_caller]
    pub fn docker(self) -> Command {
        self.keep_busybox();
        self.bare_docker()
    }

    fn bare_docker(self) -> Command {
        require_on_path("docker");
        let mut command = Command::new("docker");
        command
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        if let Some(host) = self.host() {
            command.args(["-H", host]);
        }
        command
    }

    /// A classic store drops a layer with the last image holding it. Every test image sits on
    /// busybox, so a test removing its images could take that layer away between haul asking
    /// another test's engine what it holds and `docker load` of the delta: an image of the
    /// busybox layer alone (`docker import` keeps the tar's digest as its diff_id) stays in
    /// each classic engine.
    fn keep_busybox(self) {
        static CLASSIC: std::sync::Once = std::sync::Once::new();
        static CLASSIC_26: std::sync::Once = std::sync::Once::new();
        let once = match self {
            Engine::Classic => &CLASSIC,
            Engine::Classic26 => &CLASSIC_26,
            Engine::ContainerdStore => return,
        };
        once.call_once(|| {
            const KEEPER: &str = "haul-test-keep/busybox:layer";
            let held = output_within(
                self.bare_docker().args(["image", "inspect", KEEPER]),
                None,
                COMMAND_TIMEOUT,
            );
            if held.status.success() {
                return;
            }
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&Layer::busybox(Compression::Gzip).compressed[..])
                .read_to_end(&mut tar)
                .unwrap();
            // Not asserted: an engine that does not answer fails the test's own command,
            // with the message that says how to start it.
            let _ = output_within(
                self.bare_docker().args(["import", "-", KEEPER]),
                Some(&tar),
                COMMAND_TIMEOUT,
            );
        });
    }

    /// Its socket, for `DOCKER_HOST` or `-H` (None: the default one).
    pub fn host(self) -> Option<&'static str> {
        match self {
            Engine::Classic => None,
            Engine::ContainerdStore => Some(CONTAINERD_STORE_HOST),
            Engine::Classic26 => Some(CLASSIC_26_HOST),
        }
    }

    /// What starts this engine.
    fn starter(self) -> &'static str {
        match self {
            Engine::Classic => "scripts/start-dockerd.sh",
            Engine::ContainerdStore => "scripts/start-docker-containerd-store.sh",
            Engine::Classic26 => "scripts/start-docker-26-classic.sh",
        }
    }

    #[track_caller]
    fn ok(self, args: &[&str]) -> String {
        self.ok_with_input(args, None)
    }

    #[track_caller]
    fn ok_with_input(self, args: &[&str], input: Option<&[u8]>) -> String {
        let output = output_within(self.docker().args(args), input, COMMAND_TIMEOUT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "docker {args:?} on the {self:?} engine failed{}:\n{stderr}",
            if stderr.contains("Cannot connect") || stderr.contains("Is the docker daemon running")
            {
                format!(
                    " (the engine does not answer: run `make test`, which starts it with {})",
                    self.starter()
                )
            } else {
                String::new()
            }
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `docker load -i tar`; returns docker's output (`Loaded image: NAME` lines).
    #[track_caller]
    pub fn load(self, tar: &Path) -> String {
        self.ok(&["load", "-i", tar.to_str().unwrap()])
    }

    /// `docker load` reading the tar from standard input.
    #[track_caller]
    pub fn load_stdin(self, tar: &[u8]) -> String {
        self.ok_with_input(&["load"], Some(tar))
    }

    #[track_caller]
    pub fn image_id(self, reference: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", reference])
            .trim()
            .to_string()
    }

    /// `docker pull reference`.
    #[track_caller]
    pub fn pull(self, reference: &str) {
        self.ok(&["pull", reference]);
    }

    /// `docker run --rm --network none reference args…`; returns stdout.
    #[track_caller]
    pub fn run(self, reference: &str, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm", "--network", "none", reference];
        all.extend_from_slice(args);
        // `docker run`'s attach can miss all the output of a container that exits at once
        // while the engine is busy (seen with the containerd store, under a parallel 8 GiB
        // load): the run succeeded, so run it again rather than take "" for its output.
        // Every command run here prints something.
        for _ in 0..2 {
            let output = self.ok(&all);
            if !output.is_empty() {
                return output;
            }
        }
        self.ok(&all)
    }

    /// Removes these images now (left over from an earlier run) and again when the returned
    /// guard is dropped, also when the test fails.
    #[track_caller]
    pub fn cleanup(self, references: &[&str]) -> Cleanup {
        let guard = Cleanup {
            engine: self,
            references: references
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        };
        guard.remove();
        guard
    }

    pub fn remove(self, reference: &str) {
        let _ = output_within(
            self.docker().args(["rmi", "-f", reference]),
            None,
            COMMAND_TIMEOUT,
        );
    }
}

/// Images removed from an engine on drop (see [`Engine::cleanup`]).
#[must_use]
pub struct Cleanup {
    engine: Engine,
    references: Vec<String>,
}

impl Cleanup {
    fn remove(&self) {
        for reference in &self.references {
            self.engine.remove(reference);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Fails the test, saying to run `make test`, when `program` is not on PATH.
#[track_caller]
pub fn require_on_path(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not on PATH: run `make test`, which installs what the tests need \
         (scripts/install-test-deps.sh) and starts the Docker engines"
    );
}

/// The manifest `reference` names, as the registry serves it, read by skopeo (outside haul);
/// `None` when the registry does not have it. `creds`: user and password.
pub fn skopeo_raw(reference: &str, creds: Option<(&str, &str)>) -> Option<Vec<u8>> {
    require_on_path("skopeo");
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some((user, password)) = creds {
        command.arg("--creds").arg(format!("{user}:{password}"));
    }
    command.arg(format!("docker://{reference}"));
    let output = output_within(&mut command, None, COMMAND_TIMEOUT);
    output.status.success().then_some(output.stdout)
}

/// `skopeo inspect docker-archive:FILE` (config digest and layers as skopeo sees them).
#[track_caller]
pub fn skopeo_inspect(tar: &Path) -> serde_json::Value {
    require_on_path("skopeo");
    let output = output_within(
        Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", tar.display())]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// podman with storage of its own (vfs, in a temporary folder): loads tars without touching
/// the machine's images.
pub struct Podman {
    root: tempfile::TempDir,
}

impl Podman {
    #[track_caller]
    pub fn new() -> Podman {
        require_on_path("podman");
        Podman {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(self.root.path().join("storage"))
            .arg("--runroot")
            .arg(self.root.path().join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .arg("--events-backend")
            .arg("file");
        command
    }

    /// Runs podman with `args`; fails the test unless it succeeds; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = output_within(self.command().args(args), None, COMMAND_TIMEOUT);
        assert!(
            output.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers can hold read-only folders; podman removes its own storage best.
        let _ = output_within(
            self.command().args(["system", "reset", "--force"]),
            None,
            COMMAND_TIMEOUT,
        );
    }
}

/// `skopeo copy SOURCE oci:DIR` succeeds: skopeo read every blob and checked its digest.
#[track_caller]
pub fn skopeo_copies(source: &str) {
    require_on_path("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let output = output_within(
        Command::new("skopeo").args([
            "copy",
            source,
            &format!("oci:{}:copied", dir.path().display()),
        ]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "skopeo copy {source} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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

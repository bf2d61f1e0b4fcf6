//! A Docker engine haul delivers to: the local one (`DOCKER_HOST`, or `haul load -H`), or one
//! on another host through ssh (`--to`). [`Engine`] answers the two questions every delivery
//! asks: how to load into it (`docker load` reading the tar on standard input) and what it
//! holds, so that `export --load`, `--to` and `haul load` send only what it lacks. Both go
//! through the engine's own CLI.
//!
//! Docker's classic image store keeps layers by chain ID and never opens the file of a layer
//! whose chain it holds: every prefix of every image's `RootFS.Layers` is held. The
//! containerd image store reuses blobs by digest, which its CLI does not list; it does say
//! what each image points at (its ID is its manifest's digest), and a manifest names its
//! blobs. An engine that cannot be asked holds nothing known: the full tar is sent.

use std::collections::BTreeSet;
use std::process::Command;

use crate::digest::Digest;

/// What the engine holds, when it can tell.
#[derive(Debug)]
pub enum Holdings {
    /// Docker's classic store: these chains (diff_id prefixes) are loaded.
    Chains(BTreeSet<Vec<Digest>>),
    /// The containerd image store: its images, each as the digest of what it points at (a
    /// manifest, or an index) and its diff_ids. The blobs an image manifest names are in its
    /// content store; which they are, only that manifest says.
    Images(Vec<(Digest, Vec<Digest>)>),
    /// Cannot tell, and why (the full tar is sent).
    Unknown(EngineError),
}

/// An engine, and how its `docker` CLI is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The local engine: `DOCKER_HOST` (or docker's default), or the host given.
    Local { host: Option<String> },
    /// An engine on another host: the ssh command line that runs a command there.
    Ssh { ssh: Vec<String>, target: String },
}

impl Engine {
    pub fn local(host: Option<String>) -> Engine {
        Engine::Local { host }
    }

    /// `ssh://[user@]host[:port]`, reached with `ssh [-p port] [user@]host`, `ssh` replaced by
    /// `$HAUL_SSH_COMMAND` when set (split on whitespace, as git's GIT_SSH_COMMAND is).
    pub fn ssh(target: &str) -> Result<Engine, EngineError> {
        let invalid = |detail: String| EngineError::Target {
            target: target.to_string(),
            detail,
        };
        if cfg!(windows) {
            return Err(invalid(
                "the ssh transport is not supported by haul on Windows; write the tar \
                 (-o FILE), copy it to the engine's host and run `haul load FILE` there"
                    .to_string(),
            ));
        }
        let Some(rest) = target.strip_prefix("ssh://") else {
            return Err(invalid(
                "only ssh://[USER@]HOST[:PORT] is supported".to_string(),
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (user_host, port) = match rest.rsplit_once(':') {
            Some((user_host, port)) if !port.contains(']') => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| invalid(format!("the port {port:?} is not a number")))?;
                (user_host, Some(port))
            }
            _ => (rest, None),
        };
        let host = user_host.rsplit('@').next().unwrap_or("");
        if host.is_empty() || user_host.contains(char::is_whitespace) || user_host.starts_with('-')
        {
            return Err(invalid("expected ssh://[USER@]HOST[:PORT]".to_string()));
        }
        let command = std::env::var("HAUL_SSH_COMMAND").unwrap_or_else(|_| "ssh".to_string());
        let mut ssh: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        if ssh.is_empty() {
            ssh.push("ssh".to_string());
        }
        if let Some(port) = port {
            ssh.extend(["-p".to_string(), port.to_string()]);
        }
        ssh.push(user_host.to_string());
        Ok(Engine::Ssh {
            ssh,
            target: target.to_string(),
        })
    }

    /// A `docker args…` command that talks to this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        match self {
            Engine::Local { host } => {
                let mut command = Command::new("docker");
                if let Some(host) = host {
                    command.args(["-H", host]);
                }
                command.args(args);
                command
            }
            Engine::Ssh { ssh, .. } => {
                let mut command = Command::new(&ssh[0]);
                command.args(&ssh[1..]);
                // ssh hands the remote shell one line: quote each word so it stays one.
                command.arg("docker");
                command.args(args.iter().map(|a| shell_quote(a)));
                command
            }
        }
    }

    /// `haul args…` on the engine's host, for what only haul does there (rebuilding a patch
    /// delta): `HAUL_REMOTE_COMMAND` names it when it is not `haul` on the remote PATH. None
    /// for the local engine, where this process does it.
    pub fn remote_haul(&self, args: &[&str]) -> Option<Command> {
        let Engine::Ssh { ssh, .. } = self else {
            return None;
        };
        let mut command = Command::new(&ssh[0]);
        command.args(&ssh[1..]);
        // As given: a path, or words (`sudo haul`).
        command.arg(std::env::var("HAUL_REMOTE_COMMAND").unwrap_or_else(|_| "haul".to_string()));
        command.args(args.iter().map(|a| shell_quote(a)));
        Some(command)
    }

    /// `docker load`, reading the tar on its standard input.
    pub fn load_command(&self) -> Command {
        self.docker(&["load"])
    }

    /// Streams the tar `tar` into the engine's `docker load`, telling `sent` of every chunk
    /// written and `said` of every line docker prints (as it prints them), and returns the
    /// images it loaded (its `Loaded image: …` lines). Blocks: it runs the docker CLI.
    pub fn load(
        &self,
        tar: &mut dyn std::io::Read,
        sent: &mut dyn FnMut(u64),
        said: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<String>, LoadError> {
        use std::io::{BufRead, Write};
        let mut child = self
            .load_command()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| LoadError::Start(self.describe(), e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::scope(|scope| {
            // docker load prints as it goes: read it beside the copy, so neither pipe fills.
            let printed = scope.spawn(move || {
                let mut loaded = Vec::new();
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    said(&line);
                    if let Some(image) = line.trim().strip_prefix("Loaded image") {
                        let image = image.trim_start_matches(" ID").trim_start_matches(':');
                        loaded.push(image.trim().to_string());
                    }
                }
                loaded
            });
            // Large writes: a pipe into docker is the slow side, not the file.
            let mut buffer = vec![0u8; 1 << 20];
            let copied = loop {
                let read = match tar.read(&mut buffer) {
                    Ok(0) => break Ok(()),
                    Ok(read) => read,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(LoadError::Read(e)),
                };
                if let Err(e) = stdin.write_all(&buffer[..read]) {
                    break Err(LoadError::Send(e));
                }
                sent(read as u64);
            };
            if let Err(LoadError::Read(_)) = &copied {
                // Stop the loader before it takes a cut tar as complete: killed first, its
                // input closed after, so it never reads an end where the tar was cut.
                let _ = child.kill();
            }
            drop(stdin);
            let status = child.wait().map_err(LoadError::Send)?;
            let loaded = printed.join().unwrap_or_default();
            match copied {
                Err(LoadError::Send(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(LoadError::Send(e))
                }
                Err(LoadError::Read(e)) => Err(LoadError::Read(e)),
                _ if !status.success() => {
                    Err(LoadError::Failed(self.describe(), status.to_string()))
                }
                _ => Ok(loaded),
            }
        })
    }

    /// `docker save names…` into `file`: the engine's own copy of those images, in the form
    /// its `docker load` reads. Blocks: it runs the docker CLI.
    pub fn save(&self, names: &[String], file: std::fs::File) -> Result<(), EngineError> {
        let mut args = vec!["save"];
        args.extend(names.iter().map(String::as_str));
        let mut save = self.docker(&args);
        // As it runs: `docker -H HOST save …`, `ssh me@host docker save …`.
        let command = std::iter::once(save.get_program())
            .chain(save.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let output = save
            .stdout(file)
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|source| EngineError::Start {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(EngineError::Failed {
                command,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Refuses what this operating system cannot reach: on Windows, an engine on a Unix socket
    /// (Docker there listens on a named pipe). Commands ask before they read or fetch anything.
    pub fn reachable_from_here(&self) -> Result<(), LoadError> {
        let Engine::Local { host } = self else {
            return Ok(());
        };
        let host = host.clone().or_else(|| std::env::var("DOCKER_HOST").ok());
        match host {
            Some(host) if cfg!(windows) && host.starts_with("unix://") => {
                Err(LoadError::Unsupported(format!(
                    "{host} is a Unix socket, which haul on Windows cannot reach; Docker on \
                     Windows listens on npipe:////./pipe/docker_engine (docker's default: \
                     leave -H and DOCKER_HOST out)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// For messages: `` `docker load` ``, `` `ssh me@host docker load` ``.
    pub fn describe(&self) -> String {
        match self {
            Engine::Local { host: None } => "`docker load`".to_string(),
            Engine::Local { host: Some(host) } => format!("`docker -H {host} load`"),
            Engine::Ssh { ssh, .. } => format!("`{} docker load`", ssh.join(" ")),
        }
    }

    /// What the engine holds. Blocks: it runs the docker CLI.
    pub fn holdings(&self) -> Holdings {
        match ask(self) {
            Ok(holdings) => holdings,
            Err(why) => Holdings::Unknown(why),
        }
    }
}

/// Why the engine could not be named, asked or saved from.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--to {target:?}: {detail}")]
    Target { target: String, detail: String },
    #[error("cannot run {command}")]
    Start {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`docker image inspect` printed {line:?}: {detail}")]
    Unreadable { line: String, detail: String },
}

impl EngineError {
    /// Whether docker said an image is gone (removed between the listing and the inspection).
    fn no_such_image(&self) -> bool {
        matches!(self, EngineError::Failed { stderr, .. }
            if stderr.to_ascii_lowercase().contains("no such image"))
    }
}

/// Why a load did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot run {0}: {1}")]
    Start(String, #[source] std::io::Error),
    #[error("cannot read the tar")]
    Read(#[source] std::io::Error),
    #[error("cannot send the tar into the engine")]
    Send(#[source] std::io::Error),
    #[error("{0} failed ({1}); see its message above")]
    Failed(String, String),
    #[error("{0}")]
    Unsupported(String),
}

fn ask(engine: &Engine) -> Result<Holdings, EngineError> {
    // An image removed between the listing and the inspection (by someone else, meanwhile)
    // fails the inspection: list again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ask_once(engine) {
            Err(why) if attempt < 3 && why.no_such_image() => {
                continue;
            }
            answer => return answer,
        }
    }
}

fn ask_once(engine: &Engine) -> Result<Holdings, EngineError> {
    let driver = docker(engine, &["info", "--format", "{{json .DriverStatus}}"])?;
    let containerd_store = driver.contains("io.containerd.snapshotter");
    let ids = docker(engine, &["image", "ls", "--quiet", "--no-trunc"])?;
    let ids: BTreeSet<&str> = ids.split_whitespace().collect();
    let mut images = Vec::new();
    if !ids.is_empty() {
        let mut args = vec![
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RootFS.Layers}}",
        ];
        args.extend(ids.iter().copied());
        for line in docker(engine, &args)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let unreadable = |detail: String| EngineError::Unreadable {
                line: line.to_string(),
                detail,
            };
            let (id, layers) = line
                .split_once(' ')
                .ok_or_else(|| unreadable("no layers".to_string()))?;
            let id: Digest = id.parse().map_err(|e| unreadable(format!("{e}")))?;
            let layers: Vec<Digest> = serde_json::from_str::<Option<Vec<Digest>>>(layers)
                .map_err(|e| unreadable(e.to_string()))?
                .unwrap_or_default();
            images.push((id, layers));
        }
    }
    if containerd_store {
        return Ok(Holdings::Images(images));
    }
    Ok(Holdings::Chains(chains_of(&images)))
}

impl Holdings {
    /// The chains (diff_id prefixes) the engine holds unpacked, in either store; or why it
    /// cannot tell.
    pub fn chains(self) -> Result<BTreeSet<Vec<Digest>>, EngineError> {
        match self {
            Holdings::Chains(chains) => Ok(chains),
            Holdings::Images(images) => Ok(chains_of(&images)),
            Holdings::Unknown(why) => Err(why),
        }
    }
}

/// Every prefix of every image's diff_ids.
fn chains_of(images: &[(Digest, Vec<Digest>)]) -> BTreeSet<Vec<Digest>> {
    images
        .iter()
        .flat_map(|(_, layers)| (1..=layers.len()).map(|n| layers[..n].to_vec()))
        .collect()
}

/// Runs `docker args…` on `engine` and returns its standard output.
fn docker(engine: &Engine, args: &[&str]) -> Result<String, EngineError> {
    let mut command = engine.docker(args);
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| EngineError::Start {
            command: program,
            source,
        })?;
    if !output.status.success() {
        return Err(EngineError::Failed {
            command: format!("docker {}", args.first().copied().unwrap_or_default()),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `word` in single quotes, for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_targets_become_an_ssh_command() {
        let argv = |t: &str| {
            Engine::ssh(t).map(|engine| {
                let command = engine.load_command();
                std::iter::once(command.get_program())
                    .chain(command.get_args())
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        assert_eq!(argv("ssh://me@host").unwrap(), "ssh me@host docker 'load'");
        assert_eq!(
            argv("ssh://host:2222").unwrap(),
            "ssh -p 2222 host docker 'load'"
        );
        assert!(argv("host").is_err());
        assert!(argv("ssh://").is_err());
        assert!(argv("ssh://-oProxyCommand=x").is_err());
        assert!(argv("ssh://h:port").is_err());
        let remote = Engine::ssh("ssh://me@host").unwrap();
        let haul = remote.remote_haul(&["load", "-"]).unwrap();
        assert_eq!(
            haul.get_args().collect::<Vec<_>>(),
            vec!["me@host", "haul", "'load'", "'-'"]
        );
        assert!(Engine::local(None).remote_haul(&["load"]).is_none());
        let local = Engine::local(Some("unix:///x.sock".into())).load_command();
        assert_eq!(
            local.get_args().collect::<Vec<_>>(),
            vec!["-H", "unix:///x.sock", "load"]
        );
    }

    #[test]
    fn words_survive_the_remote_shell() {
        assert_eq!(shell_quote("{{json .X}}"), "'{{json .X}}'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

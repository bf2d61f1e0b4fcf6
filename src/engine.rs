//! Asks a Docker engine what it holds, through its own CLI (`docker`, honouring
//! `DOCKER_HOST`; or `docker` on another host through ssh), so that `export --load` and
//! `--to` send only what it lacks.
//!
//! Docker's classic image store keeps layers by chain ID and never opens the file of a layer
//! whose chain it holds: every prefix of every image's `RootFS.Layers` is held. The
//! containerd image store reuses blobs by digest, which its CLI does not list: for it, and for
//! an engine that cannot be asked, the answer is "unknown", and the full tar is sent.

use std::collections::BTreeSet;
use std::process::Command;

use crate::digest::Digest;

/// What the engine holds, when it can tell.
#[derive(Debug)]
pub enum Holdings {
    /// Docker's classic store: these chains (diff_id prefixes) are loaded.
    Chains(BTreeSet<Vec<Digest>>),
    /// Cannot tell, and why (the full tar is sent).
    Unknown(String),
}

/// Asks the engine `prefix` + `docker …` reaches (`prefix` is empty for the local one, or
/// the ssh command line). Blocks: it runs the docker CLI.
pub fn holdings(prefix: &[String]) -> Holdings {
    match ask(prefix) {
        Ok(holdings) => holdings,
        Err(why) => Holdings::Unknown(why),
    }
}

fn ask(prefix: &[String]) -> Result<Holdings, String> {
    let driver = docker(prefix, &["info", "--format", "{{json .DriverStatus}}"])?;
    if driver.contains("io.containerd.snapshotter") {
        return Ok(Holdings::Unknown(
            "it uses the containerd image store, whose blobs its CLI does not list".to_string(),
        ));
    }
    let ids = docker(prefix, &["image", "ls", "--quiet", "--no-trunc"])?;
    let ids: BTreeSet<&str> = ids.split_whitespace().collect();
    let mut chains = BTreeSet::new();
    if ids.is_empty() {
        return Ok(Holdings::Chains(chains));
    }
    let mut args = vec!["image", "inspect", "--format", "{{json .RootFS.Layers}}"];
    args.extend(ids.iter().copied());
    for line in docker(prefix, &args)?
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let layers: Vec<Digest> = serde_json::from_str::<Option<Vec<Digest>>>(line)
            .map_err(|e| format!("`docker image inspect` printed {line:?}: {e}"))?
            .unwrap_or_default();
        for n in 1..=layers.len() {
            chains.insert(layers[..n].to_vec());
        }
    }
    Ok(Holdings::Chains(chains))
}

/// Runs `prefix docker args…` and returns its standard output.
fn docker(prefix: &[String], args: &[&str]) -> Result<String, String> {
    let (program, before) = match prefix.split_first() {
        Some((program, rest)) => (program.as_str(), rest),
        None => ("docker", &[][..]),
    };
    let mut command = Command::new(program);
    command.args(before);
    if prefix.is_empty() {
        command.args(args);
    } else {
        // ssh hands the remote shell one line: quote each word so it stays one.
        command.arg("docker");
        command.args(args.iter().map(|a| shell_quote(a)));
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`docker {}` failed: {}",
            args.first().copied().unwrap_or_default(),
            stderr.trim()
        ));
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
    fn words_survive_the_remote_shell() {
        assert_eq!(shell_quote("{{json .X}}"), "'{{json .X}}'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

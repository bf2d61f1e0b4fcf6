//! Asks a Docker engine what it holds, through its own CLI (`docker`, honouring
//! `DOCKER_HOST`; or `docker` on another host through ssh), so that `export --load` and
//! `--to` send only what it lacks.
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
    let containerd_store = driver.contains("io.containerd.snapshotter");
    let ids = docker(prefix, &["image", "ls", "--quiet", "--no-trunc"])?;
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
        for line in docker(prefix, &args)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let unreadable =
                |detail: String| format!("`docker image inspect` printed {line:?}: {detail}");
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
    pub fn chains(self) -> Result<BTreeSet<Vec<Digest>>, String> {
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

//! `haul export`: resolve → plan → fetch → export, for one tar holding every image asked for.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::Global;
use super::images::prepare;
use crate::cache::StoredBlob;
use crate::cli::{ExportArgs, Format};
use crate::digest::Digest;
use crate::export::{self, BlobSource, BoxError, Layout, Output};
use crate::fetch::Downloads;
use crate::reference::Reference;

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let count = args.images.references.len();
    let output = match args.output.as_deref() {
        _ if args.load => Some(Output::Command(vec![
            "docker".to_string(),
            "load".to_string(),
        ])),
        _ if args.to.is_some() => Some(Output::Command(ssh_docker_load(
            args.to.as_deref().unwrap_or_default(),
        )?)),
        Some("-") => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write a tar to the terminal; redirect it (-o - > file.tar, or | docker load) or give -o FILE"
                );
            }
            Some(Output::Stdout)
        }
        Some(path) => Some(Output::File(PathBuf::from(path))),
        None if count > 1 => {
            bail!(
                "{count} images go into one tar: name it with -o FILE (or -o - for standard output)"
            )
        }
        None => None,
    };

    let layout = match args.format {
        Format::Docker => Layout::Docker,
        Format::DockerV1 => Layout::DockerV1,
        Format::Oci => Layout::Oci,
    };
    let platforms = if args.images.all_platforms {
        usize::MAX
    } else {
        args.images.platform.len()
    };
    if platforms > 1 && layout != Layout::Oci {
        bail!(
            "the docker formats hold one platform per image name (docker load keeps one); \
             use --format oci to export several platforms as one index"
        );
    }
    // The classic layout's layer.tar files are uncompressed tars.
    let uncompressed = args.decompress || layout == Layout::DockerV1;
    let prepared = prepare(global, &args.images, &args.downloads, uncompressed).await?;
    let output = output.unwrap_or_else(|| {
        // One reference here; several platforms of it are named together.
        let platform_part = if args.images.all_platforms {
            "all".to_string()
        } else {
            let parts: Vec<String> = prepared
                .configs
                .iter()
                .map(|c| c.platform().file_name_part())
                .collect();
            parts.join("+")
        };
        Output::File(default_file_name(
            &prepared.resolved[0].reference,
            &platform_part,
        ))
    });
    let mut downloads = CacheDownloads(prepared.fetcher.start(prepared.plan.blobs.clone()));
    export::write_tar(
        &prepared.plan.images,
        layout,
        &mut downloads,
        &output,
        global.progress.as_ref(),
    )
    .await
    .with_context(|| format!("export to {} failed; no tar was written", output.describe()))?;
    prepared.record()
}

/// `ssh://[user@]host[:port]` → `ssh [-p port] [user@]host docker load`, with `ssh` replaced
/// by `$HAUL_SSH_COMMAND` when set (split on whitespace, as git's GIT_SSH_COMMAND is).
fn ssh_docker_load(target: &str) -> anyhow::Result<Vec<String>> {
    let Some(rest) = target.strip_prefix("ssh://") else {
        bail!("--to {target:?}: only ssh://[USER@]HOST[:PORT] is supported");
    };
    let rest = rest.trim_end_matches('/');
    let (user_host, port) = match rest.rsplit_once(':') {
        Some((user_host, port)) if !port.contains(']') => {
            let port: u16 = port.parse().map_err(|_| {
                anyhow::anyhow!("--to {target:?}: the port {port:?} is not a number")
            })?;
            (user_host, Some(port))
        }
        _ => (rest, None),
    };
    let host = user_host.rsplit('@').next().unwrap_or("");
    if host.is_empty() || user_host.contains(char::is_whitespace) || user_host.starts_with('-') {
        bail!("--to {target:?}: expected ssh://[USER@]HOST[:PORT]");
    }
    let ssh = std::env::var("HAUL_SSH_COMMAND").unwrap_or_else(|_| "ssh".to_string());
    let mut argv: Vec<String> = ssh.split_whitespace().map(str::to_string).collect();
    if argv.is_empty() {
        argv.push("ssh".to_string());
    }
    if let Some(port) = port {
        argv.extend(["-p".to_string(), port.to_string()]);
    }
    argv.extend([
        user_host.to_string(),
        "docker".to_string(),
        "load".to_string(),
    ]);
    Ok(argv)
}

/// `<registry>_<repository with / as _>_<tag>_<arch>.tar`; a `:` (registry port) becomes
/// `_` too, and an untagged reference uses its digest's first 12 hex digits.
fn default_file_name(reference: &Reference, platform_part: &str) -> PathBuf {
    let tag = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) => format!("sha256-{}", &digest.hex()[..12]),
        (None, None) => "latest".to_string(),
    };
    let name = format!(
        "{}_{}_{}_{}.tar",
        reference.registry(),
        reference.repository(),
        tag,
        platform_part
    );
    PathBuf::from(name.replace(['/', ':'], "_"))
}

/// The downloads, as the exporter sees them: cache paths that become ready.
struct CacheDownloads(Downloads);

impl BlobSource for CacheDownloads {
    async fn blob(&mut self, digest: &Digest) -> Result<StoredBlob, BoxError> {
        Ok(self.0.wait(digest).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn ssh_targets() {
        let argv = |t: &str| ssh_docker_load(t).map(|a| a.join(" "));
        assert_eq!(argv("ssh://me@host").unwrap(), "ssh me@host docker load");
        assert_eq!(
            argv("ssh://host:2222").unwrap(),
            "ssh -p 2222 host docker load"
        );
        assert!(argv("host").is_err());
        assert!(argv("ssh://").is_err());
        assert!(argv("ssh://-oProxyCommand=x").is_err());
        assert!(argv("ssh://h:port").is_err());
    }

    #[test]
    fn default_file_names() {
        let amd64 = Platform::new("linux", "amd64", None).file_name_part();
        let name = |r: &str| default_file_name(&r.parse().unwrap(), &amd64);
        assert_eq!(
            name("busybox"),
            PathBuf::from("docker.io_library_busybox_latest_amd64.tar")
        );
        assert_eq!(
            name("127.0.0.1:5000/test/app:v1"),
            PathBuf::from("127.0.0.1_5000_test_app_v1_amd64.tar")
        );
        let arm = Platform::new("linux", "arm", Some("v7")).file_name_part();
        assert_eq!(
            default_file_name(&"ghcr.io/a/b:1".parse().unwrap(), &arm),
            PathBuf::from("ghcr.io_a_b_1_armv7.tar")
        );
    }
}

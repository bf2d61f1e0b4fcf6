//! `haul export`: resolve → plan → fetch → export, for one tar holding every image asked for.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{Global, image_request};
use crate::cli::{ExportArgs, Format};
use crate::export::{Layout, Output};
use crate::pipeline::LayerForm;
use crate::plan::Plan;
use crate::reference::Reference;

/// Where `-o` (or its absence) sends the tar, before the images are known.
enum Destination {
    Ready(Output),
    /// The default file name, in this folder.
    DefaultName(PathBuf),
}

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let count = args.images.references.len();
    let destination = match args.output.as_deref() {
        _ if args.load => Destination::Ready(Output::Command(vec![
            "docker".to_string(),
            "load".to_string(),
        ])),
        _ if args.to.is_some() => Destination::Ready(Output::Command(ssh_docker_load(
            args.to.as_deref().unwrap_or_default(),
        )?)),
        Some("-") => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write a tar to the terminal; redirect it (-o - > file.tar, or | docker load) or give -o FILE"
                );
            }
            Destination::Ready(Output::Stdout)
        }
        // A folder, as `cp` takes one: the tar gets its default name inside it.
        Some(path) if path.ends_with('/') || Path::new(path).is_dir() => {
            if count > 1 {
                bail!(
                    "{count} images go into one tar: name it with -o {}/FILE (-o DIR names a tar after its one image)",
                    path.trim_end_matches('/')
                );
            }
            Destination::DefaultName(PathBuf::from(path))
        }
        Some(path) => Destination::Ready(Output::File(PathBuf::from(path))),
        None if count > 1 => {
            bail!(
                "{count} images go into one tar: name it with -o FILE (or -o - for standard output)"
            )
        }
        None => Destination::DefaultName(PathBuf::new()),
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
    let layers = if args.decompress || layout == Layout::DockerV1 {
        LayerForm::Uncompressed
    } else {
        LayerForm::AsServed
    };
    let request = image_request(&args.images)?;
    let session = global
        .session(&args.images, usize::from(args.downloads.jobs))
        .await?;
    let resolved = session.resolve(&request).await?;
    let plan = session.plan(resolved, &request.platforms, layers).await?;
    let output = match destination {
        Destination::Ready(output) => output,
        Destination::DefaultName(folder) => Output::File(folder.join(default_file_name(
            &plan.resolved[0].reference,
            &platform_part(&args, &plan),
        ))),
    };
    session.export(&plan, layout, &output).await?;
    Ok(())
}

/// The platform part of the default file name; several platforms of one reference are named
/// together.
fn platform_part(args: &ExportArgs, plan: &Plan) -> String {
    if args.images.all_platforms {
        return "all".to_string();
    }
    let parts: Vec<String> = plan
        .configs
        .iter()
        .map(|c| c.platform().file_name_part())
        .collect();
    parts.join("+")
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

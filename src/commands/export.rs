//! `haul export`: resolve → plan → fetch → export, for one tar holding every image asked for.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::future::try_join_all;

use super::Global;
use crate::cache::BlobStore;
use crate::cli::ExportArgs;
use crate::digest::Digest;
use crate::export::{self, BlobSource, BoxError, Output};
use crate::fetch::{BlobRequest, Downloads, FetchOptions, Fetcher};
use crate::manifest::ImageConfig;
use crate::plan::Plan;
use crate::platform::Platform;
use crate::progress::Event;
use crate::reference::Reference;
use crate::registry::Client;
use crate::resolve::{ResolvedImage, resolve};

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let references = args
        .references
        .iter()
        .map(|r| r.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let explicit_platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let wanted = explicit_platform.clone().unwrap_or_else(Platform::host);
    let output = match args.output.as_deref() {
        Some("-") => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write a tar to the terminal; redirect it (-o - > file.tar, or | docker load) or give -o FILE"
                );
            }
            Some(Output::Stdout)
        }
        Some(path) => Some(Output::File(PathBuf::from(path))),
        None if references.len() > 1 => {
            bail!(
                "{} images go into one tar: name it with -o FILE (or -o - for standard output)",
                references.len()
            )
        }
        None => None,
    };

    let client = Arc::new(Client::new(global.registry_options(&args.login)?)?);
    let store = BlobStore::open(&global.cache_dir)?;
    let fetcher = Fetcher::new(
        client.clone(),
        store.clone(),
        global.progress.clone(),
        FetchOptions {
            jobs: usize::from(args.jobs),
            ..FetchOptions::default()
        },
    );

    // Resolve every reference to one image manifest.
    let resolved: Vec<ResolvedImage> =
        try_join_all(references.iter().map(|r| resolve(&client, r, &wanted))).await?;
    for image in &resolved {
        store
            .put_bytes(&image.manifest.digest, &image.manifest.bytes)
            .await
            .with_context(|| format!("{}: cannot cache the manifest", image.reference))?;
    }

    // Configs first: they decide whether the image is usable and name the output file.
    let configs = try_join_all(resolved.iter().map(|image| {
        let fetcher = fetcher.clone();
        let store = store.clone();
        let request = BlobRequest {
            reference: image.reference.clone(),
            descriptor: image.image.config.clone(),
        };
        async move {
            fetcher.fetch(&request).await?;
            let bytes = store.read_verified(&request.descriptor.digest)?;
            anyhow::Ok(ImageConfig::parse(
                &request.reference.to_string(),
                &request.descriptor.digest,
                &bytes,
            )?)
        }
    }))
    .await?;
    for (image, config) in resolved.iter().zip(&configs) {
        image.check_config(config, explicit_platform.as_ref())?;
        global.progress.event(Event::Resolved {
            reference: image.reference.to_string(),
            digest: image.manifest.digest.clone(),
            platform: config.platform().to_string(),
        });
    }

    let output = output.unwrap_or_else(|| {
        Output::File(default_file_name(
            &resolved[0].reference,
            &configs[0].platform(),
        ))
    });
    let plan = Plan::new(&resolved);
    let mut downloads = CacheDownloads(fetcher.start(plan.blobs.clone()));
    export::write_docker_tar(
        &plan.images,
        &mut downloads,
        &output,
        global.progress.as_ref(),
    )
    .await
    .with_context(|| format!("export to {} failed; no tar was written", output.describe()))?;
    Ok(())
}

/// `<registry>_<repository with / as _>_<tag>_<arch>.tar`; a `:` (registry port) becomes
/// `_` too, and an untagged reference uses its digest's first 12 hex digits.
fn default_file_name(reference: &Reference, platform: &Platform) -> PathBuf {
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
        platform.file_name_part()
    );
    PathBuf::from(name.replace(['/', ':'], "_"))
}

/// The downloads, as the exporter sees them: cache paths that become ready.
struct CacheDownloads(Downloads);

impl BlobSource for CacheDownloads {
    async fn blob(&mut self, digest: &Digest) -> Result<PathBuf, BoxError> {
        Ok(self.0.wait(digest).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_names() {
        let amd64 = Platform::new("linux", "amd64", None);
        let name = |r: &str| default_file_name(&r.parse().unwrap(), &amd64);
        assert_eq!(
            name("busybox"),
            PathBuf::from("docker.io_library_busybox_latest_amd64.tar")
        );
        assert_eq!(
            name("127.0.0.1:5000/test/app:v1"),
            PathBuf::from("127.0.0.1_5000_test_app_v1_amd64.tar")
        );
        let arm = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(
            default_file_name(&"ghcr.io/a/b:1".parse().unwrap(), &arm),
            PathBuf::from("ghcr.io_a_b_1_armv7.tar")
        );
    }
}

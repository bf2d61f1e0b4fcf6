//! A patch delta pushed: rebuilt first ([`crate::rebuild`]) into a file, which is then pushed
//! as any tar. Its patches are applied to the layers given with `--from`, else to the layers
//! the destination registry holds (fetched into the cache by digest, each checked). Its
//! left-out layers stay out (the registry holds them) unless the earlier bundles fill them.
//! A layer rebuilt by content changes its image's manifest digest: refused unless asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::tar::{TarError, repository_of, target};
use crate::bundle::names::{PatchSource, PatchedLayer, Rebuild};
use crate::bundle::{Bundle, BundleFile, Place};
use crate::cache::StoredBlob;
use crate::digest::Digest;
use crate::export::tar::TarWriter;
use crate::fetch::BlobRequest;
use crate::manifest::Descriptor;
use crate::rebuild::sources::Fetched;
use crate::rebuild::{LeftOut, RebuildError, RebuildJob, RebuiltLayer, Sources, check_left_out};

/// Why a patch delta was not rebuilt for a push. Each message ends by saying nothing was
/// pushed.
#[derive(Debug, thiserror::Error)]
pub enum DeltaPushError {
    #[error(
        "{count} of {name}'s patched layers rebuild by content only (their compression cannot \
         be made again byte for byte): pushed, they go up uncompressed and these manifest \
         digests change: {images}. Push with --new-digests to accept that (the image IDs are \
         kept), or push the full bundle. Nothing was pushed"
    )]
    ByContent {
        count: usize,
        name: String,
        images: String,
    },
    #[error(
        "{name} is rebuilt from the layers the destination holds, and {repository} lacks layer \
         {layer}: push {made_against} there first, or give the bundle that brought it with \
         --from PREV. Nothing was pushed"
    )]
    BaseMissing {
        name: String,
        made_against: String,
        repository: String,
        layer: String,
    },
    #[error(
        "{name} is rebuilt from the layers the destination holds, and fetching one failed: \
         push {made_against} there first, or give the bundle that brought it with --from \
         PREV. Nothing was pushed"
    )]
    NotAtDestination {
        name: String,
        made_against: String,
        #[source]
        source: Box<crate::fetch::FetchError>,
    },
    #[error(
        "{name}: {source}. Push with --new-digests to accept that, or push the full bundle. Nothing was pushed"
    )]
    NotExact {
        name: String,
        #[source]
        source: RebuildError,
    },
    #[error("{name}: nothing was pushed")]
    Rebuild {
        name: String,
        #[source]
        source: RebuildError,
    },
    #[error("{name} rebuilt is not whole ({problem}); nothing was pushed")]
    NotWhole { name: String, problem: String },
    #[error(transparent)]
    Target(#[from] TarError),
}

/// Refuses a delta with layers that rebuild by content only, unless `new_digests`: naming
/// the images whose manifest digests (and carried signatures) that would change.
pub fn check_digests_kept(
    bundle: &Bundle,
    name: &str,
    new_digests: bool,
) -> Result<(), DeltaPushError> {
    let content: Vec<&PatchedLayer> = bundle
        .delta
        .iter()
        .flat_map(|d| d.patched.values())
        .filter(|l| l.rebuild == Rebuild::Content)
        .collect();
    if content.is_empty() || new_digests {
        return Ok(());
    }
    let images: Vec<String> = bundle
        .images
        .iter()
        .filter(|image| {
            image.platforms.iter().any(|p| {
                p.layers
                    .iter()
                    .any(|l| content.iter().any(|c| c.digest == l.digest))
            })
        })
        .map(|image| {
            let signed = bundle
                .attachments
                .iter()
                .filter(|a| image.digests().contains(&&a.subject))
                .count();
            format!(
                "{} ({}{})",
                image.label,
                image
                    .digest()
                    .map_or_else(|| "no manifest".to_string(), ToString::to_string),
                match signed {
                    0 => String::new(),
                    1 => ", and the 1 signature or attestation the tar carries for it".to_string(),
                    n =>
                        format!(", and the {n} signatures and attestations the tar carries for it"),
                }
            )
        })
        .collect();
    Err(DeltaPushError::ByContent {
        count: content.len(),
        name: name.to_string(),
        images: images.join("; "),
    })
}

/// The layers a patch delta is rebuilt from, as they are asked of the destination registry:
/// the site registry that took the earlier bundle holds them, by digest, in the image's
/// repository.
pub struct AtDestination {
    pub requests: Vec<BlobRequest>,
    wanted: Vec<(PatchSource, String)>,
    made_against: String,
}

impl AtDestination {
    /// What `bundle` (called `name`) needs, pushed to `dest` (as `as_name`, if given).
    pub fn of(
        bundle: &Bundle,
        name: &str,
        dest: &str,
        as_name: Option<&str>,
    ) -> Result<AtDestination, DeltaPushError> {
        let mut requests = Vec::new();
        let mut wanted = Vec::new();
        let delta = bundle.delta.as_ref();
        for image in &bundle.images {
            let records: Vec<&PatchedLayer> = image
                .platforms
                .iter()
                .flat_map(|p| &p.layers)
                .filter(|l| l.place == Place::Patched)
                .filter_map(|l| delta?.patched.get(&l.path))
                .collect();
            if records.is_empty() {
                continue;
            }
            let repository = match (as_name, image.names.first()) {
                (Some(as_name), _) => target(dest, as_name, &image.label)?.0,
                (None, Some(first)) => target(dest, &repository_of(first)?, first)?.0,
                (None, None) => {
                    return Err(TarError::NoName {
                        image: format!("{} in {name}", image.label),
                    }
                    .into());
                }
            };
            for source in records.iter().flat_map(|r| &r.sources) {
                requests.push(BlobRequest::new(
                    repository.clone(),
                    Descriptor {
                        media_type: String::new(),
                        digest: source.digest.clone(),
                        size: source.size,
                        platform: None,
                        annotations: Default::default(),
                    },
                ));
                wanted.push((source.clone(), repository.full_name()));
            }
        }
        let made_against = match delta.map(|d| d.since.join(", ")) {
            Some(names) if !names.is_empty() => names,
            _ => "the bundle it was made against".to_string(),
        };
        Ok(AtDestination {
            requests,
            wanted,
            made_against,
        })
    }

    /// The sources, once `fetched` (by [`crate::fetch::Fetcher::fetch_all`]).
    pub fn sources(
        self,
        name: &str,
        fetched: Result<HashMap<Digest, StoredBlob>, crate::fetch::FetchError>,
    ) -> Result<Sources, DeltaPushError> {
        let fetched = fetched.map_err(|source| match &source.kind {
            // Not there: the one thing to say is which push comes first.
            crate::fetch::FetchErrorKind::Registry(crate::registry::RegistryError::NotFound {
                ..
            }) => DeltaPushError::BaseMissing {
                name: name.to_string(),
                made_against: self.made_against.clone(),
                repository: source.image.clone(),
                layer: source.digest.short(),
            },
            _ => DeltaPushError::NotAtDestination {
                name: name.to_string(),
                made_against: self.made_against.clone(),
                source: Box::new(source),
            },
        })?;
        let mut sources = Sources::default();
        for (source, from) in self.wanted {
            if let Some(blob) = fetched.get(&source.digest) {
                sources.fetched.push(Fetched {
                    diff_id: source.diff_id,
                    path: blob.path.clone(),
                    size: blob.size,
                    from,
                });
            }
        }
        Ok(sources)
    }
}

/// A patch delta to rebuild for a push.
pub struct ForPush<'a> {
    pub tar: &'a BundleFile,
    pub bundle: &'a Bundle,
    /// What messages call it.
    pub name: &'a str,
    pub sources: &'a Sources,
    /// Whether the sources are earlier bundles (`--from`), which may fill what it left out.
    pub from_bundles: bool,
    /// `--new-digests`: layers rebuilt by content are pushed, under new manifest digests.
    pub new_digests: bool,
}

impl ForPush<'_> {
    /// Rebuilt into `path`. Earlier bundles that also hold what the delta left out make it
    /// whole: then the destination need not hold those layers. Blocks.
    pub fn write_file(
        &self,
        path: &Path,
        said: &mut dyn FnMut(&RebuiltLayer),
    ) -> Result<(), DeltaPushError> {
        let name = self.name.to_string();
        crate::rebuild::check_sources(self.bundle, self.sources).map_err(|source| {
            DeltaPushError::Rebuild {
                name: name.clone(),
                source,
            }
        })?;
        let fill = self.from_bundles && check_left_out(self.bundle, self.sources).is_ok();
        let rebuild = RebuildJob {
            delta: self.bundle,
            file: self.tar,
            sources: self.sources,
            left_out: if fill {
                LeftOut::Fill(self.sources)
            } else {
                LeftOut::Keep
            },
            exact_only: !self.new_digests,
        };
        // A scratch file, pushed then removed: written plainly, not synced.
        let mut written = || -> Result<(), RebuildError> {
            let mut rebuilt = rebuild.layers(said)?;
            let output = path.display().to_string();
            let write_error = |source| RebuildError::Write {
                output: output.clone(),
                source,
            };
            let file = std::fs::File::create(path).map_err(write_error)?;
            let mut writer = TarWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
            rebuild.write(&mut rebuilt, &mut writer, &output)?;
            writer
                .into_inner()
                .into_inner()
                .map_err(|e| write_error(e.into_error()))?;
            Ok(())
        };
        written().map_err(|source| match source {
            RebuildError::NotExact { .. } => DeltaPushError::NotExact { name, source },
            source => DeltaPushError::Rebuild { name, source },
        })
    }
}

/// The rebuilt bundle at `path`, read and checked whole before it is pushed.
pub async fn read_rebuilt(
    path: PathBuf,
    name: &str,
) -> Result<(BundleFile, Bundle), DeltaPushError> {
    let tar = BundleFile::Tar(path);
    let bundle = tar.read().await.map_err(|source| DeltaPushError::Rebuild {
        name: name.to_string(),
        source: RebuildError::Read {
            name: tar.describe(),
            source,
        },
    })?;
    if let Some(problem) = bundle.problems.first() {
        return Err(DeltaPushError::NotWhole {
            name: name.to_string(),
            problem: problem.to_string(),
        });
    }
    Ok((tar, bundle))
}

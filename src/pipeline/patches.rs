//! `export --since PREV --patch`: each layer the delta would carry whole is tried as a patch
//! against the layer the site holds at the same place of the earlier image
//! ([`delta::patch_source`]), and travels as whichever is smaller. Both sides are worked on
//! uncompressed, from the cache: the new layer once downloaded, the earlier one as the
//! earlier export left it there or, when the cache no longer holds it (only a receipt was
//! kept), fetched by digest from the repositories of the images that hold it, verified as any
//! blob. A source that cannot be had is named with what to run, before anything is written,
//! and its layer travels whole. Each patch is stored in the cache (a derived blob) and checked against the recipe
//! that would rebuild the very blob (see [`crate::patch::recompress`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;

use super::*;
use crate::bundle::names::PatchSource;
use crate::decompress::decompress_layer;
use crate::export::{PatchOutcome, PatchedBlob, WholeBecause};
use crate::fetch::Downloads;
use crate::manifest::Compression;
use crate::patch::{encode, recompress};

impl Session {
    /// Makes the patches for the layers `job` carries whole, when the destination is earlier
    /// bundles. Waits for those layers' downloads (they are kept in `ready` for the writer).
    pub(super) async fn make_patches(
        &self,
        plan: &Plan,
        job: &mut TarJob,
        destination: &Destination,
        downloads: &mut Downloads,
        ready: &mut HashMap<Digest, StoredBlob>,
    ) -> Result<Vec<PatchOutcome>, PipelineError> {
        let Destination::Bundles(receipts) = destination else {
            return Ok(Vec::new());
        };
        let mut outcomes = Vec::new();
        let mut tried: BTreeMap<Digest, ()> = BTreeMap::new();
        // Repositories a source could not be fetched from (not a 404): asked once per run.
        let mut unreachable = BTreeMap::new();
        for image in &plan.images {
            for (i, descriptor) in image.layers.iter().enumerate() {
                let blob_digest = image.tar_blob(i).clone();
                if job.left_out.blobs.contains_key(&blob_digest)
                    || tried.insert(blob_digest.clone(), ()).is_some()
                {
                    continue;
                }
                let Some((source, earlier)) =
                    delta::patch_source(&image.reference, &image.diff_ids, i, receipts)
                else {
                    continue;
                };
                let blob = match ready.get(&descriptor.digest) {
                    Some(blob) => blob.clone(),
                    None => {
                        let blob = downloads
                            .wait(&descriptor.digest)
                            .await
                            .map_err(|e| PipelineError::Fetch(Box::new(e)))?;
                        ready.insert(descriptor.digest.clone(), blob.clone());
                        blob
                    }
                };
                if let Err(why) = self
                    .fetch_source(&source, earlier, &image.reference, &mut unreachable)
                    .await
                {
                    tracing::warn!(
                        "layer {} of {} travels whole ({}): {why}",
                        blob_digest.short(),
                        image.reference,
                        crate::progress::human_bytes(descriptor.size),
                    );
                    outcomes.push(PatchOutcome {
                        image: image.reference.to_string(),
                        layer: blob_digest.clone(),
                        blob_size: descriptor.size,
                        patch_size: None,
                        whole_because: Some(why),
                    });
                    continue;
                }
                let work = LayerWork {
                    store: self.store.clone(),
                    blob,
                    compression: Compression::of_layer(&descriptor.media_type),
                    diff_id: image.diff_ids[i].clone(),
                    source,
                };
                let made = crate::blocking::run(move || work.run()).await?;
                let mut outcome = PatchOutcome {
                    image: image.reference.to_string(),
                    layer: blob_digest.clone(),
                    blob_size: made.blob_size,
                    patch_size: None,
                    whole_because: None,
                };
                match made.patched {
                    Ok(patched) if patched.patch.size < made.blob_size => {
                        outcome.patch_size = Some(patched.patch.size);
                        job.patched.insert(blob_digest, patched);
                        // The site rebuilds it from that image: the delta relies on it.
                        job.left_out.since.extend(earlier.iter().cloned());
                    }
                    Ok(patched) => {
                        outcome.whole_because = Some(WholeBecause::PatchNoSmaller {
                            patch_size: patched.patch.size,
                        });
                    }
                    Err(why) => outcome.whole_because = Some(why),
                }
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }
}

impl Session {
    /// Makes sure the layer `source` (of the images `earlier` names) is in the cache: there
    /// already, or fetched by digest from those images' repositories, then from `image`'s.
    async fn fetch_source(
        &self,
        source: &PatchSource,
        earlier: &[String],
        image: &crate::reference::Reference,
        unreachable: &mut BTreeMap<String, String>,
    ) -> Result<(), WholeBecause> {
        if self.store.size_of(&source.diff_id).is_some()
            || self.store.contains(&source.digest, source.size)
        {
            return Ok(());
        }
        let pull = earlier.first().map_or_else(
            || "haul pull IMAGE (the image it was exported from)".to_string(),
            |name| format!("haul pull {name}"),
        );
        if self.offline {
            return Err(WholeBecause::SourceNotCached {
                against: source.digest.clone(),
                fetch: format!(
                    "--offline fetches nothing; run `{pull}` (or this export without --offline)"
                ),
            });
        }
        let mut repositories: Vec<crate::reference::Reference> = earlier
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        repositories.push(image.clone());
        let mut seen = std::collections::BTreeSet::new();
        repositories.retain(|r| seen.insert(r.full_name()));
        let mut failures = Vec::new();
        for reference in repositories {
            // A repository that could not be reached for an earlier layer is not retried.
            if let Some(why) = unreachable.get(&reference.full_name()) {
                failures.push(format!("{}: {why}", reference.full_name()));
                continue;
            }
            let request = crate::fetch::BlobRequest::new(
                reference.clone(),
                crate::manifest::Descriptor {
                    // A receipt names none; the blob is fetched as it is.
                    media_type: String::new(),
                    digest: source.digest.clone(),
                    size: source.size,
                    platform: None,
                    annotations: BTreeMap::new(),
                },
            );
            match self.fetcher.fetch(&request).await {
                Ok(_) => return Ok(()),
                Err(error) => {
                    let why = crate::error::describe(&error);
                    let not_there = matches!(
                        &error.kind,
                        crate::fetch::FetchErrorKind::Registry(
                            crate::registry::RegistryError::NotFound { .. }
                        )
                    );
                    if !not_there {
                        unreachable.insert(reference.full_name(), why.clone());
                    }
                    failures.push(format!("{}: {why}", reference.full_name()));
                }
            }
        }
        Err(WholeBecause::SourceNotCached {
            against: source.digest.clone(),
            fetch: format!(
                "nor could it be fetched ({}); run `{pull}` where that registry can be reached, \
                 then export again",
                failures.join("; ")
            ),
        })
    }
}

/// One layer's patch, made on a blocking thread.
struct LayerWork {
    store: BlobStore,
    /// The layer as the tar would hold it (compressed, or its uncompressed form).
    blob: StoredBlob,
    compression: Compression,
    diff_id: Digest,
    source: PatchSource,
}

struct LayerMade {
    blob_size: u64,
    /// The patch, or why there is none.
    patched: Result<PatchedBlob, WholeBecause>,
}

impl LayerWork {
    fn run(self) -> Result<LayerMade, PipelineError> {
        let blob_size = self.blob.size;
        let patched = self.patch()?;
        Ok(LayerMade { blob_size, patched })
    }

    fn patch(&self) -> Result<Result<PatchedBlob, WholeBecause>, PipelineError> {
        let store = &self.store;
        let Some(source_tar) = self.source_tar()? else {
            return Ok(Err(WholeBecause::SourceNotCached {
                against: self.source.digest.clone(),
                fetch: "it was just fetched, then removed (a cache prune?)".to_string(),
            }));
        };
        let new_tar = if self.blob.digest == self.diff_id {
            self.blob.path.clone()
        } else {
            decompress_layer(store, &self.blob.path, self.compression, &self.diff_id)
                .map_err(|e| patch_error(&self.blob.digest, e.to_string()))?
                .0
        };
        let open = |path: &PathBuf| -> Result<File, PipelineError> {
            File::open(path).map_err(|e| CacheError::io("cannot open", path)(e).into())
        };
        let mut new = open(&new_tar)?;
        let tar_size = new
            .metadata()
            .map_err(CacheError::io("cannot read", &new_tar))?
            .len();
        let mut sources = vec![encode::Source {
            diff_id: self.source.diff_id.clone(),
            tar: open(&source_tar)?,
        }];
        let scratch = store.path_of(crate::cache::Bucket::Ingest);
        std::fs::create_dir_all(&scratch).map_err(CacheError::io("cannot create", &scratch))?;
        let (digest, size) = store.put_derived(|out| {
            let mut out = out;
            encode::encode(&mut new, &self.diff_id, &mut sources, &mut out, &scratch).map(|_| ())
        })?;
        let recipe = recompress::find(&mut new, &mut open(&self.blob.path)?, &self.blob.digest)
            .map_err(|e| patch_error(&self.blob.digest, e.to_string()))?;
        Ok(Ok(PatchedBlob {
            patch: StoredBlob {
                path: store.blob_path(&digest),
                digest,
                size,
            },
            size: self.blob.size,
            diff_id: self.diff_id.clone(),
            tar_size,
            sources: vec![self.source.clone()],
            recompress: recipe,
        }))
    }

    /// The source layer's uncompressed tar in the cache: there already, or made from its blob
    /// there; none when neither is.
    fn source_tar(&self) -> Result<Option<PathBuf>, PipelineError> {
        let store = &self.store;
        let source = &self.source;
        if store.size_of(&source.diff_id).is_some() {
            return Ok(Some(store.blob_path(&source.diff_id)));
        }
        if !store.contains(&source.digest, source.size) {
            return Ok(None);
        }
        let path = store.blob_path(&source.digest);
        let compression = sniff(&path).map_err(CacheError::io("cannot read", &path))?;
        let (tar, _) = decompress_layer(store, &path, compression, &source.diff_id)
            .map_err(|e| patch_error(&source.digest, e.to_string()))?;
        Ok(Some(tar))
    }
}

/// A layer blob's compression, from its first bytes (a receipt does not name media types).
fn sniff(path: &std::path::Path) -> std::io::Result<Compression> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = File::open(path)?;
    let got = file.read(&mut magic)?;
    Ok(match &magic[..got] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::Uncompressed,
    })
}

fn patch_error(layer: &Digest, why: String) -> PipelineError {
    PipelineError::Patch {
        layer: layer.clone(),
        why,
    }
}

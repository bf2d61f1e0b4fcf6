//! What a pipeline step can fail with.

use super::*;

/// What a pipeline step can fail with; each wraps a message that names the image or file.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(
        "{} of the {total} images could not be used:{}",
        .failures.len(),
        crate::list::ImageFailure::lines(.failures)
    )]
    Images {
        total: usize,
        failures: Vec<ImageFailure>,
    },
    #[error(transparent)]
    Referrers(#[from] ReferrersError),
    #[error(
        "{reference} is an artifact ({artifact_type}), not a container image: {why}; \
         `--format oci` carries it as it is (and `haul push` puts it back), or copy it \
         between registries with `haul copy`"
    )]
    ArtifactNeedsOci {
        reference: String,
        artifact_type: String,
        why: &'static str,
    },
    #[error("cannot make the patch of layer {layer}: {why}; nothing was written")]
    Patch { layer: Digest, why: String },
    #[error("export to {output} failed; {outcome}")]
    Export {
        output: String,
        /// What is left of the tar.
        outcome: &'static str,
        #[source]
        source: ExportError,
    },
}

impl From<FetchError> for PipelineError {
    fn from(error: FetchError) -> Self {
        PipelineError::Fetch(Box::new(error))
    }
}

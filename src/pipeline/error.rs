//! What a pipeline step can fail with, and one image's failure in a run over many.

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
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(
        "{} of the {total} images could not be used:{}",
        .failures.len(),
        ImageFailure::lines(.failures)
    )]
    Images {
        total: usize,
        failures: Vec<ImageFailure>,
    },
    #[error(
        "{} not {what} by {signers}; stopped before writing anything:{}",
        if .failures.len() == 1 { "1 image is".to_string() } else { format!("{} images are", .failures.len()) },
        ImageFailure::lines(.failures)
    )]
    Unsigned {
        /// "signed", or "attested (<predicate type>)".
        what: String,
        signers: String,
        failures: Vec<ImageFailure>,
    },
    #[error(
        "--verify-key and --certificate-identity look the signatures up in the registry (they \
         are tags that move); they cannot be used with --offline"
    )]
    SignaturesOffline,
    #[error(
        "--referrers looks the signatures, attestations and SBOMs up in the registry; it cannot \
         be used with --offline"
    )]
    ReferrersOffline,
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

/// Why an image's signature check did not pass: an error to stop on, or a rejection to report.
pub(super) enum SignatureFailure {
    Error(PipelineError),
    Rejected(String),
}

/// One image of a list that failed, and why (its whole error, on one line).
#[derive(Debug)]
pub struct ImageFailure {
    pub reference: String,
    pub reason: String,
}

impl ImageFailure {
    /// Each failure on a line of its own, indented.
    fn lines(failures: &[ImageFailure]) -> String {
        failures
            .iter()
            .map(|f| format!("\n  {}: {}", f.reference, f.reason))
            .collect()
    }

    pub fn new(reference: &Reference, error: &PipelineError) -> ImageFailure {
        ImageFailure {
            reference: reference.to_string(),
            reason: crate::error::describe(error),
        }
    }
}

impl From<FetchError> for PipelineError {
    fn from(error: FetchError) -> Self {
        PipelineError::Fetch(Box::new(error))
    }
}

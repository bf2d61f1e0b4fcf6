//! Signature checks against a registry (`--verify-key` and the keyless options on export, pull
//! and copy): each image must carry a cosign signature (or the attestation asked for) that the
//! trust accepts, found where the registry keeps them ([`Lookup`]).

use futures::StreamExt;

use super::Trust;
use crate::digest::Digest;
use crate::fetch::BlobRequest;
use crate::list::ImageFailure;
use crate::referrers::{Lookup, ReferrersError};
use crate::resolve::ResolvedImage;

/// Why the images of a run did not pass their signature check.
#[derive(Debug, thiserror::Error)]
pub enum SignatureCheckError {
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
    Offline,
    #[error(transparent)]
    Lookup(#[from] ReferrersError),
}

/// Why an image's signature check did not pass: an error to stop on, or a rejection to report.
enum SignatureFailure {
    Error(SignatureCheckError),
    Rejected(String),
}

/// Checks that every image of `resolved` carries a cosign signature `trust` accepts
/// (on its own manifest, or on the index it was chosen from), fetched from its registry.
/// Every image without one is reported, with the reason.
pub async fn check_images(
    lookup: &Lookup<'_>,
    resolved: &[ResolvedImage],
    trust: &Trust,
) -> Result<(), SignatureCheckError> {
    if lookup.offline {
        return Err(SignatureCheckError::Offline);
    }
    let outcomes = futures::stream::iter(
        resolved
            .iter()
            .map(|image| async move { (image, signed(lookup, image, trust).await) }),
    )
    .buffered(crate::resolve::AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    let mut failures = Vec::new();
    for (image, outcome) in outcomes {
        match outcome {
            Ok(()) => {}
            Err(SignatureFailure::Error(error)) => return Err(error),
            Err(SignatureFailure::Rejected(reason)) => failures.push(ImageFailure {
                reference: format!("{} ({})", image.reference, image.manifest.digest),
                reason,
            }),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(SignatureCheckError::Unsigned {
        what: trust.what(),
        signers: trust.signers(),
        failures,
    })
}

/// Whether `image` carries a signature `trust` accepts, and if not, why: what refers to
/// its manifest and to its index, found where cosign puts it (tags, the referrers API,
/// the fallback tag), checked as a tar's attachments are.
async fn signed(
    lookup: &Lookup<'_>,
    image: &ResolvedImage,
    trust: &Trust,
) -> Result<(), SignatureFailure> {
    let mut digests = vec![&image.manifest.digest];
    digests.extend(image.index.as_ref().map(|i| &i.digest));
    let error = |e: ReferrersError| SignatureFailure::Error(e.into());
    let mut attachments = Vec::new();
    for digest in &digests {
        for (tag, top) in lookup
            .referrers_of(&image.reference, digest)
            .await
            .map_err(error)?
        {
            let attachment = lookup
                .attachment(&image.reference, (*digest).clone(), tag, top)
                .await
                .map_err(error)?;
            attachments.extend(attachment.into_referrers());
        }
    }
    let mut blobs: std::collections::HashMap<Digest, Vec<u8>> = Default::default();
    for descriptor in super::signature_blobs(&attachments, &digests) {
        let request = BlobRequest::new(image.reference.clone(), descriptor.clone());
        let bytes = lookup
            .fetcher
            .read_small(&request)
            .await
            .map_err(|e| SignatureFailure::Error(ReferrersError::from(e).into()))?;
        blobs.insert(descriptor.digest, bytes);
    }
    let read = |digest: &Digest| blobs.get(digest).cloned();
    super::check_attachments(trust, &digests, &attachments, &read).map_err(|reason| {
        SignatureFailure::Rejected(match reason {
            Some(rejection) => rejection.to_string(),
            None => format!(
                "it has no cosign signature (none under the tag {}, the OCI 1.1 \
                 fallback tag or the referrers API)",
                super::signature_tag(&image.manifest.digest)
            ),
        })
    })
}

//! A bundle's signatures, checked offline (`haul verify --key`, and keyless): every image it
//! holds must carry, among the attachments it carries (`--referrers`), a signature the trust
//! accepts.

use super::{Trust, check_attachments};
use crate::digest::Digest;

/// The classic layout holds no manifests, and signatures name manifest digests.
#[derive(Debug, thiserror::Error)]
#[error(
    "the tar holds no manifests (--format docker-v1, or docker save before Docker 25); \
     signatures name manifest digests: export the bundle with --format docker or oci"
)]
pub struct NoManifests;

/// Why a whole bundle (called `name`) did not pass its signature check.
#[derive(Debug, thiserror::Error)]
pub enum BundleSignatureError {
    #[error("{name}: {source}")]
    NoManifests {
        name: String,
        #[source]
        source: NoManifests,
    },
    #[error(
        "{name} is whole, but {} not {what} by {signers}:{}",
        if .unsigned.len() == 1 { "1 image in it is".to_string() } else { format!("{} images in it are", .unsigned.len()) },
        .unsigned.iter().map(|(image, why)| format!("\n  {image}: {why}")).collect::<String>()
    )]
    Unsigned {
        name: String,
        what: String,
        signers: String,
        /// Each image, and why.
        unsigned: Vec<(String, String)>,
    },
}

/// Refuses a bundle (called `name`) with an image that carries no signature `trust` accepts
/// (see [`check_bundle`]).
pub fn require_signed(
    bundle: &crate::bundle::Bundle,
    name: &str,
    trust: &Trust,
) -> Result<(), BundleSignatureError> {
    let unsigned =
        check_bundle(bundle, trust).map_err(|source| BundleSignatureError::NoManifests {
            name: name.to_string(),
            source,
        })?;
    if unsigned.is_empty() {
        return Ok(());
    }
    Err(BundleSignatureError::Unsigned {
        name: name.to_string(),
        what: trust.what(),
        signers: trust.signers(),
        unsigned,
    })
}

/// Checks, offline, that every image a bundle holds carries a signature by one of `keys`
/// among the attachments it carries (`--referrers`). Returns each image that does not, named,
/// with the reason; an error when the tar has no manifests to check (the classic layout).
pub fn check_bundle(
    bundle: &crate::bundle::Bundle,
    trust: &Trust,
) -> Result<Vec<(String, String)>, NoManifests> {
    if bundle.images.iter().all(|image| image.root.is_none()) {
        return Err(NoManifests);
    }
    let mut failures = Vec::new();
    for image in &bundle.images {
        let label = image
            .names
            .first()
            .cloned()
            .or_else(|| image.digest().map(ToString::to_string))
            .unwrap_or_else(|| image.label.clone());
        if image.root.is_none() {
            failures.push((label, NoManifests.to_string()));
            continue;
        }
        // The image's digest, and the index a platform was chosen from when the tar carries
        // it.
        let wanted = image.signed_digests();
        let read = |digest: &Digest| bundle.bytes_of(digest).map(<[u8]>::to_vec);
        if let Err(reason) = check_attachments(trust, &wanted, &bundle.attachments, &read) {
            failures.push((
                label,
                reason.map_or_else(
                    || {
                        if bundle.has_referrers_record() {
                            "the tar carries no cosign signature of it (is it signed?)".to_string()
                        } else {
                            "the tar carries no cosign signature of it (export it with \
                             --referrers)"
                                .to_string()
                        }
                    },
                    |r| r.to_string(),
                ),
            ));
        }
    }
    Ok(failures)
}

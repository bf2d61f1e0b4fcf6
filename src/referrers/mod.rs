//! Artifacts that refer to an image manifest (signatures, attestations, SBOMs), and how they
//! travel (`--referrers`).
//!
//! A registry lists them for a manifest digest through the OCI 1.1 referrers API, where it
//! offers it; otherwise through tags: cosign's `sha256-<hex>.sig`, `.att` and `.sbom`, and the
//! OCI 1.1 fallback tag `sha256-<hex>` (an index of the referrers). What refers to an
//! artifact (a signature of an SBOM) is followed too.
//!
//! In a tar they sit in `blobs/`; `haul-referrers.json` at the top level says which manifest
//! each is attached to and under which tag. The OCI layout also lists them in `index.json`
//! (named by their tag), where OCI tools look; the docker layouts do not, so that `docker
//! load` sees exactly the images it would without them.

pub mod lookup;

pub use crate::bundle::{AttachedManifest, Attachment};
use crate::digest::Digest;
pub use lookup::{Lookup, ReferrersError, chosen_from_signed_indexes};

/// How deep attachments of attachments are followed.
pub const MAX_DEPTH: usize = 3;

/// The tags under which artifacts attached to `digest` may be found: cosign's, then the OCI
/// 1.1 fallback index.
pub fn tags_for(digest: &Digest) -> Vec<String> {
    let base = format!("{}-{}", digest.algorithm(), digest.hex());
    vec![
        format!("{base}.sig"),
        format!("{base}.att"),
        format!("{base}.sbom"),
        base,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_cosign_and_the_oci_fallback() {
        let digest = Digest::of(b"m");
        let hex = digest.hex();
        assert_eq!(
            tags_for(&digest),
            vec![
                format!("sha256-{hex}.sig"),
                format!("sha256-{hex}.att"),
                format!("sha256-{hex}.sbom"),
                format!("sha256-{hex}"),
            ]
        );
    }
}

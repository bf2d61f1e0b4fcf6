//! Signature checks against a registry (`--verify-key` and the keyless options on export, pull
//! and copy): each image must carry a cosign signature (or the attestation asked for) that the
//! trust accepts, found where the registry keeps them.

use super::*;

impl Session {
    /// Checks that every image of `resolved` carries a cosign signature `trust` accepts
    /// (on its own manifest, or on the index it was chosen from), fetched from its registry.
    /// Every image without one is reported, with the reason.
    pub async fn check_signatures(
        &self,
        resolved: &[ResolvedImage],
        trust: &Trust,
    ) -> Result<(), PipelineError> {
        if self.offline {
            return Err(PipelineError::SignaturesOffline);
        }
        let outcomes = futures::stream::iter(
            resolved
                .iter()
                .map(|image| async move { (image, self.signed(image, trust).await) }),
        )
        .buffered(RESOLVE_AT_ONCE)
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
        Err(PipelineError::Unsigned {
            what: trust.what(),
            signers: trust.signers(),
            failures,
        })
    }

    /// Whether `image` carries a signature `trust` accepts, and if not, why: what refers to
    /// its manifest and to its index, found where cosign puts it (tags, the referrers API,
    /// the fallback tag), checked as a tar's attachments are.
    pub(super) async fn signed(
        &self,
        image: &ResolvedImage,
        trust: &Trust,
    ) -> Result<(), SignatureFailure> {
        let mut digests = vec![&image.manifest.digest];
        digests.extend(image.index.as_ref().map(|i| &i.digest));
        let error = |e: PipelineError| SignatureFailure::Error(e);
        let mut attachments = Vec::new();
        for digest in &digests {
            for (tag, top) in self
                .referrers_of(&image.reference, digest)
                .await
                .map_err(error)?
            {
                let attachment = self
                    .attachment(&image.reference, (*digest).clone(), tag, top)
                    .await
                    .map_err(error)?;
                attachments.extend(attachment.into_referrers());
            }
        }
        let mut blobs: std::collections::HashMap<Digest, Vec<u8>> = Default::default();
        for descriptor in signature::signature_blobs(&attachments, &digests) {
            let request = BlobRequest::new(image.reference.clone(), descriptor.clone());
            let bytes = self
                .fetcher
                .read_small(&request)
                .await
                .map_err(|e| SignatureFailure::Error(e.into()))?;
            blobs.insert(descriptor.digest, bytes);
        }
        let read = |digest: &Digest| blobs.get(digest).cloned();
        signature::check_attachments(trust, &digests, &attachments, &read).map_err(|reason| {
            SignatureFailure::Rejected(match reason {
                Some(rejection) => rejection.to_string(),
                None => format!(
                    "it has no cosign signature (none under the tag {}, the OCI 1.1 \
                     fallback tag or the referrers API)",
                    signature::signature_tag(&image.manifest.digest)
                ),
            })
        })
    }
}

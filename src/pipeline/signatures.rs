//! Signature checks against a registry (`--verify-key` on export, pull and copy): each image
//! must carry a cosign signature by one of the keys, found where the registry keeps them.

use super::*;

impl Session {
    /// Checks that every image of `resolved` carries a cosign signature by one of `keys`
    /// (on its own manifest, or on the index it was chosen from), fetched from its registry.
    /// Every image without one is reported, with the reason.
    pub async fn check_signatures(
        &self,
        resolved: &[ResolvedImage],
        keys: &[PublicKey],
    ) -> Result<(), PipelineError> {
        if self.offline {
            return Err(PipelineError::SignaturesOffline);
        }
        let outcomes = futures::stream::iter(
            resolved
                .iter()
                .map(|image| async move { (image, self.signed(image, keys).await) }),
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
            keys: keys
                .iter()
                .map(|k| k.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            failures,
        })
    }

    /// Whether `image` carries a signature by one of `keys`, and if not, why.
    pub(super) async fn signed(
        &self,
        image: &ResolvedImage,
        keys: &[PublicKey],
    ) -> Result<(), SignatureFailure> {
        let mut digests = vec![&image.manifest.digest];
        digests.extend(image.index.as_ref().map(|i| &i.digest));
        let mut reason = None;
        for digest in &digests {
            let tag = signature::signature_tag(digest);
            let fetched = match self
                .client
                .get_manifest_by(&image.reference, &Identifier::Tag(tag))
                .await
            {
                Ok(fetched) => fetched,
                Err(RegistryError::NotFound { .. }) => continue,
                Err(error) => return Err(SignatureFailure::Error(error.into())),
            };
            let layers = match signature::signature_layers(&fetched.bytes) {
                Ok(layers) => layers,
                Err(rejection) => {
                    reason = Some(rejection);
                    continue;
                }
            };
            for layer in layers {
                let Some(signed) = &layer.signature else {
                    continue;
                };
                let request = BlobRequest::new(
                    image.reference.clone(),
                    Descriptor {
                        media_type: signature::SIMPLE_SIGNING.to_string(),
                        digest: layer.payload.clone(),
                        size: layer.size,
                        platform: None,
                        annotations: Default::default(),
                    },
                );
                let payload = self
                    .fetcher
                    .read_small(&request)
                    .await
                    .map_err(|e| SignatureFailure::Error(e.into()))?;
                match signature::check(keys, &payload, signed, &digests) {
                    Ok(()) => return Ok(()),
                    Err(rejection) => reason = Some(rejection),
                }
            }
        }
        Err(SignatureFailure::Rejected(match reason {
            Some(rejection) => rejection.to_string(),
            None => format!(
                "it has no cosign signature (no tag {} in its repository)",
                signature::signature_tag(&image.manifest.digest)
            ),
        }))
    }
}

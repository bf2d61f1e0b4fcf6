//! What a push writes under a cosign tag the destination already uses (`sha256-<hex>.sig`,
//! `.att`, `.sbom`): never less than the destination holds. cosign, skopeo and oras add to
//! what they find, and so does haul: a `.sig` or `.att` manifest at the destination gains the
//! incoming layers it lacks, after its own (cosign appends a new signature as the last layer,
//! and its config lists one more diff_id and history entry); a layer with the same digest and
//! annotations is the same signature and is not added twice. An `.sbom` is one document: one
//! the destination holds is kept. (The OCI 1.1 fallback index is merged where it is written,
//! by [`Pusher::list_referrers`].)

use std::collections::BTreeMap;

use serde_json::Value;

use super::{MemoryBlob, Origin, PushBlob, PushError, PushImage, PushManifest, Pusher};
use crate::digest::Digest;
use crate::reference::{Identifier, Reference};
use crate::units::count;

/// The annotation cosign writes on every layer of a merged manifest, empty where the layer
/// carries no signature of its own (attestations).
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

impl Pusher {
    /// Puts `top` under cosign's `tag`, merged with what the destination holds there (see
    /// [`merge`]): nothing the destination has is dropped.
    pub(super) async fn put_cosign_tag(
        &self,
        image: &PushImage,
        tag: &str,
        top: &PushManifest,
        kind: CosignTag,
    ) -> Result<(), PushError> {
        let repository = &image.repository;
        let existing = self
            .client
            .get_pushed_manifest(repository, &Identifier::Tag(tag.to_string()))
            .await?;
        let Some(existing) = existing.filter(|e| e.digest != top.digest) else {
            return Ok(self
                .client
                .put_manifest(repository, tag, &top.media_type, &top.bytes)
                .await?);
        };
        let named = || format!("{}:{tag}", repository.full_name());
        if kind == CosignTag::Sbom {
            tracing::warn!(
                "{} holds another SBOM ({}); it is kept, not replaced by {}",
                named(),
                existing.digest,
                top.digest
            );
            return Ok(());
        }
        let held: crate::manifest::ImageManifest = serde_json::from_slice(&existing.bytes)
            .map_err(|e| PushError::Merge {
                tag: named(),
                detail: format!("its manifest is not an image manifest: {e}"),
            })?;
        let config = self
            .client
            .get_small_blob(repository, &held.config.digest, held.config.size)
            .await?;
        let merged =
            merge(&existing.bytes, &config, &top.bytes).map_err(|detail| PushError::Merge {
                tag: named(),
                detail: detail.to_string(),
            })?;
        let Some(merged) = merged else {
            // The destination holds every signature this push brings.
            return Ok(());
        };
        let config = bytes::Bytes::from(merged.config);
        let config_blob = PushBlob {
            digest: Digest::of(&config),
            size: config.len() as u64,
            origin: Origin::Memory(MemoryBlob(config)),
        };
        if !self
            .client
            .has_blob(repository, &config_blob.digest)
            .await?
        {
            self.upload(image, &config_blob).await?;
        }
        let media_type = held.media_type.as_deref().unwrap_or(&top.media_type);
        let digest = Digest::of(&merged.manifest);
        self.client
            .put_manifest(
                repository,
                &digest.to_string(),
                media_type,
                &merged.manifest,
            )
            .await?;
        self.client
            .put_manifest(repository, tag, media_type, &merged.manifest)
            .await?;
        tracing::info!(
            "{}: {} added to the {} the destination held",
            named(),
            count(merged.added, "layer"),
            count(held.layers.len(), "layer")
        );
        Ok(())
    }

    /// Lists the untagged artifacts of `images` under the OCI 1.1 fallback tag of their subject
    /// (`sha256-<hex>`, an index, merged with what it lists already), in each repository whose
    /// registry does not offer the referrers API.
    pub(super) async fn list_referrers(&self, images: &[PushImage]) -> Result<(), PushError> {
        let mut groups: BTreeMap<(String, Digest), (Reference, Vec<&PushManifest>)> =
            BTreeMap::new();
        for image in images {
            if let (Some(subject), Some(top)) = (&image.subject, image.manifests.last()) {
                groups
                    .entry((image.repository.full_name(), subject.clone()))
                    .or_insert_with(|| (image.repository.clone(), Vec::new()))
                    .1
                    .push(top);
            }
        }
        for ((_, subject), (repository, manifests)) in groups {
            if self
                .client
                .get_referrers(&repository, &subject)
                .await?
                .is_some()
            {
                continue;
            }
            let tag = format!("{}-{}", subject.algorithm(), subject.hex());
            let reference = repository.clone();
            let mut entries: Vec<serde_json::Value> = match self
                .client
                .get_pushed_manifest(&reference, &Identifier::Tag(tag.clone()))
                .await?
            {
                Some(existing) => serde_json::from_slice::<serde_json::Value>(&existing.bytes)
                    .ok()
                    .and_then(|v| v["manifests"].as_array().cloned())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            for manifest in manifests {
                if entries
                    .iter()
                    .any(|e| e["digest"] == manifest.digest.to_string())
                {
                    continue;
                }
                let artifact: serde_json::Value =
                    serde_json::from_slice(&manifest.bytes).unwrap_or_default();
                let mut entry = serde_json::json!({
                    "mediaType": manifest.media_type,
                    "digest": manifest.digest.to_string(),
                    "size": manifest.bytes.len(),
                });
                let artifact_type = artifact["artifactType"]
                    .as_str()
                    .or_else(|| artifact["config"]["mediaType"].as_str());
                if let Some(artifact_type) = artifact_type {
                    entry["artifactType"] = artifact_type.into();
                }
                if let Some(annotations) = artifact.get("annotations") {
                    entry["annotations"] = annotations.clone();
                }
                entries.push(entry);
            }
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::manifest::OCI_INDEX,
                "manifests": entries,
            }))
            .expect("the index serializes");
            self.client
                .put_manifest(&repository, &tag, crate::manifest::OCI_INDEX, &index)
                .await?;
        }
        Ok(())
    }
}

/// What cosign keeps under a tag of the form `sha256-<hex>.<suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CosignTag {
    /// `.sig`: one layer per signature.
    Signatures,
    /// `.att`: one layer per attestation.
    Attestations,
    /// `.sbom`: one SBOM.
    Sbom,
}

impl CosignTag {
    pub fn of(tag: &str) -> Option<CosignTag> {
        let (name, suffix) = tag.rsplit_once('.')?;
        let hex = name.strip_prefix("sha256-")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match suffix {
            "sig" => Some(CosignTag::Signatures),
            "att" => Some(CosignTag::Attestations),
            "sbom" => Some(CosignTag::Sbom),
            _ => None,
        }
    }
}

/// A manifest that holds the destination's layers and then the incoming ones it lacked, with
/// the config that lists them.
#[derive(Debug)]
pub struct Merged {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// Layers added to the destination's.
    pub added: usize,
}

/// Why two signature manifests could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("the destination's manifest is not JSON: {0}")]
    ManifestNotJson(serde_json::Error),
    #[error("the pushed manifest is not JSON: {0}")]
    IncomingNotJson(serde_json::Error),
    #[error("the destination's config is not JSON: {0}")]
    ConfigNotJson(serde_json::Error),
    #[error("the destination's manifest lists no layers")]
    NoLayers,
}

/// Merges `incoming` (a `.sig` or `.att` manifest) into `existing`, the destination's, whose
/// config is `existing_config`. `None` when the destination holds every incoming layer.
pub fn merge(
    existing: &[u8],
    existing_config: &[u8],
    incoming: &[u8],
) -> Result<Option<Merged>, MergeError> {
    let mut manifest: Value =
        serde_json::from_slice(existing).map_err(MergeError::ManifestNotJson)?;
    let incoming: Value = serde_json::from_slice(incoming).map_err(MergeError::IncomingNotJson)?;
    let mut config: Value =
        serde_json::from_slice(existing_config).map_err(MergeError::ConfigNotJson)?;
    let Some(layers) = manifest["layers"].as_array().cloned() else {
        return Err(MergeError::NoLayers);
    };
    let mut merged = layers.clone();
    let mut added = Vec::new();
    for layer in incoming["layers"].as_array().into_iter().flatten() {
        if !merged.iter().any(|held| same_layer(held, layer)) {
            merged.push(layer.clone());
            added.push(layer.clone());
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    // The config lists each layer as an (uncompressed) diff_id, with a history entry each.
    let diff_ids = &mut config["rootfs"]["diff_ids"];
    if !diff_ids.is_array() {
        *diff_ids = Value::Array(Vec::new());
    }
    let history_matches = config["history"]
        .as_array()
        .is_some_and(|h| h.len() == layers.len());
    for layer in &added {
        if let Some(ids) = config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(layer["digest"].clone());
        }
        if history_matches && let Some(history) = config["history"].as_array_mut() {
            history.push(serde_json::json!({"created": "0001-01-01T00:00:00Z"}));
        }
    }
    let config_bytes = serde_json::to_vec(&config).expect("JSON serializes");
    manifest["layers"] = Value::Array(merged);
    manifest["config"]["digest"] =
        Value::String(crate::digest::Digest::of(&config_bytes).to_string());
    manifest["config"]["size"] = Value::from(config_bytes.len());
    Ok(Some(Merged {
        manifest: serde_json::to_vec(&manifest).expect("JSON serializes"),
        config: config_bytes,
        added: added.len(),
    }))
}

/// The same signature or attestation: the same blob with the same annotations (an empty
/// signature annotation, as cosign writes on attestations it merged, counts as none).
fn same_layer(a: &Value, b: &Value) -> bool {
    let annotations = |layer: &Value| {
        let mut map = layer["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if map
            .get(SIGNATURE_ANNOTATION)
            .is_some_and(|v| v.as_str() == Some(""))
        {
            map.remove(SIGNATURE_ANNOTATION);
        }
        map
    };
    a["digest"] == b["digest"] && annotations(a) == annotations(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(digest: char, signature: &str) -> Value {
        json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": 237,
            "digest": format!("sha256:{}", digest.to_string().repeat(64)),
            "annotations": {SIGNATURE_ANNOTATION: signature},
        })
    }

    fn manifest(layers: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1,
                       "digest": format!("sha256:{}", "c".repeat(64))},
            "layers": layers,
        }))
        .unwrap()
    }

    fn config(layers: &[Value]) -> Vec<u8> {
        let ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let history: Vec<Value> = layers
            .iter()
            .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
            .collect();
        serde_json::to_vec(&json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z", "history": history, "os": "",
            "rootfs": {"type": "layers", "diff_ids": ids}, "config": {},
        }))
        .unwrap()
    }

    #[test]
    fn the_destination_keeps_its_layers_first_and_gains_the_new_ones_once() {
        let site = layer('a', "site-signature");
        let ours = layer('a', "our-signature");
        let existing = [site.clone()];
        let incoming = manifest(&[ours.clone(), site.clone()]);
        let merged = merge(&manifest(&existing), &config(&existing), &incoming)
            .unwrap()
            .expect("one layer to add");
        assert_eq!(merged.added, 1);
        let manifest: Value = serde_json::from_slice(&merged.manifest).unwrap();
        assert_eq!(manifest["layers"], json!([site, ours]));
        let config: Value = serde_json::from_slice(&merged.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(
            manifest["config"]["digest"],
            crate::digest::Digest::of(&merged.config).to_string()
        );
        assert_eq!(manifest["config"]["size"], merged.config.len());
    }

    #[test]
    fn nothing_to_add_is_nothing_to_write() {
        let held = [layer('a', "s1"), layer('b', "s2")];
        let incoming = manifest(&[layer('b', "s2")]);
        assert!(
            merge(&manifest(&held), &config(&held), &incoming)
                .unwrap()
                .is_none()
        );
        // cosign's empty signature annotation on merged attestations is no annotation.
        let mut bare = layer('d', "");
        bare["annotations"] = json!({"predicateType": "x"});
        let mut marked = bare.clone();
        marked["annotations"][SIGNATURE_ANNOTATION] = json!("");
        let held = [marked];
        assert!(
            merge(&manifest(&held), &config(&held), &manifest(&[bare]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn cosign_tags_are_recognised() {
        let hex = "0".repeat(64);
        assert_eq!(
            CosignTag::of(&format!("sha256-{hex}.sig")),
            Some(CosignTag::Signatures)
        );
        assert_eq!(
            CosignTag::of(&format!("sha256-{hex}.att")),
            Some(CosignTag::Attestations)
        );
        assert_eq!(
            CosignTag::of(&format!("sha256-{hex}.sbom")),
            Some(CosignTag::Sbom)
        );
        assert_eq!(CosignTag::of(&format!("sha256-{hex}")), None);
        assert_eq!(CosignTag::of("v1.sig"), None);
    }
}

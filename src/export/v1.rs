//! The classic layout `docker save` wrote before Docker 25 (v1.2): a folder per layer with
//! `layer.tar` (uncompressed), `json` and `VERSION`, the config as `<hex>.json`,
//! `manifest.json` and `repositories`. For engines and tools that know only this layout.
//!
//! A layer's folder name (its "v1 id") comes from real digests: the layer's chain ID (which
//! names the stack of layers up to it), its parent's id and, for the top layer, the config
//! digest. The same stack gets the same id in every export; two images that share base layers
//! share their folders.

use super::tar::Sink;
use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::docker::{Written, manifest_json, repositories_json};
use super::{BlobSource, Blobs, Entries, ExportError, ExportImage};
use crate::digest::Digest;

pub(super) fn write<W, S>(
    images: &[ExportImage],
    blobs: &mut Blobs<'_, S>,
    tar: &mut Entries<W>,
) -> Result<(), ExportError>
where
    W: Sink,
    S: BlobSource,
{
    let mut in_tar: HashSet<String> = HashSet::new();
    let mut written = Vec::new();
    for image in images {
        let config = blobs.get(&image.config.digest)?;
        let config_name = format!("{}.json", image.config.digest.hex());
        let config_json: Value = std::fs::read(&config.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| json!({}));
        if in_tar.insert(config_name.clone()) {
            tar.file(&config_name, &config)?;
        }

        let mut parent: Option<String> = None;
        let mut chain: Option<Digest> = None;
        let mut layers = Vec::with_capacity(image.layers.len());
        let mut stored = Vec::with_capacity(image.layers.len());
        for (position, (descriptor, diff_id)) in
            image.layers.iter().zip(&image.diff_ids).enumerate()
        {
            let chain_id = chain_id(chain.as_ref(), diff_id);
            let top = position + 1 == image.layers.len();
            let id = v1_id(
                &chain_id,
                parent.as_deref(),
                top.then_some(&image.config.digest),
            );
            let layer_path = format!("{id}/layer.tar");
            let mut held = blobs.left_out(image, position, &layer_path);
            if held.is_none()
                && let Some((layer, patch)) = blobs.patched(image, position, &layer_path)
            {
                // The patch goes where the OCI layouts keep blobs.
                if in_tar.insert("blobs/".to_string()) {
                    tar.dir("blobs/")?;
                    tar.dir("blobs/sha256/")?;
                }
                let path = crate::bundle::blob_path(&patch.digest);
                if in_tar.insert(path.clone()) {
                    tar.file(&path, &patch)?;
                }
                held = Some(layer);
            }
            let blob = match held.clone() {
                Some(held) => held,
                None => blobs.get(&descriptor.digest)?,
            };
            if in_tar.insert(id.clone()) {
                tar.dir(&format!("{id}/"))?;
                tar.bytes(&format!("{id}/VERSION"), b"1.0")?;
                let json = layer_json(&id, parent.as_deref(), &config_json, top);
                tar.bytes(&format!("{id}/json"), &json)?;
                // Left out of a delta (the destination has this chain already), or patched.
                if held.is_none() {
                    tar.file(&layer_path, &blob)?;
                }
            }
            stored.push(blob);
            layers.push(format!("{id}/layer.tar"));
            parent = Some(id);
            chain = Some(chain_id);
        }
        blobs.written(image, &stored);
        written.push(Written {
            reference: image.reference.clone(),
            // manifest.json entries are merged by image: the config names it here.
            manifest_digest: image.config.digest.clone(),
            manifest_size: 0,
            manifest_media_type: image.manifest_media_type.clone(),
            config: config_name,
            layers,
            top_layer_id: parent,
        });
    }
    tar.bytes(
        crate::bundle::names::MANIFEST_JSON,
        &manifest_json(&written),
    )?;
    tar.bytes(
        crate::bundle::names::REPOSITORIES,
        &repositories_json(&written),
    )?;
    Ok(())
}

/// The OCI chain ID: the first layer's diff_id, then `sha256(parent chain + " " + diff_id)`.
fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
    }
}

fn v1_id(chain_id: &Digest, parent: Option<&str>, config: Option<&Digest>) -> String {
    let key = format!(
        "layer_id={chain_id} parent={} config={}",
        parent.unwrap_or(""),
        config.map(Digest::to_string).unwrap_or_default()
    );
    Digest::of(key.as_bytes()).hex().to_string()
}

/// A layer's `json`: its id and parent; the top layer also carries the image config (less
/// `rootfs` and `history`), as docker wrote it.
fn layer_json(id: &str, parent: Option<&str>, config: &Value, top: bool) -> Vec<u8> {
    let mut object = Map::new();
    if top && let Some(config) = config.as_object() {
        for (key, value) in config {
            if key != "rootfs" && key != "history" {
                object.insert(key.clone(), value.clone());
            }
        }
    } else {
        let created = config
            .get("created")
            .cloned()
            .unwrap_or_else(|| json!("1970-01-01T00:00:00Z"));
        object.insert("created".into(), created);
        if let Some(os) = config.get("os") {
            object.insert("os".into(), os.clone());
        }
    }
    object.insert("id".into(), json!(id));
    if let Some(parent) = parent {
        object.insert("parent".into(), json!(parent));
    }
    serde_json::to_vec(&Value::Object(object)).expect("a layer json serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_layer_stack() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let config = Digest::of(b"config");
        let chain_a = chain_id(None, &a);
        assert_eq!(chain_a, a);
        let chain_ab = chain_id(Some(&chain_a), &b);
        assert_eq!(chain_ab, Digest::of(format!("{a} {b}").as_bytes()));
        // The same layer on a different stack is another folder; the same stack is the same.
        let base = v1_id(&chain_a, None, None);
        assert_eq!(base, v1_id(&chain_a, None, None));
        assert_ne!(base, v1_id(&chain_a, None, Some(&config)));
        assert_ne!(
            v1_id(&chain_ab, Some(&base), None),
            v1_id(&chain_id(None, &b), None, None)
        );
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn the_top_layer_json_carries_the_config() {
        let config = json!({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []});
        let top: Value =
            serde_json::from_slice(&layer_json("id2", Some("id1"), &config, true)).unwrap();
        assert_eq!(top["config"]["Cmd"][0], "sh");
        assert_eq!(top["parent"], "id1");
        assert!(top.get("rootfs").is_none());
        let lower: Value =
            serde_json::from_slice(&layer_json("id1", None, &config, false)).unwrap();
        assert_eq!(lower["created"], "2024-01-01T00:00:00Z");
        assert!(lower.get("parent").is_none());
        assert!(lower.get("config").is_none());
    }
}

//! Manifests, indexes and image configs: media types, parsing and platform selection.
//! No I/O: bytes in, typed values out. Every digest in a descriptor is validated on parse
//! (see `digest`), so nothing from a registry reaches a path unchecked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The Accept header for manifest requests: every kind haul reads, images and indexes.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest or config haul will read (the distribution spec's own limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A pointer to a blob or manifest: what it is, its digest and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// Go writes an empty slice or map as `null` (`docker save` writes `"manifests": null` for
/// an image saved by its ID, and `"RepoTags": null`): read it as empty, as Go does.
pub fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    /// Set on OCI 1.1 artifacts (`oras push --artifact-type`).
    #[serde(default)]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    /// The layers exactly as listed: duplicates and empty layers stay. Never filtered.
    #[serde(deserialize_with = "null_as_empty")]
    pub layers: Vec<Descriptor>,
}

/// A Docker manifest list or OCI index.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest request returned.
#[derive(Clone, Debug)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Index),
}

/// The parts of an image config haul checks and names files by.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
    /// Set when the manifest is an artifact (a Helm chart, a WASM module, `oras push`), not a
    /// container image: what kind (its `artifactType`, else its config's media type).
    #[serde(skip)]
    pub artifact_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RootFs {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "{reference} is a Docker schema 1 manifest, which haul does not support (it was retired in 2019); \
         push the image again with a current docker or buildx to get a schema 2 or OCI manifest"
    )]
    Schema1 { reference: String },
    #[error("the manifest of {reference} has an unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error("the manifest of {reference} is not valid JSON of its kind")]
    Malformed {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the config of {reference} ({digest}) is not a valid image config")]
    MalformedConfig {
        reference: String,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "no matching platform {wanted} in {reference}; it has: {available}. \
         Choose one with --platform"
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: Platform,
        available: String,
    },
    #[error("the index of {reference} points at another index; nested indexes are not supported")]
    NestedIndex { reference: String },
    #[error(
        "the image {reference} lists {layers} layers but its config lists {diff_ids} diff_ids; \
         the image is broken in the registry and no loader would accept it"
    )]
    LayerCountMismatch {
        reference: String,
        layers: usize,
        diff_ids: usize,
    },
}

impl Manifest {
    /// Parses manifest bytes. The kind is taken from the document's own `mediaType`, else the
    /// response's Content-Type, else its shape (`manifests` vs `layers`).
    pub fn parse(
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            schema_version: Option<u32>,
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            layers: Option<serde_json::Value>,
        }
        let malformed = |source| ManifestError::Malformed {
            reference: reference.to_string(),
            source,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(malformed)?;
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
        let media_type = probe.media_type.as_deref().or(content_type);

        let is_schema1 = probe.schema_version == Some(1)
            || matches!(media_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED));
        if is_schema1 {
            return Err(ManifestError::Schema1 {
                reference: reference.to_string(),
            });
        }
        let is_index = match media_type {
            Some(DOCKER_MANIFEST_LIST | OCI_INDEX) => true,
            Some(DOCKER_MANIFEST | OCI_MANIFEST) => false,
            Some(other) => {
                return Err(ManifestError::UnsupportedMediaType {
                    reference: reference.to_string(),
                    media_type: other.to_string(),
                });
            }
            None => probe.manifests.is_some() && probe.layers.is_none(),
        };
        if is_index {
            Ok(Manifest::Index(
                serde_json::from_slice(bytes).map_err(malformed)?,
            ))
        } else {
            Ok(Manifest::Image(
                serde_json::from_slice(bytes).map_err(malformed)?,
            ))
        }
    }
}

impl Index {
    /// The entry for `wanted`, skipping attestation entries (`unknown/unknown`). When several
    /// match, the first wins, as in docker.
    pub fn select(&self, reference: &str, wanted: &Platform) -> Result<&Descriptor, ManifestError> {
        let found = self
            .manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
            .find(|d| {
                d.media_type.is_empty()
                    || is_image_manifest(&d.media_type)
                    || is_index(&d.media_type)
            });
        match found {
            Some(d) if is_index(&d.media_type) => Err(ManifestError::NestedIndex {
                reference: reference.to_string(),
            }),
            Some(d) => Ok(d),
            None => Err(ManifestError::NoMatchingPlatform {
                reference: reference.to_string(),
                wanted: wanted.clone(),
                available: self.platforms_listing(),
            }),
        }
    }

    /// Every image entry with a real platform, in order: what `--all-platforms` takes
    /// (attestation entries, `unknown/unknown`, are not images to run).
    pub fn images(&self) -> Vec<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| p.os != "unknown"))
            .filter(|d| d.media_type.is_empty() || is_image_manifest(&d.media_type))
            .collect()
    }

    /// The platforms the index offers, for messages: `linux/amd64, linux/arm64/v8`.
    pub fn platforms_listing(&self) -> String {
        let names: Vec<String> = self
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(std::string::ToString::to_string)
            .collect();
        if names.is_empty() {
            "no platforms".to_string()
        } else {
            names.join(", ")
        }
    }
}

impl ImageManifest {
    /// What kind of artifact it is, when it is not a container image: its `artifactType`,
    /// else its config's media type when that is not an image config's.
    pub fn artifact_type(&self) -> Option<String> {
        if is_image_config(&self.config.media_type) {
            return None;
        }
        Some(
            self.artifact_type
                .clone()
                .unwrap_or_else(|| self.config.media_type.clone()),
        )
    }
}

impl ImageConfig {
    /// The stand-in config of an artifact: no platform, and its layers' digests where an
    /// image lists diff_ids (an artifact's layers are not filesystem changes), so that
    /// every layer still pairs with one entry.
    pub fn of_artifact(manifest: &ImageManifest, artifact_type: String) -> ImageConfig {
        ImageConfig {
            architecture: String::new(),
            os: String::new(),
            variant: None,
            rootfs: RootFs {
                diff_ids: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            },
            artifact_type: Some(artifact_type),
        }
    }

    pub fn parse(
        reference: &str,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::MalformedConfig {
            reference: reference.to_string(),
            digest: digest.clone(),
            source,
        })
    }

    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    /// Loaders pair layers with diff_ids one to one; a mismatch would fail at load time.
    pub fn check_layer_count(&self, reference: &str, layers: usize) -> Result<(), ManifestError> {
        if self.rootfs.diff_ids.len() != layers {
            return Err(ManifestError::LayerCountMismatch {
                reference: reference.to_string(),
                layers,
                diff_ids: self.rootfs.diff_ids.len(),
            });
        }
        Ok(())
    }
}

/// How a layer blob is compressed, as its media type says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    Uncompressed,
    /// A media type that names no layer format haul knows (or none at all).
    Unknown,
}

impl Compression {
    /// From a layer's media type: OCI's `…tar`, `…tar+gzip`, `…tar+zstd` (non-distributable
    /// ones too) and Docker's `…diff.tar.gzip` (foreign ones too).
    pub fn of_layer(media_type: &str) -> Compression {
        if media_type.ends_with("tar+gzip") || media_type.ends_with("tar.gzip") {
            Compression::Gzip
        } else if media_type.ends_with("tar+zstd") || media_type.ends_with("tar.zstd") {
            Compression::Zstd
        } else if media_type.ends_with(".tar") {
            Compression::Uncompressed
        } else {
            Compression::Unknown
        }
    }

    /// The media type of the uncompressed form of a layer in a manifest of `manifest_type`.
    pub fn uncompressed_media_type(manifest_type: &str) -> &'static str {
        if manifest_type == DOCKER_MANIFEST {
            DOCKER_LAYER_TAR
        } else {
            OCI_LAYER_TAR
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
            Compression::Unknown => "unknown",
        }
    }
}

pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, DOCKER_MANIFEST_LIST | OCI_INDEX)
}

pub fn is_image_manifest(media_type: &str) -> bool {
    matches!(media_type, DOCKER_MANIFEST | OCI_MANIFEST)
}

/// Whether a config of `media_type` is a container image's (not an artifact's).
pub fn is_image_config(media_type: &str) -> bool {
    matches!(media_type, DOCKER_CONFIG | OCI_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn index() -> Index {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        );
        match Manifest::parse("x", None, json.as_bytes()).unwrap() {
            Manifest::Index(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn selects_platform_with_variant() {
        let i = index();
        let pick = |p: &str| {
            i.select("x", &p.parse().unwrap())
                .map(|d| d.digest.to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), D1);
        assert_eq!(pick("linux/arm64").unwrap(), D2);
        assert_eq!(pick("linux/arm64/v8").unwrap(), D2);
        assert_eq!(pick("linux/arm/v7").unwrap(), D3);
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("no matching platform linux/s390x"), "{err}");
        assert!(
            err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
            "{err}"
        );
        assert!(!err.contains("unknown"), "{err}");
    }

    #[test]
    fn kind_from_media_type_content_type_or_shape() {
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":2}},"layers":[
            {{"mediaType":"x","digest":"{D2}","size":3}},{{"mediaType":"x","digest":"{D2}","size":3}}]}}"#
        );
        match Manifest::parse("x", Some(OCI_MANIFEST), image.as_bytes()).unwrap() {
            Manifest::Image(m) => assert_eq!(m.layers.len(), 2, "duplicates are kept"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Manifest::parse("x", None, image.as_bytes()),
            Ok(Manifest::Image(_))
        ));
        let err = Manifest::parse("x", None, br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let err = Manifest::parse("x", Some("application/vnd.foo"), image.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unsupported media type"), "{err}");
    }

    #[test]
    fn hostile_descriptors_are_rejected() {
        for bad in [
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","size":1},"layers":[]}"#
                .to_string(),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":-1}},"layers":[]}}"#),
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[]}}"#,
                D1.to_uppercase()
            ),
        ] {
            assert!(
                Manifest::parse("x", Some(OCI_MANIFEST), bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn layer_compression_from_media_type() {
        for (media_type, expected) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                Compression::Uncompressed,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::Uncompressed,
            ),
            ("application/vnd.in-toto+json", Compression::Unknown),
            ("", Compression::Unknown),
        ] {
            assert_eq!(Compression::of_layer(media_type), expected, "{media_type}");
        }
        assert_eq!(
            serde_json::to_string(&Compression::Uncompressed).unwrap(),
            "\"uncompressed\""
        );
    }

    #[test]
    fn config_layer_count_must_match() {
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{D1}"]}}}}"#
        );
        let cfg = ImageConfig::parse("x", &D1.parse().unwrap(), cfg.as_bytes()).unwrap();
        assert!(cfg.check_layer_count("x", 1).is_ok());
        assert!(cfg.check_layer_count("x", 2).is_err());
        assert_eq!(cfg.platform().to_string(), "linux/amd64");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "(sha256:[0-9a-f]{0,64}|application/vnd[.a-z0-9+]{0,40}|linux|amd64|arm|v7|[a-z]{0,8})"
                .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    "(schemaVersion|mediaType|manifests|layers|config|digest|size|platform|os|architecture|variant|rootfs|diff_ids)",
                    inner,
                    0..8
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// No document makes the manifest, index or config parsers (or platform selection) panic.
        #[test]
        fn parsers_never_panic(value in json_value(), content_type in "(application/vnd\\.oci\\.image\\.index\\.v1\\+json|application/json|)") {
            let bytes = serde_json::to_vec(&value).unwrap();
            let content_type = Some(content_type.as_str()).filter(|c| !c.is_empty());
            if let Ok(Manifest::Index(index)) = Manifest::parse("x", content_type, &bytes) {
                let _ = index.select("x", &Platform::host());
                let _ = index.platforms_listing();
            }
            let digest = crate::digest::Digest::of(&bytes);
            if let Ok(config) = ImageConfig::parse("x", &digest, &bytes) {
                let _ = config.platform();
                let _ = config.check_layer_count("x", 3);
            }
        }

        /// Arbitrary bytes, not even JSON.
        #[test]
        fn bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse("x", None, &bytes);
        }
    }
}

//! Test images built from real tar layers (gzip or zstd, correct diff_ids) with Docker or
//! OCI manifests. No I/O but reading the host's static busybox.

#![allow(dead_code)]

use std::io::Write;

use sha2::{Digest as _, Sha256};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

pub fn require_tool(path: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: run `make test`, which installs what the tests need"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// `size` bytes that do not compress, the same for the same seed.
pub fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(size + 8);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}

/// A layer: its uncompressed tar's digest (diff_id) and the compressed blob.
#[derive(Clone, Debug)]
pub struct Layer {
    pub diff_id: String,
    pub compressed: Vec<u8>,
    pub digest: String,
    pub compression: Compression,
}

/// An entry of a layer tar.
pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

impl Layer {
    pub fn from_tar(tar: &[u8], compression: Compression) -> Layer {
        let compressed = match compression {
            Compression::Gzip => {
                let mut encoder =
                    // Level 2: zlib-rs's level 1 never falls back to stored blocks, so
                    // incompressible layers (the tests' sized ones) would grow by 5%.
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(2));
                encoder.write_all(tar).unwrap();
                encoder.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
        };
        Layer {
            diff_id: sha256(tar),
            digest: sha256(&compressed),
            compressed,
            compression,
        }
    }

    pub fn from_entries(entries: &[Entry], compression: Compression) -> Layer {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::File(path, data, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append_data(&mut header, path, *data).unwrap();
                }
                Entry::Dir(path) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    header.set_cksum();
                    builder
                        .append_data(&mut header, path, std::io::empty())
                        .unwrap();
                }
                Entry::Symlink(path, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
            }
        }
        Layer::from_tar(&builder.into_inner().unwrap(), compression)
    }

    /// A runnable base: the host's static busybox and a few applet links.
    pub fn busybox(compression: Compression) -> Layer {
        require_tool("/bin/busybox");
        let busybox = std::fs::read("/bin/busybox").unwrap();
        Layer::from_entries(
            &[
                Entry::Dir("bin/"),
                Entry::File("bin/busybox", &busybox, 0o755),
                Entry::Symlink("bin/sh", "busybox"),
                Entry::Symlink("bin/cat", "busybox"),
                Entry::Symlink("bin/echo", "busybox"),
                Entry::Symlink("bin/ls", "busybox"),
                Entry::Dir("etc/"),
            ],
            compression,
        )
    }

    /// A layer holding one small text file.
    pub fn text(path: &str, contents: &str, compression: Compression) -> Layer {
        Layer::from_entries(
            &[Entry::File(path, contents.as_bytes(), 0o644)],
            compression,
        )
    }

    /// An empty layer: a tar of only the end-of-archive blocks.
    pub fn empty(compression: Compression) -> Layer {
        Layer::from_tar(&[0u8; 1024], compression)
    }

    /// A layer with `size` bytes of incompressible data (for resume and rate tests).
    pub fn random(path: &str, size: usize, seed: u64) -> Layer {
        Layer::from_entries(
            &[Entry::File(path, &noise(size, seed), 0o644)],
            Compression::Gzip,
        )
    }

    pub fn media_type(&self, oci: bool) -> &'static str {
        match (oci, self.compression) {
            (false, Compression::Gzip) => DOCKER_LAYER_GZIP,
            // Docker's schema 2 has no zstd layer type; zstd images are OCI images.
            (false, Compression::Zstd) => panic!("a Docker schema 2 image cannot have zstd layers"),
            (true, Compression::Gzip) => OCI_LAYER_GZIP,
            (true, Compression::Zstd) => OCI_LAYER_ZSTD,
        }
    }
}

/// An image: config bytes, layers (possibly repeated), and the manifest format.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Layer>,
    pub oci: bool,
}

impl Image {
    /// An image for `arch` (and `variant`) whose command prints `message`.
    pub fn new(
        layers: Vec<Layer>,
        oci: bool,
        arch: &str,
        variant: Option<&str>,
        message: &str,
    ) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<serde_json::Value> = layers
            .iter()
            .map(|_| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": "haul test"}))
            .collect();
        let mut config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Cmd": ["/bin/busybox", "echo", message],
                "Env": ["PATH=/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(variant) = variant {
            config["variant"] = serde_json::json!(variant);
        }
        Image {
            config: serde_json::to_vec(&config).unwrap(),
            layers,
            oci,
        }
    }

    /// A runnable linux/amd64 image: busybox plus `extra` layers.
    pub fn runnable(
        message: &str,
        extra: Vec<Layer>,
        compression: Compression,
        oci: bool,
    ) -> Image {
        let mut layers = vec![Layer::busybox(compression)];
        layers.extend(extra);
        Image::new(layers, oci, "amd64", None, message)
    }

    pub fn manifest_media_type(&self) -> &'static str {
        if self.oci {
            OCI_MANIFEST
        } else {
            DOCKER_MANIFEST
        }
    }

    pub fn manifest(&self) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": l.media_type(self.oci),
                    "digest": l.digest,
                    "size": l.compressed.len(),
                })
            })
            .collect();
        let config_type = if self.oci { OCI_CONFIG } else { DOCKER_CONFIG };
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": self.manifest_media_type(),
            "config": {"mediaType": config_type, "digest": sha256(&self.config), "size": self.config.len()},
            "layers": layers,
        }))
        .unwrap()
    }
}

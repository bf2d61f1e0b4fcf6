//! What `haul inspect` reports: what images are, without downloading their layers. Per
//! reference: the manifest it names; for an index, the platforms on offer and the one chosen;
//! the image's config and layers, and which of those blobs the cache holds (so what an export
//! would download). [`crate::pipeline::Session::inspect`] makes the reports; [`render`] is
//! their text form, serde's their JSON form.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::bundle::summary::{ReferrerSummary, referrers_of};
use crate::digest::Digest;
use crate::manifest::{
    Compression, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, ImageConfig, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::progress::human_bytes;
use crate::resolve::ResolvedImage;

/// One reference, as `--json` prints it. The field names are documented in the README:
/// keep them stable.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The reference as haul reads it (registry, repository, tag and/or digest).
    reference: String,
    /// The digest of what the reference names: the index for a multi-platform image.
    digest: Digest,
    media_type: String,
    /// The index's entries, or null when the reference names a single image.
    platforms: Option<Vec<PlatformEntry>>,
    /// The image an export would write.
    image: ImageSummary,
    /// What refers to the image or its index (signatures, attestations, SBOMs, and what
    /// refers to those): empty with --offline, where the registry cannot be asked.
    referrers: Vec<ReferrerSummary>,
}

/// One entry of an index.
#[derive(Debug, Serialize)]
struct PlatformEntry {
    /// `os/arch[/variant]` as the index lists it (`unknown/unknown` for attestations); null
    /// when the entry has none.
    platform: Option<String>,
    digest: Digest,
    size: u64,
    /// The entry `--platform` (default: this machine's) chose.
    selected: bool,
}

#[derive(Debug, Serialize)]
struct ImageSummary {
    /// The image manifest's digest (the same as the top-level one for a single image).
    digest: Digest,
    media_type: String,
    /// `os/arch[/variant]`.
    platform: String,
    config: Blob,
    /// In manifest order, duplicates included, as the tar holds them.
    layers: Vec<Layer>,
    /// Bytes of the config and layers, each distinct blob counted once.
    size: u64,
    /// Of those, the bytes already in the cache.
    cached_size: u64,
    /// `size - cached_size`: what an export would download.
    download_size: u64,
}

#[derive(Debug, Serialize)]
struct Blob {
    digest: Digest,
    size: u64,
    cached: bool,
}

#[derive(Debug, Serialize)]
struct Layer {
    digest: Digest,
    media_type: String,
    compression: Compression,
    /// Compressed size: the bytes downloaded and written to the tar.
    size: u64,
    cached: bool,
}

impl Inspection {
    /// `cached` tells whether a blob is in the cache.
    /// Adds what, of `attachments`, refers to this image (its manifest or index), and what
    /// refers to those in turn.
    pub fn with_referrers(mut self, attachments: &[crate::bundle::Attachment]) -> Inspection {
        self.referrers = referrers_of(&[&self.digest, &self.image.digest], attachments);
        self
    }

    pub fn new(
        image: &ResolvedImage,
        config: &ImageConfig,
        cached: impl Fn(&Descriptor) -> bool,
    ) -> Inspection {
        let (digest, media_type, platforms) = match (&image.index, &image.parsed_index) {
            (Some(fetched), Some(index)) => {
                let media_type = index
                    .media_type
                    .clone()
                    .or_else(|| media_type_header(fetched.content_type.as_deref()))
                    .unwrap_or_else(|| OCI_INDEX.to_string());
                // resolve took the first entry for the platform, as this does.
                let selected = index.manifests.iter().position(|entry| {
                    entry.digest == image.manifest.digest
                        && entry
                            .platform
                            .as_ref()
                            .map(super::platform::Platform::normalized)
                            == image.platform_from_index
                });
                let entries = index
                    .manifests
                    .iter()
                    .enumerate()
                    .map(|(position, entry)| PlatformEntry {
                        platform: entry.platform.as_ref().map(ToString::to_string),
                        digest: entry.digest.clone(),
                        size: entry.size,
                        selected: Some(position) == selected,
                    })
                    .collect();
                (fetched.digest.clone(), media_type, Some(entries))
            }
            _ => (
                image.manifest.digest.clone(),
                image.media_type.clone(),
                None,
            ),
        };

        let mut seen = HashSet::new();
        let (mut size, mut cached_size) = (0, 0);
        for blob in std::iter::once(&image.image.config).chain(&image.image.layers) {
            if seen.insert(&blob.digest) {
                size += blob.size;
                if cached(blob) {
                    cached_size += blob.size;
                }
            }
        }
        let platform = image
            .platform_from_index
            .clone()
            .unwrap_or_else(|| config.platform());
        Inspection {
            reference: image.reference.to_string(),
            digest,
            media_type,
            platforms,
            referrers: Vec::new(),
            image: ImageSummary {
                digest: image.manifest.digest.clone(),
                media_type: image.media_type.clone(),
                platform: platform.to_string(),
                config: Blob {
                    digest: image.image.config.digest.clone(),
                    size: image.image.config.size,
                    cached: cached(&image.image.config),
                },
                layers: image
                    .image
                    .layers
                    .iter()
                    .map(|layer| Layer {
                        digest: layer.digest.clone(),
                        media_type: layer.media_type.clone(),
                        compression: Compression::of_layer(&layer.media_type),
                        size: layer.size,
                        cached: cached(layer),
                    })
                    .collect(),
                size,
                cached_size,
                download_size: size - cached_size,
            },
        }
    }
}

/// A Content-Type naming an index, without parameters.
fn media_type_header(content_type: Option<&str>) -> Option<String> {
    let media_type = content_type?.split(';').next()?.trim();
    matches!(media_type, DOCKER_MANIFEST_LIST | OCI_INDEX).then(|| media_type.to_string())
}

/// Short names for the manifest kinds haul reads.
fn kind(media_type: &str) -> &str {
    match media_type {
        DOCKER_MANIFEST_LIST => "Docker manifest list",
        OCI_INDEX => "OCI index",
        DOCKER_MANIFEST => "Docker manifest",
        OCI_MANIFEST => "OCI manifest",
        other => other,
    }
}

/// The human form: per reference, labelled lines and two aligned tables.
pub fn render(inspections: &[Inspection]) -> String {
    let mut out = String::new();
    for (n, inspection) in inspections.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let image = &inspection.image;
        let _ = writeln!(out, "{}", inspection.reference);
        if let Some(platforms) = &inspection.platforms {
            labelled(
                &mut out,
                "index",
                &format!("{}  {}", inspection.digest, kind(&inspection.media_type)),
            );
            let mut rows = vec![cells(["PLATFORM", "MANIFEST", "SIZE", ""])];
            rows.extend(platforms.iter().map(|entry| {
                cells([
                    entry.platform.as_deref().unwrap_or("-"),
                    &entry.digest.short(),
                    &human_bytes(entry.size),
                    if entry.selected { "selected" } else { "" },
                ])
            }));
            indented(&mut out, &table(&rows, &[false, false, true, false]));
        }
        labelled(
            &mut out,
            "manifest",
            &format!(
                "{}  {}, {}",
                image.digest,
                kind(&image.media_type),
                image.platform
            ),
        );
        let config_state = if image.config.cached {
            "cached"
        } else {
            "not cached"
        };
        labelled(
            &mut out,
            "config",
            &format!(
                "{}  {}  {config_state}",
                image.config.digest.short(),
                human_bytes(image.config.size)
            ),
        );
        let mut rows = vec![cells(["#", "LAYER", "COMPRESSION", "SIZE", "CACHED"])];
        rows.extend(image.layers.iter().enumerate().map(|(n, layer)| {
            cells([
                &(n + 1).to_string(),
                &layer.digest.short(),
                layer.compression.name(),
                &human_bytes(layer.size),
                if layer.cached { "yes" } else { "no" },
            ])
        }));
        indented(&mut out, &table(&rows, &[true, false, false, true, false]));
        labelled(
            &mut out,
            "total",
            &format!(
                "{}: {} cached, {} to download",
                human_bytes(image.size),
                human_bytes(image.cached_size),
                human_bytes(image.download_size)
            ),
        );
        if !inspection.referrers.is_empty() {
            labelled(
                &mut out,
                "referrers",
                &format!("{} refer to this image", inspection.referrers.len()),
            );
            let mut rows = vec![cells(["KIND", "DIGEST", "SIZE", "REFERS TO"])];
            rows.extend(inspection.referrers.iter().map(|r| {
                cells([
                    &r.kind,
                    &r.digest.short(),
                    &human_bytes(r.size),
                    &r.subject.short(),
                ])
            }));
            indented(&mut out, &table(&rows, &[false, false, true, false]));
        }
    }
    out
}

/// `  label     value`: the value starts in the tables' column.
fn labelled(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<9} {value}");
}

fn indented(out: &mut String, rows: &[String]) {
    for row in rows {
        let _ = writeln!(out, "{:12}{row}", "");
    }
}

fn cells<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(std::string::ToString::to_string).collect()
}

/// Rows with their columns padded to a common width (two spaces apart), right-aligned where
/// `right` says; trailing blanks are trimmed.
fn table(rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let padded: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if right.get(c).copied().unwrap_or(false) {
                        format!("{cell:>width$}", width = widths[c])
                    } else {
                        format!("{cell:<width$}", width = widths[c])
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::platform::Platform;
    use crate::registry::FetchedManifest;

    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    fn fetched(json: &str) -> FetchedManifest {
        FetchedManifest {
            bytes: json.as_bytes().to_vec(),
            content_type: None,
            digest: Digest::of(json.as_bytes()),
        }
    }

    /// An arm64 image (config, a gzip layer twice, a zstd layer) chosen from a three-entry
    /// index, with the config and the zstd layer cached.
    fn inspection() -> (Inspection, [Digest; 3]) {
        let [config, gzip, zstd] = [b"config".as_slice(), b"gzip", b"zstd"].map(Digest::of);
        let image_json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":100}},
            "layers":[{{"mediaType":"{GZIP}","digest":"{gzip}","size":1000}},
                      {{"mediaType":"{GZIP}","digest":"{gzip}","size":1000}},
                      {{"mediaType":"{ZSTD}","digest":"{zstd}","size":20}}]}}"#
        );
        let image = fetched(&image_json);
        let other = Digest::of(b"other");
        let index_json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{other}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{other}","size":7,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            image.digest,
            image.bytes.len()
        );
        let index = fetched(&index_json);
        let (Ok(Manifest::Image(parsed_image)), Ok(Manifest::Index(parsed_index))) = (
            Manifest::parse("x", None, &image.bytes),
            Manifest::parse("x", None, &index.bytes),
        ) else {
            panic!("test manifests do not parse");
        };
        let resolved = ResolvedImage {
            reference: "127.0.0.1:5000/team/app:1".parse().unwrap(),
            manifest: image,
            media_type: OCI_MANIFEST.to_string(),
            image: parsed_image,
            platform_from_index: Some(Platform::new("linux", "arm64", None)),
            index: Some(index),
            platform_key: crate::resolve::PlatformKey::One("linux/arm64".parse().unwrap()),
            parsed_index: Some(parsed_index),
        };
        let config_json = format!(
            r#"{{"architecture":"arm64","os":"linux","rootfs":{{"diff_ids":["{gzip}","{gzip}","{zstd}"]}}}}"#
        );
        let image_config = ImageConfig::parse("x", &config, config_json.as_bytes()).unwrap();
        let cached = [config.clone(), zstd.clone()];
        let inspection = Inspection::new(&resolved, &image_config, |blob| {
            cached.contains(&blob.digest)
        });
        (inspection, [config, gzip, zstd])
    }

    #[test]
    fn an_index_entry_is_selected_and_sizes_count_each_blob_once() {
        let (inspection, [config, gzip, zstd]) = inspection();
        let platforms = inspection.platforms.as_ref().unwrap();
        let selected: Vec<_> = platforms
            .iter()
            .map(|p| (p.platform.as_deref(), p.selected))
            .collect();
        assert_eq!(
            selected,
            [
                (Some("linux/amd64"), false),
                (Some("linux/arm64"), true),
                (Some("unknown/unknown"), false)
            ]
        );
        assert_eq!(inspection.media_type, OCI_INDEX);
        assert_ne!(inspection.digest, inspection.image.digest);
        let image = &inspection.image;
        assert_eq!(image.platform, "linux/arm64/v8");
        assert!(image.config.cached && image.config.digest == config);
        let layers: Vec<_> = image
            .layers
            .iter()
            .map(|l| (&l.digest, l.compression, l.size, l.cached))
            .collect();
        assert_eq!(
            layers,
            [
                (&gzip, Compression::Gzip, 1000, false),
                (&gzip, Compression::Gzip, 1000, false),
                (&zstd, Compression::Zstd, 20, true)
            ],
            "every layer, in manifest order, duplicates included"
        );
        // The duplicated layer is downloaded once.
        assert_eq!(
            (image.size, image.cached_size, image.download_size),
            (1120, 120, 1000)
        );
    }

    #[test]
    fn json_field_names_are_the_documented_ones() {
        let (inspection, _) = inspection();
        let json = serde_json::to_value(&inspection).unwrap();
        let keys = |value: &serde_json::Value| {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&json),
            [
                "digest",
                "image",
                "media_type",
                "platforms",
                "reference",
                "referrers"
            ]
        );
        assert_eq!(
            keys(&json["platforms"][0]),
            ["digest", "platform", "selected", "size"]
        );
        assert_eq!(
            keys(&json["image"]),
            [
                "cached_size",
                "config",
                "digest",
                "download_size",
                "layers",
                "media_type",
                "platform",
                "size"
            ]
        );
        assert_eq!(keys(&json["image"]["config"]), ["cached", "digest", "size"]);
        assert_eq!(
            keys(&json["image"]["layers"][0]),
            ["cached", "compression", "digest", "media_type", "size"]
        );
        assert_eq!(json["image"]["layers"][2]["compression"], "zstd");
    }

    #[test]
    fn the_table_is_aligned() {
        let (inspection, [config, gzip, _]) = inspection();
        let text = render(&[inspection]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "127.0.0.1:5000/team/app:1");
        assert!(lines[1].starts_with("  index     sha256:"), "{text}");
        assert!(lines[1].ends_with("  OCI index"), "{text}");
        let selected = lines.iter().find(|l| l.contains("linux/arm64")).unwrap();
        assert!(selected.ends_with("selected"), "{text}");
        assert!(
            text.contains(&format!("  config    {}  100 B  cached\n", config.short())),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "            1  {}  gzip         1000 B  no\n",
                gzip.short()
            )),
            "{text}"
        );
        assert!(
            text.ends_with("  total     1.1 KiB: 120 B cached, 1000 B to download\n"),
            "{text}"
        );
        // Columns line up: every layer row is as long as its header up to the SIZE column.
        let header = lines.iter().find(|l| l.contains("COMPRESSION")).unwrap();
        let size_end = header.find("SIZE").unwrap() + "SIZE".len();
        for row in lines
            .iter()
            .filter(|l| l.contains(" gzip ") || l.contains(" zstd "))
        {
            assert_eq!(&row[size_end - 1..size_end], "B", "{text}");
        }
    }

    #[test]
    fn table_pads_and_right_aligns() {
        let rows = vec![cells(["A", "SIZE", ""]), cells(["long", "1", "x"])];
        assert_eq!(
            table(&rows, &[false, true, false]),
            ["A     SIZE", "long     1  x"]
        );
    }
}

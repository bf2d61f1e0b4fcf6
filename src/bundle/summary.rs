//! What a bundle holds, for people and scripts (`haul inspect FILE.tar`, `haul verify
//! --json`): each image's names, digest, platforms (and those its index names but the tar
//! lacks), config and size; what refers to each; whether it is a delta, and of what. The
//! JSON field names are documented in the README: keep them stable.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Attachment, Bundle, Image, Place};
use crate::digest::Digest;
use crate::progress::human_bytes;
use crate::units::count;

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub images: Vec<ImageSummary>,
    /// Set when the bundle is a delta.
    pub delta: Option<DeltaSummary>,
}

#[derive(Debug, Serialize)]
pub struct ImageSummary {
    /// Its names in the tar (full references where the tar gives them); empty when it was
    /// saved by ID or digest.
    pub names: Vec<String>,
    /// What its name points at: the index of a multi-platform image, else the manifest;
    /// null in the classic layout, which holds no manifests.
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    /// One per platform the tar holds.
    pub platforms: Vec<PlatformSummary>,
    /// `os/arch[/variant]` of the platforms its index names whose manifests the tar lacks
    /// (as `docker save` from the containerd store writes an image pulled for one platform).
    pub absent_platforms: Vec<String>,
    /// What refers to it (signatures, attestations, SBOMs, artifacts), nested ones after
    /// their subject.
    pub referrers: Vec<ReferrerSummary>,
}

#[derive(Debug, Serialize)]
pub struct PlatformSummary {
    /// `os/arch[/variant]`.
    pub platform: Option<String>,
    /// Its manifest's digest; null in the classic layout.
    pub manifest: Option<Digest>,
    pub config: Digest,
    /// The config's media type when it is an artifact, not an image.
    pub artifact_type: Option<String>,
    pub layers: usize,
    /// Bytes of its config and layers, each distinct blob once.
    pub size: u64,
    /// Of its layers, how many a delta left out.
    pub layers_left_out: usize,
}

#[derive(Debug, Serialize)]
pub struct ReferrerSummary {
    /// The manifest it refers to.
    pub subject: Digest,
    /// What it is: cosign's kind by its tag, else its artifact type or its first layer's.
    pub kind: String,
    pub digest: Digest,
    pub size: u64,
    /// The tag it was found under; null when the referrers API listed it.
    pub tag: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeltaSummary {
    /// Layer blobs it names but leaves out, and their bytes: expected at the destination.
    pub left_out: usize,
    pub left_out_bytes: u64,
    /// The images of earlier bundles it relies on: what the destination must have loaded.
    pub since: Vec<String>,
    /// The layers it carries as patches (a patch delta: plain `docker load` does not take it).
    pub patched: Vec<PatchedSummary>,
}

#[derive(Debug, Serialize)]
pub struct PatchedSummary {
    /// The layer's blob, as the manifest names it, and its size.
    pub layer: Digest,
    pub size: u64,
    /// The patch's size in the tar.
    pub patch_size: u64,
    /// The blobs of the layers it is rebuilt from, held at the destination.
    pub against: Vec<Digest>,
    /// `exact`: the very blob is rebuilt, every digest kept; `content`: the layer's content,
    /// the image ID kept, but the blob and the manifest digests change (a push needs
    /// `--new-digests`).
    pub rebuild: super::names::Rebuild,
}

impl Summary {
    pub fn of(bundle: &Bundle) -> Summary {
        Summary {
            images: bundle
                .images
                .iter()
                .map(|image| image_summary(image, &bundle.attachments))
                .collect(),
            delta: bundle.delta.as_ref().map(|delta| DeltaSummary {
                left_out: delta.left_out.len(),
                left_out_bytes: delta.left_out.values().map(|b| b.size).sum(),
                since: delta.since.clone(),
                patched: delta
                    .patched
                    .values()
                    .map(|layer| PatchedSummary {
                        layer: layer.digest.clone(),
                        size: layer.size,
                        patch_size: layer.patch.size,
                        against: layer.sources.iter().map(|s| s.digest.clone()).collect(),
                        rebuild: layer.rebuild,
                    })
                    .collect(),
            }),
        }
    }

    /// The text form: one block per image.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for image in &self.images {
            let name = match image.names.as_slice() {
                [] => "(no name: saved by ID or digest)".to_string(),
                names => names.join(", "),
            };
            let _ = writeln!(out, "{name}");
            if let (Some(digest), Some(media_type)) = (&image.digest, &image.media_type) {
                let _ = writeln!(out, "  digest    {digest}  {}", short_kind(media_type));
            }
            for platform in &image.platforms {
                let what = platform.artifact_type.as_ref().map_or_else(
                    || platform.platform.clone().unwrap_or_else(|| "-".into()),
                    |t| format!("artifact {t}"),
                );
                let mut line = format!(
                    "  {what:<15} {}, {}",
                    count(platform.layers, "layer"),
                    human_bytes(platform.size)
                );
                if let Some(manifest) = &platform.manifest {
                    line += &format!("  manifest {}", manifest.short());
                }
                line += &format!("  config {}", platform.config.short());
                if platform.layers_left_out > 0 {
                    line += &format!(" ({} left out: delta)", platform.layers_left_out);
                }
                let _ = writeln!(out, "{line}");
            }
            if !image.absent_platforms.is_empty() {
                let _ = writeln!(
                    out,
                    "  not held  {} (the index names them; the tar lacks their manifests)",
                    image.absent_platforms.join(", ")
                );
            }
            for referrer in &image.referrers {
                let _ = writeln!(
                    out,
                    "  referrer  {}  {}  {}  (of {})",
                    referrer.kind,
                    referrer.digest.short(),
                    human_bytes(referrer.size),
                    referrer.subject.short()
                );
            }
        }
        if let Some(delta) = &self.delta {
            let load_first = if delta.since.is_empty() {
                String::new()
            } else {
                format!("; load first: {}", delta.since.join(", "))
            };
            if delta.patched.is_empty() || delta.left_out > 0 {
                let _ = writeln!(
                    out,
                    "delta: {} ({}) left out, expected at the destination{load_first}",
                    count(delta.left_out, "layer blob"),
                    human_bytes(delta.left_out_bytes),
                );
            }
            if !delta.patched.is_empty() {
                render_patched(&mut out, delta, &load_first);
            }
        }
        out
    }
}

/// A patch delta's lines: what it is, what takes it, and each patched layer.
fn render_patched(out: &mut String, delta: &DeltaSummary, load_first: &str) {
    use super::names::Rebuild;
    let by_content = delta
        .patched
        .iter()
        .filter(|p| p.rebuild == Rebuild::Content)
        .count();
    let _ = writeln!(
        out,
        "patch delta: {} carried as patches{load_first}. Plain `docker load` does not take it: \
         `haul load` rebuilds it where the engine holds what it was made against, `haul \
         rebuild DELTA --from PREV` writes the whole bundle, `haul push` rebuilds it from the \
         registry{}",
        count(delta.patched.len(), "layer"),
        if by_content > 0 {
            format!(" (with --new-digests: {by_content} rebuild by content)")
        } else {
            String::new()
        }
    );
    for patched in &delta.patched {
        let against: Vec<String> = patched.against.iter().map(Digest::short).collect();
        let rebuild = match patched.rebuild {
            Rebuild::Exact => "rebuilds exact (every digest kept)",
            Rebuild::Content => {
                "rebuilds by content (the image ID kept; the blob and manifest digests change)"
            }
        };
        let _ = writeln!(
            out,
            "  patched  layer {} ({}) as a {} patch against {}; {rebuild}",
            patched.layer.short(),
            human_bytes(patched.size),
            human_bytes(patched.patch_size),
            against.join(", "),
        );
    }
}

fn image_summary(image: &Image, attachments: &[Attachment]) -> ImageSummary {
    ImageSummary {
        names: image.names.clone(),
        digest: image.digest().cloned(),
        media_type: image.manifests.last().map(|m| m.media_type.clone()),
        platforms: image
            .platforms
            .iter()
            .map(|p| PlatformSummary {
                platform: p.platform.clone(),
                manifest: p.manifest.clone(),
                config: p.config.digest.clone(),
                artifact_type: p.artifact_type.clone(),
                layers: p.layers.len(),
                size: p.size(),
                layers_left_out: p
                    .layers
                    .iter()
                    .filter(|l| l.place == Place::LeftOut)
                    .count(),
            })
            .collect(),
        absent_platforms: image.absent_platforms(),
        referrers: referrers_of(&image.digests(), attachments),
    }
}

/// What, of `attachments`, refers to one of `subjects`, and what refers to those in turn.
pub fn referrers_of(subjects: &[&Digest], attachments: &[Attachment]) -> Vec<ReferrerSummary> {
    let mut subjects: Vec<Digest> = subjects.iter().map(|d| (*d).clone()).collect();
    let mut out: Vec<ReferrerSummary> = Vec::new();
    let mut changed = true;
    while changed {
        changed = false;
        for attachment in attachments {
            let top = attachment.top();
            if subjects.contains(&attachment.subject) && !out.iter().any(|r| r.digest == top.digest)
            {
                out.push(ReferrerSummary {
                    subject: attachment.subject.clone(),
                    kind: referrer_kind(attachment),
                    digest: top.digest.clone(),
                    size: top.size,
                    tag: attachment.tag.clone(),
                });
                subjects.push(top.digest.clone());
                changed = true;
            }
        }
    }
    out
}

/// What an attachment is, for people: cosign's kind by its tag, else its artifact type, its
/// config's media type (unless it is OCI's empty config), or its first layer's media type.
pub fn referrer_kind(attachment: &Attachment) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Artifact {
        artifact_type: Option<String>,
        config: Option<crate::manifest::Descriptor>,
        #[serde(default)]
        layers: Vec<crate::manifest::Descriptor>,
    }
    const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
    if let Some(tag) = &attachment.tag {
        for (suffix, kind) in [
            (".sig", "signature (cosign)"),
            (".att", "attestation (cosign)"),
            (".sbom", "SBOM (cosign)"),
        ] {
            if tag.ends_with(suffix) {
                return kind.to_string();
            }
        }
    }
    let artifact: Option<Artifact> = serde_json::from_slice(&attachment.top().bytes).ok();
    artifact
        .and_then(|a| {
            a.artifact_type
                .or_else(|| {
                    a.config
                        .map(|c| c.media_type)
                        .filter(|t| t != EMPTY_CONFIG && !crate::manifest::is_image_config(t))
                })
                .or_else(|| a.layers.first().map(|l| l.media_type.clone()))
        })
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| attachment.top().media_type.clone())
}

fn short_kind(media_type: &str) -> &str {
    use crate::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
    match media_type {
        OCI_INDEX => "OCI index",
        DOCKER_MANIFEST_LIST => "Docker manifest list",
        OCI_MANIFEST => "OCI manifest",
        DOCKER_MANIFEST => "Docker manifest",
        other => other,
    }
}

/// A bundle named on the command line, as `haul inspect` shows it: what it holds, and what
/// is wrong with it (shown, not fatal: a listing of a damaged bundle still helps).
pub struct Listing {
    pub file: String,
    pub summary: Summary,
    pub problems: Vec<String>,
}

impl Listing {
    /// Reads the bundle (a tar or a parts set) at `file`.
    pub async fn of(file: &str) -> Result<Listing, BundleListingError> {
        let bundle = super::BundleFile::at(std::path::Path::new(file))?
            .read()
            .await
            .map_err(|source| BundleListingError::Read {
                file: file.to_string(),
                source,
            })?;
        Ok(Listing {
            file: file.to_string(),
            summary: Summary::of(&bundle),
            problems: bundle.problems.iter().map(ToString::to_string).collect(),
        })
    }

    /// The summary's JSON with `file`, `ok` and `problems`.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut value = serde_json::to_value(&self.summary)?;
        value["file"] = self.file.clone().into();
        value["ok"] = self.problems.is_empty().into();
        value["problems"] = self.problems.clone().into();
        Ok(value)
    }

    /// The file's name, then the summary and each problem, indented.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n", self.file);
        for line in self.summary.render().lines() {
            text += &format!("  {line}\n");
        }
        for problem in &self.problems {
            text += &format!("  problem: {problem}\n");
        }
        text
    }
}

/// Why a bundle could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum BundleListingError {
    #[error(transparent)]
    Open(#[from] super::file::BundleOpenError),
    #[error("cannot open {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

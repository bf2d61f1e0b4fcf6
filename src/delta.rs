//! Delta bundles: a tar that leaves out the layer blobs a site certainly holds because it
//! loaded an earlier bundle, and still loads there.
//!
//! What a site holds after loading a bundle is described by a [`Receipt`]: per image, its
//! diff_ids and its layer blobs as the tar names them (digest and size). A receipt comes from
//! `export --receipt`, or from reading the bundle itself (`--since TAR`, `verify --receipt`):
//! both give the same receipt, so `--since RECEIPT` and `--since TAR` give the same delta.
//!
//! The rule ([`left_out`]): layer i of an image in the new bundle may be left out when an
//! earlier bundle has an image whose first i+1 diff_ids are this image's first i+1, and the
//! earlier bundles name the very blob the new tar would hold there. Docker's classic store
//! keys layers by chain ID (the diff_ids up to the layer), so the same layer on other parents
//! is a different layer there; the containerd store and podman reuse blobs by digest. A blob
//! the new tar names several times is left out only when every use qualifies.
//!
//! The delta says what it is in `haul-delta.json` at the tar's top level
//! ([`crate::bundle::DeltaRecord`]),
//! which every loader ignores and `haul verify` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleFile, Problem, ReceiptBlob, ReceiptImage};
use crate::digest::Digest;

const RECEIPT_VERSION: u32 = 1;

/// What a bundle holds, for deltas against it. Images sorted and distinct.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(rename = "haulReceipt")]
    pub version: u32,
    pub images: Vec<ReceiptImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("--since {path}: cannot read it", path = path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--since {path}: not a haul receipt ({detail}); give a bundle (a tar) or the receipt \
         `haul export --receipt` or `haul verify --receipt` wrote for it",
        path = path.display()
    )]
    NotAReceipt {
        path: std::path::PathBuf,
        // Said mid-sentence in the message, so not also a source.
        detail: ReceiptParseError,
    },
    #[error(
        "--since {path}: not a whole image bundle ({problem}); a delta is only as sound as \
         what it is measured against: give the bundle as delivered, or its receipt",
        path = path.display()
    )]
    NotABundle {
        path: std::path::PathBuf,
        // Said mid-sentence in the message, so not also a source.
        problem: BundleReceiptError,
    },
    #[error("--since: {0}")]
    Identified(#[from] crate::bundle::identify::NotABundle),
}

/// Why a bundle gives no receipt: it is not whole.
#[derive(Debug, thiserror::Error)]
pub enum BundleReceiptError {
    #[error(transparent)]
    Problem(Problem),
    #[error("it names no image")]
    NoImage,
}

/// Why a file is not a receipt.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptParseError {
    #[error(transparent)]
    Json(serde_json::Error),
    #[error("version {version}, this haul reads version {RECEIPT_VERSION}")]
    Version { version: u32 },
}

impl Receipt {
    /// A receipt of these images: sorted, each once, with all its names.
    pub fn new(images: impl IntoIterator<Item = ReceiptImage>) -> Receipt {
        type Key = (Vec<Digest>, Vec<ReceiptBlob>);
        let mut merged: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
        for image in images {
            merged
                .entry((image.diff_ids, image.layers))
                .or_default()
                .extend(image.names);
        }
        Receipt {
            version: RECEIPT_VERSION,
            images: merged
                .into_iter()
                .map(|((diff_ids, layers), names)| ReceiptImage {
                    names: names.into_iter().collect(),
                    diff_ids,
                    layers,
                })
                .collect(),
        }
    }

    /// The receipt as a file: pretty JSON, a newline at the end.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a receipt serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the receipt to `path`, whole or not at all (a temporary file beside it,
    /// renamed). Blocks.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::fsx::write_atomic(path, &self.to_bytes())
    }

    /// Reads `--since PATH`: a receipt, or a bundle (any tar haul writes, or `docker save`
    /// output), which is read once, whole, and checked as `haul verify` checks it.
    pub async fn read(path: &Path) -> Result<Receipt, DeltaError> {
        use tokio::io::AsyncReadExt;
        let read_error = |source| DeltaError::Read {
            path: path.to_path_buf(),
            source,
        };
        let not_a_bundle = crate::bundle::identify::not_a_bundle;
        let mut file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(error) => {
                return Err(not_a_bundle(path, None).map_or_else(|| read_error(error), Into::into));
            }
        };
        let mut start = [0u8; 1];
        let n = file.read(&mut start).await.map_err(read_error)?;
        if n == 1 && start[0] == b'{' && crate::parts::set_of(path).is_none() {
            let bytes = tokio::fs::read(path).await.map_err(read_error)?;
            return Receipt::parse(&bytes).map_err(|detail| DeltaError::NotAReceipt {
                path: path.to_path_buf(),
                detail,
            });
        }
        // A tar, a parts set (its record, or its first part), a compressed tar: the tar it
        // holds, read once.
        let bundle = match BundleFile::at(path) {
            Ok(bundle) => bundle,
            Err(crate::bundle::file::BundleOpenError::NotABundle(not)) => return Err(not.into()),
            Err(other) => return Err(read_error(std::io::Error::other(other))),
        };
        let bundle = bundle.read().await.map_err(read_error)?;
        Receipt::of_bundle(&bundle).map_err(|problem| DeltaError::NotABundle {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// The receipt of a bundle: only of a whole one.
    pub fn of_bundle(bundle: &Bundle) -> Result<Receipt, BundleReceiptError> {
        if let Some(problem) = bundle.problems.first() {
            return Err(BundleReceiptError::Problem(problem.clone()));
        }
        let images = bundle.receipt_images();
        if images.is_empty() {
            return Err(BundleReceiptError::NoImage);
        }
        Ok(Receipt::new(images))
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Receipt, ReceiptParseError> {
        let receipt: Receipt = serde_json::from_slice(bytes).map_err(ReceiptParseError::Json)?;
        if receipt.version != RECEIPT_VERSION {
            return Err(ReceiptParseError::Version {
                version: receipt.version,
            });
        }
        Ok(Receipt::new(receipt.images))
    }
}

impl Receipt {
    /// What a containerd image store holds, as a receipt: each image whose ID is a manifest
    /// digest that `manifest_of` can give (content-addressed: any copy of those bytes is that
    /// manifest) stands for its diff_ids and the blobs it names. Images pointing at an index,
    /// or at a manifest not at hand, count for nothing.
    pub fn of_engine_images(
        images: &[(Digest, Vec<Digest>)],
        manifest_of: impl Fn(&Digest) -> Option<Vec<u8>>,
    ) -> Receipt {
        let known = images.iter().filter_map(|(id, diff_ids)| {
            let bytes = manifest_of(id)?;
            let Ok(crate::manifest::Manifest::Image(manifest)) =
                crate::manifest::Manifest::parse("", None, &bytes)
            else {
                return None;
            };
            (manifest.layers.len() == diff_ids.len()).then(|| ReceiptImage {
                names: Vec::new(),
                diff_ids: diff_ids.clone(),
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| ReceiptBlob {
                        digest: l.digest.clone(),
                        size: l.size,
                    })
                    .collect(),
            })
        });
        Receipt::new(known)
    }
}

/// What the destination is known to hold.
#[derive(Debug)]
pub enum Destination {
    /// Nothing is known: the bundle is whole.
    Unknown,
    /// It loaded these bundles (their receipts).
    Bundles(Vec<Receipt>),
    /// A Docker engine with the classic image store, holding these chains (diff_id
    /// prefixes): it never opens a layer whose chain it holds, whatever the blob.
    Chains(BTreeSet<Vec<Digest>>),
}

/// One image of the new bundle, as the rule sees it: its diff_ids and, per layer, the digest
/// of the blob the tar would hold there, and its size when known without the blob.
pub struct Candidate<'a> {
    pub diff_ids: &'a [Digest],
    pub blobs: Vec<Digest>,
    pub sizes: Vec<Option<u64>>,
}

/// What a delta leaves out.
#[derive(Debug, Default)]
pub struct LeftOut {
    /// The layer blobs, with their sizes.
    pub blobs: BTreeMap<Digest, u64>,
    /// The names of the earlier images whose chains they rely on.
    pub since: BTreeSet<String>,
}

/// The blobs the new bundle may leave out, under the rule in the module's documentation,
/// and whom they rely on.
pub fn left_out(images: &[Candidate<'_>], destination: &Destination) -> LeftOut {
    let blobs = left_out_blobs(images, destination);
    let mut since = BTreeSet::new();
    if let Destination::Bundles(receipts) = destination {
        for image in images {
            for (i, blob) in image.blobs.iter().enumerate() {
                if !blobs.contains_key(blob) || i >= image.diff_ids.len() {
                    continue;
                }
                let chain = &image.diff_ids[..=i];
                for earlier in receipts.iter().flat_map(|r| &r.images) {
                    if earlier.diff_ids.starts_with(chain) {
                        since.extend(earlier.names.iter().cloned());
                    }
                }
            }
        }
    }
    LeftOut { blobs, since }
}

/// The earlier bundles' image names when the images (their diff_ids) share not one layer
/// with `receipts`: a `--since` of another site, or of other images, which leaves nothing out.
pub fn unrelated<'a>(
    diff_ids: impl IntoIterator<Item = &'a [Digest]>,
    receipts: &[Receipt],
) -> Option<Vec<String>> {
    if receipts.is_empty() {
        return None;
    }
    let earlier: BTreeSet<&Digest> = receipts
        .iter()
        .flat_map(|r| &r.images)
        .flat_map(|image| &image.diff_ids)
        .collect();
    let shared = diff_ids
        .into_iter()
        .flatten()
        .any(|diff_id| earlier.contains(diff_id));
    (!shared).then(|| {
        receipts
            .iter()
            .flat_map(|r| &r.images)
            .flat_map(|image| image.names.iter().cloned())
            .collect()
    })
}

fn left_out_blobs(images: &[Candidate<'_>], destination: &Destination) -> BTreeMap<Digest, u64> {
    let (chains, held): (BTreeSet<&[Digest]>, Option<BTreeMap<&Digest, u64>>) = match destination {
        Destination::Unknown => return BTreeMap::new(),
        // Chains the destination holds: every prefix of every earlier image's diff_ids; and
        // the blobs the earlier bundles hold.
        Destination::Bundles(since) => (
            since
                .iter()
                .flat_map(|r| &r.images)
                .flat_map(|image| (1..=image.diff_ids.len()).map(|n| &image.diff_ids[..n]))
                .collect(),
            Some(
                since
                    .iter()
                    .flat_map(|r| &r.images)
                    .flat_map(|i| &i.layers)
                    .map(|b| (&b.digest, b.size))
                    .collect(),
            ),
        ),
        Destination::Chains(chains) => (chains.iter().map(Vec::as_slice).collect(), None),
    };
    // Per blob: its size if every use of it qualifies, else None.
    let mut qualifies: BTreeMap<&Digest, Option<u64>> = BTreeMap::new();
    for image in images {
        for (i, blob) in image.blobs.iter().enumerate() {
            let chain_held = i < image.diff_ids.len() && chains.contains(&image.diff_ids[..=i]);
            let size = match &held {
                Some(held) => held.get(blob).copied(),
                None => image.sizes.get(i).copied().flatten(),
            };
            let this = size.filter(|_| chain_held);
            let entry = qualifies.entry(blob).or_insert(this);
            if this.is_none() {
                *entry = None;
            }
        }
    }
    qualifies
        .into_iter()
        .filter_map(|(blob, size)| Some((blob.clone(), size?)))
        .collect()
}

/// The layer a site holds that layer `position` of image `reference` (whose diff_ids are
/// `diff_ids`) is most likely a new version of, for a patch: the layer at the same position
/// of the earlier image of the same repository (the same name, another tag), else of the
/// earlier image sharing the most layers with it; the latest delivered among equals. Also
/// returns that image's names: the delta relies on it.
pub fn patch_source<'r>(
    reference: &crate::reference::Reference,
    diff_ids: &[Digest],
    position: usize,
    receipts: &'r [Receipt],
) -> Option<(crate::bundle::names::PatchSource, &'r [String])> {
    let repository = reference.full_name();
    let same_repository = |image: &ReceiptImage| {
        image.names.iter().any(|name| {
            name.parse::<crate::reference::Reference>()
                .is_ok_and(|r| r.full_name() == repository)
        })
    };
    let earlier = receipts
        .iter()
        .flat_map(|r| &r.images)
        .enumerate()
        .filter(|(_, image)| image.diff_ids.len() > position && image.layers.len() > position)
        .max_by_key(|(order, image)| {
            let shared = image
                .diff_ids
                .iter()
                .filter(|d| diff_ids.contains(d))
                .count();
            (same_repository(image), shared, *order)
        })?
        .1;
    let source = crate::bundle::names::PatchSource {
        diff_id: earlier.diff_ids[position].clone(),
        digest: earlier.layers[position].digest.clone(),
        size: earlier.layers[position].size,
    };
    Some((source, &earlier.names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_is_made_against_the_same_position_of_the_same_repository() {
        let mut v1 = image(&["a1", "b1"], &["A1", "B1"]);
        v1.names = vec!["registry.example/team/app:v1".to_string()];
        let mut other = image(&["a1", "x", "y"], &["A1", "X", "Y"]);
        other.names = vec!["registry.example/team/other:v1".to_string()];
        let receipts = vec![Receipt::new([v1, other])];
        let reference: crate::reference::Reference =
            "registry.example/team/app:v2".parse().unwrap();
        let diff_ids = vec![d("a2"), d("b2")];
        let (source, names) = patch_source(&reference, &diff_ids, 1, &receipts).unwrap();
        assert_eq!((source.diff_id, source.digest), (d("b1"), d("B1")));
        assert_eq!(names, ["registry.example/team/app:v1".to_string()]);
        // Another repository's image, sharing a layer, is the next best.
        let elsewhere: crate::reference::Reference = "registry.example/x:1".parse().unwrap();
        let (source, _) =
            patch_source(&elsewhere, &[d("a1"), d("q"), d("r")], 2, &receipts).unwrap();
        assert_eq!(source.diff_id, d("y"));
        // No earlier image has that many layers: nothing to patch against.
        assert!(patch_source(&reference, &diff_ids, 3, &receipts).is_none());
    }

    fn d(name: &str) -> Digest {
        Digest::of(name.as_bytes())
    }

    fn image(diff_ids: &[&str], blobs: &[&str]) -> ReceiptImage {
        ReceiptImage {
            names: vec![format!("app:{}", diff_ids.len())],
            diff_ids: diff_ids.iter().map(|n| d(n)).collect(),
            layers: blobs
                .iter()
                .map(|n| ReceiptBlob {
                    digest: d(n),
                    size: n.len() as u64,
                })
                .collect(),
        }
    }

    fn candidate<'a>(diff_ids: &'a [Digest], blobs: &[&str]) -> Candidate<'a> {
        Candidate {
            diff_ids,
            blobs: blobs.iter().map(|n| d(n)).collect(),
            sizes: blobs.iter().map(|n| Some(n.len() as u64)).collect(),
        }
    }

    fn since(receipts: Vec<Receipt>) -> Destination {
        Destination::Bundles(receipts)
    }

    #[test]
    fn an_engine_s_chains_are_enough() {
        let chains: BTreeSet<Vec<Digest>> = [vec![d("a")], vec![d("a"), d("b")]].into();
        let diff_ids: Vec<Digest> = ["a", "b", "c"].iter().map(|n| d(n)).collect();
        let mut candidate = candidate(&diff_ids, &["A", "B", "C"]);
        candidate.sizes[1] = None; // its size unknown: carried
        let out = left_out(&[candidate], &Destination::Chains(chains)).blobs;
        assert_eq!(out.len(), 1);
        assert_eq!(out[&d("A")], 1);
        assert!(left_out(&[], &Destination::Unknown).blobs.is_empty());
    }

    #[test]
    fn the_same_layers_on_the_same_parents_are_left_out() {
        let v1 = Receipt::new([image(&["a", "b", "c1"], &["A", "B", "C1"])]);
        let diff_ids: Vec<Digest> = ["a", "b", "c2"].iter().map(|n| d(n)).collect();
        let out = left_out(&[candidate(&diff_ids, &["A", "B", "C2"])], &since(vec![v1])).blobs;
        assert_eq!(out.keys().cloned().collect::<Vec<_>>(), {
            let mut v = vec![d("A"), d("B")];
            v.sort();
            v
        });
        assert_eq!(out[&d("A")], 1);
    }

    #[test]
    fn a_shared_layer_on_other_parents_is_carried() {
        // v2 has v1's second layer, but on another base: another chain in docker's store.
        let v1 = Receipt::new([image(&["a", "b"], &["A", "B"])]);
        let diff_ids: Vec<Digest> = ["x", "b"].iter().map(|n| d(n)).collect();
        assert!(
            left_out(&[candidate(&diff_ids, &["X", "B"])], &since(vec![v1]))
                .blobs
                .is_empty()
        );
    }

    #[test]
    fn the_same_chain_as_another_blob_is_carried() {
        // Same diff_ids, but the earlier bundle held the layer compressed otherwise (or
        // uncompressed): the containerd store and podman would not find this blob.
        let v1 = Receipt::new([image(&["a"], &["A-gzip"])]);
        let diff_ids = vec![d("a")];
        assert!(
            left_out(&[candidate(&diff_ids, &["A-zstd"])], &since(vec![v1]))
                .blobs
                .is_empty()
        );
    }

    #[test]
    fn a_blob_used_twice_is_left_out_only_if_both_uses_qualify() {
        let v1 = Receipt::new([image(&["a"], &["A"])]);
        let held = vec![d("a")];
        let other = vec![d("z"), d("a")];
        let out = left_out(
            &[candidate(&held, &["A"]), candidate(&other, &["Z", "A"])],
            &since(vec![v1]),
        )
        .blobs;
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn two_earlier_bundles_together() {
        let v1 = Receipt::new([image(&["a"], &["A"])]);
        let v2 = Receipt::new([image(&["a", "b"], &["A", "B"])]);
        let diff_ids: Vec<Digest> = ["a", "b", "c"].iter().map(|n| d(n)).collect();
        let out = left_out(
            &[candidate(&diff_ids, &["A", "B", "C"])],
            &since(vec![v1, v2]),
        );
        assert_eq!(out.blobs.len(), 2);
        // Both earlier images hold chains it relies on: both are named, to load first.
        assert_eq!(
            out.since.into_iter().collect::<Vec<_>>(),
            vec!["app:1".to_string(), "app:2".to_string()]
        );
    }

    #[test]
    fn receipts_round_trip_and_are_small() {
        let receipt = Receipt::new([
            image(
                &["a", "b", "c", "d", "e", "f", "g"],
                &["A", "B", "C", "D", "E", "F", "G"],
            ),
            image(&["a"], &["A"]),
            image(&["a"], &["A"]),
        ]);
        assert_eq!(receipt.images.len(), 2, "each image once");
        let bytes = receipt.to_bytes();
        assert!(bytes.len() < 64 << 10, "{}", bytes.len());
        assert_eq!(Receipt::parse(&bytes).unwrap(), receipt);
        assert!(matches!(
            Receipt::parse(br#"{"haulReceipt": 9, "images": []}"#),
            Err(ReceiptParseError::Version { version: 9 })
        ));
        assert!(matches!(
            Receipt::parse(b"{"),
            Err(ReceiptParseError::Json(_))
        ));
    }

    #[test]
    fn an_engine_s_images_stand_for_their_manifests_blobs() {
        let layer = d("L");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":7}}]}}"#,
            d("config")
        );
        let index = r#"{"schemaVersion":2,"manifests":[]}"#.to_string();
        let (m, x, unknown) = (
            Digest::of(manifest.as_bytes()),
            Digest::of(index.as_bytes()),
            d("gone"),
        );
        let at_hand = |digest: &Digest| match digest {
            digest if *digest == m => Some(manifest.clone().into_bytes()),
            digest if *digest == x => Some(index.clone().into_bytes()),
            _ => None,
        };
        let receipt = Receipt::of_engine_images(
            &[
                (m.clone(), vec![d("a")]),
                (x.clone(), vec![d("b")]),
                (unknown, vec![d("c")]),
                // Layer count and diff_ids disagree: not trusted.
                (m.clone(), vec![d("a"), d("b")]),
            ],
            at_hand,
        );
        assert_eq!(receipt.images.len(), 1, "{receipt:?}");
        assert_eq!(receipt.images[0].diff_ids, vec![d("a")]);
        assert_eq!(receipt.images[0].layers[0].digest, layer);
        assert_eq!(receipt.images[0].layers[0].size, 7);
    }
}

//! The delta written again with its patched layers rebuilt: every file it holds, in its
//! order, but the patches and its record; the rebuilt layers; and, for a layer rebuilt by
//! content, the manifests and indexes that name it rewritten up to `index.json` and
//! `manifest.json` (the configs, so the image IDs, are untouched).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Seek, SeekFrom};

use serde_json::Value;

use super::{RebuildError, RebuiltLayer, Sources};
use crate::bundle::names::{DELTA_RECORD, INDEX_JSON, MANIFEST_JSON};
use crate::bundle::{Bundle, BundleFile, DeltaRecord, blob_path};
use crate::digest::Digest;
use crate::export::tar::{Sink, TarWriter};
use crate::manifest::Compression;

/// What becomes of the layers the delta left out.
#[derive(Clone, Copy)]
pub enum LeftOut<'a> {
    /// They stay out (the engine it is loaded into holds them); the record says so.
    Keep,
    /// They are taken from these bundles: the result is whole.
    Fill(&'a Sources),
}

/// What the new tar holds in place of what: decided before a byte is written.
struct Rewrite {
    /// Files of the delta not written again.
    dropped: BTreeSet<String>,
    /// Files of the delta written with other bytes.
    replaced: BTreeMap<String, Vec<u8>>,
    /// Files added: path and bytes (new manifests, a new record).
    added: Vec<(String, Vec<u8>)>,
    /// Left-out blobs taken from an earlier bundle: path, where, size.
    filled: Vec<(String, BundleFile, u64, u64)>,
    /// The links to write again: to a file moved, its new path; to one dropped, none.
    links: Vec<(String, String)>,
}

/// Writes `delta` (read from `file`) with `rebuilt` in place of its patches to `out`. Blocks.
pub fn write_bundle<W: Sink>(
    delta: &Bundle,
    file: &BundleFile,
    rebuilt: &mut [RebuiltLayer],
    left_out: LeftOut<'_>,
    out: &mut TarWriter<W>,
    output: &str,
) -> Result<(), RebuildError> {
    let rewrite = plan(delta, rebuilt, left_out)?;
    let write_error = |source| RebuildError::Write {
        output: output.to_string(),
        source,
    };
    let delta_error = |path: &str| {
        let what = path.to_string();
        move |source| RebuildError::Delta { what, source }
    };
    let mut paths: Vec<String> = delta
        .contents
        .files
        .keys()
        .filter(|p| !rewrite.dropped.contains(*p))
        .cloned()
        .collect();
    paths.extend(rewrite.added.iter().map(|(p, _)| p.clone()));
    paths.extend(rebuilt.iter().map(RebuiltLayer::path));
    paths.extend(rewrite.filled.iter().map(|(p, ..)| p.clone()));
    for dir in parent_dirs(&paths) {
        out.append_dir(&dir).map_err(write_error)?;
    }
    let mut files: Vec<(&String, &crate::bundle::FileRecord)> = delta
        .contents
        .files
        .iter()
        .filter(|(p, _)| !rewrite.dropped.contains(*p))
        .collect();
    files.sort_by_key(|(_, f)| f.offset);
    for (path, record) in files {
        if let Some(bytes) = rewrite.replaced.get(path) {
            out.append_bytes(path, bytes).map_err(write_error)?;
            continue;
        }
        let mut reader = file
            .range(record.offset, record.size)
            .map_err(delta_error(path))?;
        out.append_reader(path, &mut reader, record.size)
            .map_err(write_error)?;
    }
    for (path, bytes) in &rewrite.added {
        out.append_bytes(path, bytes).map_err(write_error)?;
    }
    for layer in rebuilt.iter_mut() {
        layer
            .file
            .seek(SeekFrom::Start(0))
            .map_err(delta_error("rebuilt layer"))?;
        let path = layer.path();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut layer.file);
        out.append_reader(&path, &mut reader, layer.size)
            .map_err(write_error)?;
    }
    for (path, bundle, offset, size) in &rewrite.filled {
        let mut reader = bundle
            .range(*offset, *size)
            .map_err(|source| RebuildError::Source {
                name: bundle.describe(),
                why: format!("cannot read {path}: {source}"),
            })?;
        out.append_reader(path, &mut reader, *size)
            .map_err(write_error)?;
    }
    // Links last: each names a file written before it.
    for (path, target) in &rewrite.links {
        out.append_link(path, target).map_err(write_error)?;
    }
    Ok(())
}

/// Names the first left-out blob `sources` lacks, before any work is done.
pub fn check_left_out(delta: &Bundle, sources: &Sources) -> Result<(), RebuildError> {
    for blob in delta.delta.iter().flat_map(|d| d.left_out.values()) {
        if sources.find_blob(&blob.digest, blob.size).is_none() {
            return Err(RebuildError::MissingBlob {
                made_against: super::made_against(delta),
                path: blob.path.clone(),
                digest: blob.digest.clone(),
                looked_in: sources.describe(),
            });
        }
    }
    Ok(())
}

fn plan(
    delta: &Bundle,
    rebuilt: &[RebuiltLayer],
    left_out: LeftOut<'_>,
) -> Result<Rewrite, RebuildError> {
    let mut rewrite = Rewrite {
        dropped: BTreeSet::new(),
        replaced: BTreeMap::new(),
        added: Vec::new(),
        filled: Vec::new(),
        links: Vec::new(),
    };
    rewrite.dropped.insert(DELTA_RECORD.to_string());
    for layer in rebuilt {
        rewrite.dropped.insert(layer.record.patch.path.clone());
    }
    // Content layers: the blob the manifests name becomes the uncompressed tar.
    let content: HashMap<&Digest, &RebuiltLayer> = rebuilt
        .iter()
        .filter(|l| !l.exact)
        .map(|l| (&l.record.digest, l))
        .collect();
    let moved_paths: HashMap<String, String> = rebuilt
        .iter()
        .filter(|l| l.path() != l.record.path)
        .map(|l| (l.record.path.clone(), l.path()))
        .collect();
    // Manifests naming them, then the indexes naming those, children first.
    let mut renamed: HashMap<Digest, (Digest, u64)> = HashMap::new();
    if !content.is_empty() {
        for manifest in delta.images.iter().flat_map(|i| &i.manifests) {
            if renamed.contains_key(&manifest.digest) {
                continue;
            }
            let Ok(mut json) = serde_json::from_slice::<Value>(&manifest.bytes) else {
                continue;
            };
            let changed = if manifest.is_index {
                rename_entries(&mut json, "manifests", &renamed)
            } else {
                uncompress_layers(&mut json, &manifest.media_type, &content)
            };
            if !changed {
                continue;
            }
            let bytes = serde_json::to_vec(&json).expect("a manifest serializes");
            let digest = Digest::of(&bytes);
            renamed.insert(
                manifest.digest.clone(),
                (digest.clone(), bytes.len() as u64),
            );
            rewrite.dropped.insert(blob_path(&manifest.digest));
            rewrite.added.push((blob_path(&digest), bytes));
        }
    }
    if !renamed.is_empty()
        && let Some(bytes) = delta.contents.bytes_of(INDEX_JSON)
        && let Ok(mut json) = serde_json::from_slice::<Value>(bytes)
        && rename_entries(&mut json, "manifests", &renamed)
    {
        rewrite.replaced.insert(
            INDEX_JSON.to_string(),
            serde_json::to_vec(&json).expect("an index serializes"),
        );
    }
    if !moved_paths.is_empty()
        && let Some(bytes) = delta.contents.bytes_of(MANIFEST_JSON)
        && let Ok(mut json) = serde_json::from_slice::<Value>(bytes)
    {
        for entry in json.as_array_mut().into_iter().flatten() {
            for layer in entry
                .get_mut("Layers")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(new) = layer.as_str().and_then(|p| moved_paths.get(p)) {
                    *layer = Value::String(new.clone());
                }
            }
        }
        rewrite.replaced.insert(
            MANIFEST_JSON.to_string(),
            serde_json::to_vec(&json).expect("manifest.json serializes"),
        );
    }
    for (path, target) in &delta.contents.links {
        let target = moved_paths.get(target).unwrap_or(target);
        let written = !rewrite.dropped.contains(target)
            || rebuilt.iter().any(|layer| layer.path() == *target);
        if written {
            rewrite.links.push((path.clone(), target.clone()));
        }
    }
    let left_out_blobs: Vec<_> = delta
        .delta
        .iter()
        .flat_map(|d| d.left_out.values())
        .cloned()
        .collect();
    match left_out {
        LeftOut::Keep => {
            if !left_out_blobs.is_empty() {
                let since = delta.delta.iter().flat_map(|d| d.since.iter().cloned());
                let record = DeltaRecord::new(left_out_blobs, since);
                rewrite
                    .added
                    .push((DELTA_RECORD.to_string(), record.to_bytes()));
            }
        }
        LeftOut::Fill(sources) => {
            for blob in left_out_blobs {
                let (bundle, offset) =
                    sources.find_blob(&blob.digest, blob.size).ok_or_else(|| {
                        RebuildError::MissingBlob {
                            made_against: super::made_against(delta),
                            path: blob.path.clone(),
                            digest: blob.digest.clone(),
                            looked_in: sources.describe(),
                        }
                    })?;
                rewrite
                    .filled
                    .push((blob.path.clone(), bundle.clone(), offset, blob.size));
            }
        }
    }
    Ok(rewrite)
}

/// Hands each descriptor under `key` (an object with a digest) to `change`; true if any
/// changed.
fn change_descriptors(
    json: &mut Value,
    key: &str,
    mut change: impl FnMut(&Digest, &mut serde_json::Map<String, Value>) -> bool,
) -> bool {
    let mut changed = false;
    for entry in json
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        let digest = entry
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok());
        if let Some(digest) = digest {
            changed |= change(&digest, entry);
        }
    }
    changed
}

/// Points the descriptors under `key` that name a renamed manifest at the new one.
fn rename_entries(json: &mut Value, key: &str, renamed: &HashMap<Digest, (Digest, u64)>) -> bool {
    change_descriptors(json, key, |old, entry| {
        let Some((digest, size)) = renamed.get(old) else {
            return false;
        };
        entry.insert("digest".into(), digest.to_string().into());
        entry.insert("size".into(), (*size).into());
        true
    })
}

/// Names the uncompressed tar for each layer rebuilt by content, as `--decompress` does.
fn uncompress_layers(
    json: &mut Value,
    media_type: &str,
    content: &HashMap<&Digest, &RebuiltLayer>,
) -> bool {
    let layer_type = Compression::uncompressed_media_type(media_type);
    change_descriptors(json, "layers", |digest, entry| {
        let Some(layer) = content.get(digest) else {
            return false;
        };
        entry.insert("mediaType".into(), layer_type.into());
        entry.insert("digest".into(), layer.digest.to_string().into());
        entry.insert("size".into(), layer.size.into());
        entry.remove("urls");
        true
    })
}

/// Every folder above `paths`, parents first.
fn parent_dirs(paths: &[String]) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for path in paths {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            at += slash + 1;
            dirs.insert(path[..at].to_string());
        }
    }
    dirs
}

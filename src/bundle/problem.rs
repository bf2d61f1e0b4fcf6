//! What can be wrong with a bundle: each problem names the file, and who named it.

use serde::Serialize;

use crate::digest::Digest;

/// One thing wrong with the tar. Each names the file, and who named the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The input is not a tar, or stops being one; nothing after `offset` was read.
    #[error("not a readable tar at byte {offset}{}: {detail}", after_entry(.after))]
    Unreadable {
        offset: u64,
        after: Option<String>,
        detail: String,
    },
    /// The input ends inside an entry, or without the end-of-archive blocks: it was cut short.
    #[error("the tar is truncated: the input ends at byte {offset}{}", truncated_where(.entry, *.inside))]
    Truncated {
        offset: u64,
        entry: Option<String>,
        /// Inside the entry's data, else after it.
        inside: bool,
    },
    /// More entries than any image tar has; reading stopped.
    #[error("the tar has more than {limit} entries, far more than an image tar; stopped reading")]
    TooManyEntries { limit: usize },
    /// An absolute name or one that leaves the tar's root with `..`.
    #[error("unsafe path {path:?} (absolute, or leaving the tar's root){}", named(.named_by))]
    UnsafePath {
        path: String,
        named_by: Option<String>,
    },
    #[error("the tar has neither manifest.json nor index.json: it is not an image tar")]
    NoIndex,
    #[error("{path} is missing; {named_by} names it")]
    Missing { path: String, named_by: String },
    #[error("{path} does not hash to its name: expected {expected}, got {actual}")]
    BlobMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path} is under blobs/ but is not named by a sha256 digest, so it cannot be checked")]
    UncheckableBlob { path: String },
    #[error("{path} holds {actual} bytes, but {named_by} says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
        named_by: String,
    },
    #[error(
        "{image}: {layers} layers, but its config {config} lists {diff_ids} diff_ids; loaders refuse it"
    )]
    LayerCount {
        image: String,
        config: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error(
        "{image}: layer {position} ({path}) is an uncompressed tar whose sha256 is {actual}, \
         but its config's diff_id {position} is {expected}"
    )]
    DiffIdMismatch {
        image: String,
        path: String,
        /// 1-based.
        position: usize,
        expected: Digest,
        actual: Digest,
    },
    /// An index whose platforms' manifests are all absent: the tar holds none of the image.
    #[error(
        "{image}: the tar holds none of the {count} platforms its index {path} names; export or save it again"
    )]
    NoPlatformHeld {
        image: String,
        path: String,
        count: usize,
    },
    /// A part of a parts set that is missing, damaged or another set's (with what to do).
    #[error("{detail}")]
    Part { file: String, detail: String },
    /// A metadata file (index, manifest, config) that cannot be read as what it should be.
    #[error("{path} is not a valid {what}: {detail}")]
    Malformed {
        path: String,
        what: String,
        detail: String,
    },
}

fn after_entry(after: &Option<String>) -> String {
    match after {
        Some(name) => format!(" (after the entry {name:?})"),
        None => String::new(),
    }
}

fn truncated_where(entry: &Option<String>, inside: bool) -> String {
    match entry {
        Some(name) if inside => format!(", inside the entry {name:?}"),
        Some(name) => format!(", after the entry {name:?}, without the end-of-archive marker"),
        None => ", without the end-of-archive marker".to_string(),
    }
}

fn named(named_by: &Option<String>) -> String {
    match named_by {
        Some(by) => format!("; {by} names it"),
        None => String::new(),
    }
}

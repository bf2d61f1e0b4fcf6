//! Keyless signatures (sigstore: a short-lived Fulcio certificate and a Rekor log entry),
//! checked with no network against a trusted root that travels with the bundle.
//!
//! - [`trust`]: the trusted root (`trusted_root.json`).
//! - [`x509`], [`sct`]: the signer's certificate, its chain and its CT timestamps.
//! - [`tlog`], [`merkle`]: the log entry, its inclusion proof and checkpoint, or its promise.
//! - [`tsa`]: RFC 3161 timestamps (the time of a Rekor v2 entry).
//! - [`keys`]: keys as sigstore and X.509 name them, checked through aws-lc-rs.

pub mod der_walk;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod material;
pub mod merkle;
pub mod sct;
pub mod tlog;
pub mod trust;
pub mod tsa;
pub mod verify;
pub mod x509;

use sha2::Digest as _;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// The bytes DSSE signs: `DSSEv1 <len> <type> <len> <payload>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A Unix time as people read it (UTC, RFC 3339).
pub fn show_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} s after the epoch"))
}

#[cfg(test)]
mod tests;

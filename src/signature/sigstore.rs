//! Sigstore bundles signed with a key, as cosign attaches them to an image: `cosign sign --key`
//! (cosign 3's default) and `cosign attest --new-bundle-format --key` write a bundle
//! (`application/vnd.dev.sigstore.bundle.v0.3+json`; v0.1 and v0.2 read alike) holding a DSSE
//! envelope whose payload is an in-toto statement naming the image's manifest digest. The
//! signature is over the envelope's pre-authentication encoding (PAE), not the payload alone.
//! A signature (as `cosign verify` counts one) is a statement of predicate type
//! [`COSIGN_SIGN`]; other predicates are attestations.

use base64::Engine as _;
use serde::Deserialize;

use super::{PublicKey, Rejection};
use crate::digest::Digest;

/// The payload type of an in-toto statement in a DSSE envelope: the only one taken as a
/// statement (what another type holds is not a statement, whatever it looks like).
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The predicate type of cosign's signatures in bundle form.
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// Whether a layer of `media_type` is a sigstore bundle.
pub fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    dsse_envelope: Option<EnvelopeJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeJson {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    predicate_type: String,
    #[serde(default)]
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

pub use haul_sigstore::pae;

/// Why a DSSE envelope cannot be read. [`Rejection::Malformed`] keeps text only, so each
/// variant carries its cause's text in its own.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("its DSSE envelope cannot be read: {0}")]
    NotJson(serde_json::Error),
    #[error("its DSSE payload is not base64: {0}")]
    PayloadNotBase64(base64::DecodeError),
    #[error("its DSSE envelope holds no signature")]
    NoSignature,
    #[error("its DSSE signature is not base64: {0}")]
    SignatureNotBase64(base64::DecodeError),
}

/// A DSSE envelope and its signatures (sigstore's have one; DSSE allows several).
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Vec<u8>>,
}

impl Envelope {
    /// Refuses an envelope whose payload is not an in-toto statement.
    pub fn require_statement(&self) -> Result<(), Rejection> {
        require_statement(&self.payload_type)
    }

    /// Reads a DSSE envelope's JSON (cosign's attestation layers).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope: EnvelopeJson =
            serde_json::from_slice(bytes).map_err(EnvelopeError::NotJson)?;
        Envelope::from_json(envelope)
    }

    fn from_json(envelope: EnvelopeJson) -> Result<Envelope, EnvelopeError> {
        let base64 = base64::engine::general_purpose::STANDARD;
        let payload = base64
            .decode(envelope.payload.trim())
            .map_err(EnvelopeError::PayloadNotBase64)?;
        if envelope.signatures.is_empty() {
            return Err(EnvelopeError::NoSignature);
        }
        let signatures = envelope
            .signatures
            .iter()
            .map(|s| base64.decode(s.sig.trim()))
            .collect::<Result<_, _>>()
            .map_err(EnvelopeError::SignatureNotBase64)?;
        Ok(Envelope {
            payload_type: envelope.payload_type,
            payload,
            signatures,
        })
    }
}

/// Refuses a payload type other than an in-toto statement's.
pub fn require_statement(payload_type: &str) -> Result<(), Rejection> {
    if payload_type == IN_TOTO {
        Ok(())
    } else {
        Err(Rejection::Malformed(format!(
            "its DSSE envelope holds {payload_type:?}, not an in-toto statement ({IN_TOTO})"
        )))
    }
}

/// The statement of bundle `bytes` (signed with a key: no certificate), when its envelope
/// verifies under one of `keys`.
pub fn open_with_keys(keys: &[PublicKey], bytes: &[u8]) -> Result<Vec<u8>, Rejection> {
    let malformed = |what: String| Rejection::Malformed(format!("its sigstore bundle {what}"));
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("is not JSON: {e}")))?;
    let Some(envelope) = bundle.dsse_envelope else {
        return Err(malformed(
            "holds no DSSE envelope (a message signature names no image)".to_string(),
        ));
    };
    let envelope =
        Envelope::from_json(envelope).map_err(|e| Rejection::Malformed(e.to_string()))?;
    envelope.require_statement()?;
    let signed = pae(&envelope.payload_type, &envelope.payload);
    let verifies = |key: &PublicKey| {
        envelope
            .signatures
            .iter()
            .any(|signature| key.verifies(&signed, signature))
    };
    if keys.iter().any(verifies) {
        Ok(envelope.payload)
    } else {
        Err(Rejection::NoKeyVerifies)
    }
}

/// Whether in-toto statement `payload` is what was asked for (a cosign signature, or an
/// attestation of `predicate_type`) and names one of `digests`.
pub fn statement_names(
    payload: &[u8],
    digests: &[&Digest],
    predicate_type: Option<&str>,
) -> Result<(), Rejection> {
    let statement: Statement = serde_json::from_slice(payload).map_err(|e| {
        Rejection::Malformed(format!("its payload is not an in-toto statement: {e}"))
    })?;
    match predicate_type {
        None if statement.predicate_type != COSIGN_SIGN => {
            return Err(Rejection::Attestation(statement.predicate_type));
        }
        Some(wanted) if statement.predicate_type != wanted => {
            return Err(Rejection::Attestation(statement.predicate_type));
        }
        _ => {}
    }
    let named: Vec<String> = statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    if named
        .iter()
        .any(|n| digests.iter().any(|d| d.to_string() == *n))
    {
        Ok(())
    } else {
        Err(Rejection::OtherDigest(
            named
                .first()
                .cloned()
                .unwrap_or_else(|| "nothing".to_string()),
        ))
    }
}

/// Whether bundle `bytes` is a cosign signature by one of `keys` naming one of `digests`.
pub fn check(keys: &[PublicKey], bytes: &[u8], digests: &[&Digest]) -> Result<(), Rejection> {
    statement_names(&open_with_keys(keys, bytes)?, digests, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_as_dsse_defines_it() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }
}

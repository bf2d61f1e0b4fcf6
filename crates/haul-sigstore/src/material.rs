//! What a keyless signature carries, read from the two forms cosign and GitHub write: a
//! sigstore bundle (`application/vnd.dev.sigstore.bundle…`, v0.1 to v0.3: a message signature
//! or a DSSE envelope, the certificate, log entries, timestamps), and cosign's `.sig` layer
//! (a simple-signing payload with its signature, certificate and Rekor bundle in annotations).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use x509_cert::Certificate;

use super::tlog::{InclusionProof, LogEntry};
use super::x509::{self, X509Error};

/// The annotations of cosign's `.sig` layers.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
pub const TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// What was signed.
#[derive(Clone, Debug)]
pub enum Content {
    /// A signature over an artifact's bytes; a bundle also gives the artifact's digest.
    Message {
        digest: Option<[u8; 32]>,
        signature: Vec<u8>,
    },
    /// A DSSE envelope (its one signature).
    Envelope {
        payload_type: String,
        payload: Vec<u8>,
        signature: Vec<u8>,
    },
}

impl Content {
    pub fn signature(&self) -> &[u8] {
        match self {
            Content::Message { signature, .. } | Content::Envelope { signature, .. } => signature,
        }
    }
}

/// Where the material came from: which proofs the log entries must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    /// cosign's `.sig` annotations, or a v0.1 bundle: the log's promise (SET) suffices.
    Promise,
    /// A v0.2 or v0.3 bundle: an inclusion proof is required.
    Proof,
}

#[derive(Clone, Debug)]
pub struct Material {
    /// The signer's certificate; none for a bundle signed with a key.
    pub certificate: Option<Certificate>,
    /// Its DER (empty without one).
    pub certificate_der: Vec<u8>,
    pub content: Content,
    pub entries: Vec<LogEntry>,
    /// RFC 3161 responses, DER.
    pub timestamps: Vec<Vec<u8>>,
    pub form: Form,
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

/// protojson writes int64 as a string; older writers as a number.
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    value.as_str().and_then(base64_decode)
}

/// Why a sigstore bundle, or a cosign layer's annotations, cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("its sigstore bundle is not JSON: {0}")]
    BundleNotJson(#[source] serde_json::Error),
    #[error("its sigstore bundle is of a version haul does not read ({0:?})")]
    BundleVersion(String),
    #[error("its sigstore bundle has no certificate that can be read")]
    BundleNoCertificate,
    #[error("its sigstore bundle {0}")]
    BundleCertificate(#[source] X509Error),
    #[error("its sigstore bundle has a message digest that is not SHA-256")]
    BundleDigestNotSha256,
    #[error("its sigstore bundle has a signature that is not base64")]
    BundleSignatureNotBase64,
    #[error("its sigstore bundle has a DSSE envelope without exactly one signature")]
    BundleNotOneEnvelopeSignature,
    #[error("its sigstore bundle has a payload that is not base64")]
    BundlePayloadNotBase64,
    #[error("its sigstore bundle holds neither a message signature nor a DSSE envelope")]
    BundleNothingSigned,
    #[error("its sigstore bundle has a log entry that cannot be read")]
    BundleLogEntry,
    #[error(transparent)]
    CertificateAnnotation(X509Error),
    #[error("its certificate annotation holds no certificate")]
    CertificateAnnotationEmpty,
    #[error(transparent)]
    CertificateEncoding(der::Error),
    #[error("its Rekor bundle annotation cannot be read: {0}")]
    RekorBundle(#[source] serde_json::Error),
    #[error("its Rekor bundle's body is not base64")]
    RekorBodyNotBase64,
    #[error("its Rekor bundle's log id is not hex")]
    RekorLogIdNotHex,
    #[error("its Rekor bundle's timestamp is not base64")]
    RekorTimestampNotBase64,
    #[error("its timestamp annotation cannot be read: {0}")]
    TimestampAnnotation(#[source] serde_json::Error),
    #[error("its timestamp annotation is not base64")]
    TimestampAnnotationNotBase64,
}

/// Reads a sigstore bundle (keyless, or signed with a key: then it has no certificate).
pub fn from_bundle(json: &[u8]) -> Result<Material, MaterialError> {
    let bundle: Value = serde_json::from_slice(json).map_err(MaterialError::BundleNotJson)?;
    let media_type = bundle["mediaType"].as_str().unwrap_or_default();
    let form = match media_type {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Form::Promise,
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
        | "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => Form::Proof,
        other => return Err(MaterialError::BundleVersion(other.to_string())),
    };
    let material = &bundle["verificationMaterial"];
    let certificate_der = if let Some(raw) = material["certificate"]["rawBytes"].as_str() {
        base64_decode(raw)
    } else if let Some(chain) = material["x509CertificateChain"]["certificates"].as_array() {
        // The leaf only: the chain above it comes from the trusted root.
        chain.first().and_then(|c| bytes(&c["rawBytes"]))
    } else if material["publicKey"].is_object() {
        Some(Vec::new())
    } else {
        None
    };
    let certificate_der = certificate_der.ok_or(MaterialError::BundleNoCertificate)?;
    let certificate = if certificate_der.is_empty() {
        None
    } else {
        Some(x509::parse_der(&certificate_der).map_err(MaterialError::BundleCertificate)?)
    };

    let content = if let Some(message) = bundle.get("messageSignature") {
        let digest = match message.get("messageDigest") {
            Some(d) if d["algorithm"] == "SHA2_256" => Some(
                bytes(&d["digest"])
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .ok_or(MaterialError::BundleDigestNotSha256)?,
            ),
            Some(_) => return Err(MaterialError::BundleDigestNotSha256),
            None => None,
        };
        Content::Message {
            digest,
            signature: bytes(&message["signature"])
                .ok_or(MaterialError::BundleSignatureNotBase64)?,
        }
    } else if let Some(envelope) = bundle.get("dsseEnvelope") {
        let signatures = envelope["signatures"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let [signature] = signatures.as_slice() else {
            return Err(MaterialError::BundleNotOneEnvelopeSignature);
        };
        Content::Envelope {
            payload_type: envelope["payloadType"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            payload: bytes(&envelope["payload"]).ok_or(MaterialError::BundlePayloadNotBase64)?,
            signature: bytes(&signature["sig"]).ok_or(MaterialError::BundleSignatureNotBase64)?,
        }
    } else {
        return Err(MaterialError::BundleNothingSigned);
    };

    let mut entries = Vec::new();
    for entry in material["tlogEntries"].as_array().into_iter().flatten() {
        entries.push(entry_from_bundle(entry).ok_or(MaterialError::BundleLogEntry)?);
    }
    let timestamps = material["timestampVerificationData"]["rfc3161Timestamps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| bytes(&t["signedTimestamp"]))
        .collect();
    Ok(Material {
        certificate,
        certificate_der,
        content,
        entries,
        timestamps,
        form,
    })
}

fn entry_from_bundle(entry: &Value) -> Option<LogEntry> {
    let proof = match entry.get("inclusionProof") {
        None | Some(Value::Null) => None,
        Some(proof) => Some(InclusionProof {
            log_index: int(&proof["logIndex"]).unwrap_or(0).try_into().ok()?,
            root_hash: bytes(&proof["rootHash"])?,
            tree_size: int(&proof["treeSize"])?.try_into().ok()?,
            hashes: proof["hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(bytes)
                .collect::<Option<_>>()?,
            checkpoint: proof["checkpoint"]["envelope"].as_str()?.to_string(),
        }),
    };
    Some(LogEntry {
        log_index: int(&entry["logIndex"]).unwrap_or(0).try_into().ok()?,
        log_id: bytes(&entry["logId"]["keyId"])?,
        kind: entry["kindVersion"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        version: entry["kindVersion"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        integrated_time: int(&entry["integratedTime"]).filter(|t| *t != 0),
        promise: entry["inclusionPromise"]["signedEntryTimestamp"]
            .as_str()
            .and_then(base64_decode),
        proof,
        body: bytes(&entry["canonicalizedBody"])?,
    })
}

/// cosign's Rekor bundle annotation.
#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct TimestampAnnotation {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed: String,
}

/// Reads a layer of cosign's `.sig` (or `.att`) image: `content` is what it signs (a
/// simple-signing payload's signature, an attestation's envelope). `Ok(None)`: the layer
/// carries no certificate (signed with a key).
pub fn from_cosign_layer(
    content: Content,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Material>, MaterialError> {
    let Some(pem) = annotations.get(CERTIFICATE_ANNOTATION) else {
        return Ok(None);
    };
    let certificate = x509::parse_pem_chain(pem.as_bytes())
        .map_err(MaterialError::CertificateAnnotation)?
        .into_iter()
        .next()
        .ok_or(MaterialError::CertificateAnnotationEmpty)?;
    use der::Encode;
    let certificate_der = certificate
        .to_der()
        .map_err(MaterialError::CertificateEncoding)?;
    let mut entries = Vec::new();
    if let Some(bundle) = annotations.get(BUNDLE_ANNOTATION) {
        let bundle: RekorBundle =
            serde_json::from_str(bundle).map_err(MaterialError::RekorBundle)?;
        let body = base64_decode(&bundle.payload.body).ok_or(MaterialError::RekorBodyNotBase64)?;
        let kind_version: Value = serde_json::from_slice(&body).unwrap_or_default();
        entries.push(LogEntry {
            log_index: bundle.payload.log_index.try_into().unwrap_or(0),
            log_id: hex::decode(&bundle.payload.log_id)
                .map_err(|_| MaterialError::RekorLogIdNotHex)?,
            kind: kind_version["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            version: kind_version["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            integrated_time: Some(bundle.payload.integrated_time),
            promise: Some(
                base64_decode(&bundle.signed_entry_timestamp)
                    .ok_or(MaterialError::RekorTimestampNotBase64)?,
            ),
            proof: None,
            body,
        });
    }
    let mut timestamps = Vec::new();
    if let Some(annotation) = annotations.get(TIMESTAMP_ANNOTATION) {
        let parsed: TimestampAnnotation =
            serde_json::from_str(annotation).map_err(MaterialError::TimestampAnnotation)?;
        timestamps.push(
            base64_decode(&parsed.signed).ok_or(MaterialError::TimestampAnnotationNotBase64)?,
        );
    }
    Ok(Some(Material {
        certificate: Some(certificate),
        certificate_der,
        content,
        entries,
        timestamps,
        form: Form::Promise,
    }))
}

//! The transparency log (Rekor) side of a keyless signature, checked offline: the entry's
//! inclusion proof up to a checkpoint signed by a log key of the trusted root (Rekor v1 and
//! v2 checkpoints), or, for older bundles, its signed entry timestamp (SET); and the entry's
//! body, which must record this very signature, certificate and payload.

use base64::Engine as _;
use serde_json::Value;

use super::keys::Key;
use super::merkle;
use super::sha256;
use super::trust::{Log, TrustedRoot};

/// One log entry as a bundle carries it.
#[derive(Clone, Debug, Default)]
pub struct LogEntry {
    pub log_index: u64,
    pub log_id: Vec<u8>,
    pub kind: String,
    pub version: String,
    /// Rekor v1 only; only as trustworthy as the SET that signs it.
    pub integrated_time: Option<i64>,
    /// The signed entry timestamp (Rekor v1).
    pub promise: Option<Vec<u8>>,
    pub proof: Option<InclusionProof>,
    /// `canonicalizedBody`: the bytes the log holds (the Merkle leaf).
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct InclusionProof {
    /// Rekor v1: the index in the log shard's tree (the entry's `logIndex` counts across
    /// shards).
    pub log_index: u64,
    pub root_hash: Vec<u8>,
    pub tree_size: u64,
    pub hashes: Vec<Vec<u8>>,
    /// The signed note.
    pub checkpoint: String,
}

/// What was signed, to be found again in the entry's body.
pub enum Signed<'a> {
    /// A signature over an artifact (cosign's simple-signing payload, a file) of SHA-256
    /// `digest`.
    Message {
        digest: [u8; 32],
        signature: &'a [u8],
    },
    /// A DSSE envelope's one signature.
    Envelope {
        payload_type: &'a str,
        payload: &'a [u8],
        signature: &'a [u8],
    },
}

impl Signed<'_> {
    fn signature(&self) -> &[u8] {
        match self {
            Signed::Message { signature, .. } | Signed::Envelope { signature, .. } => signature,
        }
    }
}

/// Who signed, as a log entry records it: a certificate (DER), or a public key (DER SPKI).
#[derive(Clone, Copy)]
pub enum Verifier<'a> {
    Certificate(&'a [u8]),
    Key(&'a [u8]),
}

/// What a verified entry tells: when the log saw the signature, if it signed that time, and
/// when the log's key was in use (every time the signature is placed at must fall in it).
pub struct Verified {
    pub time: Option<i64>,
    pub log_valid: super::trust::Window,
}

/// Why a log entry does not prove (or promise) that the log holds the signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    #[error(
        "its log entry is by a log the trusted root does not hold ({})",
        hex::encode(.log_id)
    )]
    UnknownLog { log_id: Vec<u8> },
    #[error("its log entry's body is not JSON")]
    BodyNotJson,
    #[error("its log entry records another {0}")]
    RecordsAnother(Recorded),
    #[error("its log entry is of a kind haul does not check ({kind} {version}) for this signature")]
    UnsupportedKind { kind: String, version: String },
    #[error("its log entry has a promise but no time")]
    PromiseWithoutTime,
    #[error("its log entry was made outside the log key's validity")]
    OutsideLogValidity,
    #[error("the log's key cannot check a signed entry timestamp")]
    KeyCannotCheckPromise,
    #[error("its log entry's signed timestamp does not verify under the log's key")]
    PromiseInvalid,
    #[error("its log entry carries neither an inclusion proof nor a promise")]
    NoProofNorPromise,
    #[error("its log entry's checkpoint cannot be read")]
    CheckpointUnreadable,
    #[error("the trusted root gives no host for the log, to match its checkpoint")]
    NoLogHost,
    #[error("its log entry's checkpoint is of another log ({origin:?}, not {expected:?})")]
    CheckpointOfAnotherLog { origin: String, expected: String },
    #[error("its log entry's checkpoint signature does not verify")]
    CheckpointSignatureInvalid,
    #[error("its log entry's checkpoint is not signed by the log's key")]
    CheckpointNotSignedByLog,
    #[error("its inclusion proof is for another tree than the checkpoint's")]
    ProofOfAnotherTree,
    #[error("its inclusion proof holds a hash that is not SHA-256")]
    ProofHashNotSha256,
    #[error("its inclusion proof does not lead to the checkpoint's root")]
    ProofDoesNotLeadToRoot,
}

/// What an entry's body records that is not this signature's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Payload,
    Signature,
    CertificateOrKey,
    /// No one signature of a DSSE entry is this one by this signer.
    SignatureCertificateOrKey,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recorded::Payload => "payload",
            Recorded::Signature => "signature",
            Recorded::CertificateOrKey => "certificate or key",
            Recorded::SignatureCertificateOrKey => "signature, certificate or key",
        })
    }
}

/// Checks `entry` against the logs of `root`: proven (or promised) by a log the root trusts,
/// recording `signed` by `verifier`.
pub fn verify_entry(
    entry: &LogEntry,
    root: &TrustedRoot,
    signed: &Signed<'_>,
    verifier: Verifier<'_>,
) -> Result<Verified, TlogError> {
    let log = root
        .tlogs
        .iter()
        .find(|log| log.id == entry.log_id)
        .ok_or_else(|| TlogError::UnknownLog {
            log_id: entry.log_id.clone(),
        })?;
    let body: Value = serde_json::from_slice(&entry.body).map_err(|_| TlogError::BodyNotJson)?;
    check_body(&body, signed, verifier)?;

    let mut time = None;
    if let Some(promise) = &entry.promise {
        let integrated = entry.integrated_time.ok_or(TlogError::PromiseWithoutTime)?;
        verify_promise(entry, log, integrated, promise)?;
        time = Some(integrated);
    }
    match &entry.proof {
        Some(proof) => verify_inclusion(entry, log, proof)?,
        None if entry.promise.is_none() => {
            return Err(TlogError::NoProofNorPromise);
        }
        None => {}
    }
    Ok(Verified {
        time,
        log_valid: log.valid,
    })
}

/// The SET: the log's signature over the entry's canonical JSON (ECDSA over SHA-256).
fn verify_promise(
    entry: &LogEntry,
    log: &Log,
    integrated: i64,
    promise: &[u8],
) -> Result<(), TlogError> {
    if !log.valid.contains(integrated) {
        return Err(TlogError::OutsideLogValidity);
    }
    let payload = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{integrated},\"logID\":\"{}\",\"logIndex\":{}}}",
        base64::engine::general_purpose::STANDARD.encode(&entry.body),
        hex::encode(&entry.log_id),
        entry.log_index
    );
    let key = Key::ecdsa_sha256(log.key.spki()).ok_or(TlogError::KeyCannotCheckPromise)?;
    if key.verifies(payload.as_bytes(), promise) {
        Ok(())
    } else {
        Err(TlogError::PromiseInvalid)
    }
}

/// The inclusion proof, up to a checkpoint the log signed.
fn verify_inclusion(entry: &LogEntry, log: &Log, proof: &InclusionProof) -> Result<(), TlogError> {
    let checkpoint = Checkpoint::parse(&proof.checkpoint).ok_or(TlogError::CheckpointUnreadable)?;
    let rekor_v1 = is_rekor_v1_origin(&checkpoint.origin);
    let origin = if rekor_v1 {
        None
    } else {
        Some(host_of(&log.base_url).ok_or(TlogError::NoLogHost)?)
    };
    if let Some(origin) = &origin
        && checkpoint.origin != *origin
    {
        return Err(TlogError::CheckpointOfAnotherLog {
            origin: checkpoint.origin,
            expected: origin.clone(),
        });
    }
    checkpoint.verify(log, origin.as_deref())?;
    // Rekor v1 proves against the shard's tree; a v2 log is one tree.
    let (index, size) = if rekor_v1 {
        if proof.root_hash != checkpoint.root_hash || proof.tree_size != checkpoint.size {
            return Err(TlogError::ProofOfAnotherTree);
        }
        (proof.log_index, proof.tree_size)
    } else {
        (entry.log_index, checkpoint.size)
    };
    let hashes: Vec<[u8; 32]> = proof
        .hashes
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(|_| TlogError::ProofHashNotSha256)?;
    let leaf = merkle::leaf_hash(&entry.body);
    match merkle::root_from_inclusion_proof(index, size, leaf, &hashes) {
        Some(root) if root[..] == checkpoint.root_hash[..] => Ok(()),
        _ => Err(TlogError::ProofDoesNotLeadToRoot),
    }
}

/// Rekor v1 names its checkpoints `<host> - <tree id>`.
fn is_rekor_v1_origin(origin: &str) -> bool {
    origin
        .rsplit_once(" - ")
        .is_some_and(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// A checkpoint: a signed note (C2SP) whose text is `origin\nsize\nbase64 root\n[…]`.
pub(crate) struct Checkpoint<'a> {
    /// The signed text, its last newline included.
    text: &'a str,
    origin: String,
    size: u64,
    root_hash: Vec<u8>,
    /// (name, key hint, signature)
    signatures: Vec<(&'a str, [u8; 4], Vec<u8>)>,
}

impl<'a> Checkpoint<'a> {
    pub(crate) fn parse(note: &'a str) -> Option<Checkpoint<'a>> {
        let split = note.rfind("\n\n")?;
        let text = &note[..split + 1];
        let block = &note[split + 2..];
        if block.is_empty() || !block.ends_with('\n') {
            return None;
        }
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty())?.to_string();
        let size = lines.next()?.parse::<u64>().ok()?;
        let base64 = base64::engine::general_purpose::STANDARD;
        let root_hash = base64.decode(lines.next()?).ok()?;
        let mut signatures = Vec::new();
        for line in block.lines() {
            let rest = line.strip_prefix("\u{2014} ")?;
            let (name, encoded) = rest.split_once(' ')?;
            let decoded = base64.decode(encoded).ok()?;
            if name.is_empty() || decoded.len() < 5 {
                return None;
            }
            let hint: [u8; 4] = decoded[..4].try_into().ok()?;
            signatures.push((name, hint, decoded[4..].to_vec()));
        }
        (!signatures.is_empty()).then_some(Checkpoint {
            text,
            origin,
            size,
            root_hash,
            signatures,
        })
    }

    /// At least one signature by `log`'s key, none of its signatures bad; lines of other
    /// keys (witnesses' cosignatures) are left alone. On a v2 log the signer's name is the
    /// origin.
    fn verify(&self, log: &Log, origin: Option<&str>) -> Result<(), TlogError> {
        let mut verified = false;
        for (name, hint, signature) in &self.signatures {
            let expected = match origin {
                Some(origin) if *name != origin => continue,
                Some(origin) => key_hint(&log.key, origin),
                None => key_hint_v1(&log.key),
            };
            if *hint != expected {
                continue;
            }
            if !log.key.verifies(self.text.as_bytes(), signature) {
                return Err(TlogError::CheckpointSignatureInvalid);
            }
            verified = true;
        }
        if verified {
            Ok(())
        } else {
            Err(TlogError::CheckpointNotSignedByLog)
        }
    }
}

/// Rekor v1's key hint: the first 4 bytes of SHA-256 of the key's DER SPKI (its log id).
fn key_hint_v1(key: &Key) -> [u8; 4] {
    sha256(key.spki())[..4].try_into().expect("4 bytes")
}

/// A signed note's key hint (C2SP signed-note, as rekor-tiles computes it): Ed25519 keys
/// hash the name, a type byte and the raw key; ECDSA keys are hinted as in Rekor v1.
fn key_hint(key: &Key, name: &str) -> [u8; 4] {
    if key.is_ed25519() {
        let spki = key.spki();
        let raw = &spki[spki.len().saturating_sub(32)..];
        let mut input = format!("{name}\n").into_bytes();
        input.push(0x01);
        input.extend_from_slice(raw);
        sha256(&input)[..4].try_into().expect("4 bytes")
    } else {
        key_hint_v1(key)
    }
}

/// Whether a v1 body's verifier (base64 of PEM: a certificate or a public key) is `verifier`.
fn is_pem_of(value: &Value, verifier: Verifier<'_>) -> bool {
    let Some(pem) = value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return false;
    };
    let Ok((label, der)) = der::pem::decode_vec(&pem) else {
        return false;
    };
    match verifier {
        Verifier::Certificate(certificate) => label == "CERTIFICATE" && der == certificate,
        Verifier::Key(spki) => label == "PUBLIC KEY" && der == spki,
    }
}

/// Whether the entry's body records `signed` by `verifier`.
fn check_body(body: &Value, signed: &Signed<'_>, verifier: Verifier<'_>) -> Result<(), TlogError> {
    let kind = body["kind"].as_str().unwrap_or_default();
    let version = body["apiVersion"].as_str().unwrap_or_default();
    let spec = &body["spec"];
    let base64 = base64::engine::general_purpose::STANDARD;
    let decoded = |v: &Value| v.as_str().and_then(|s| base64.decode(s).ok());
    let mismatch = |what: Recorded| Err(TlogError::RecordsAnother(what));
    let signature = signed.signature();
    match (kind, version, signed) {
        ("hashedrekord", "0.0.1", Signed::Message { digest, .. }) => {
            let data = &spec["data"]["hash"];
            if data["algorithm"] != "sha256" || data["value"] != hex::encode(digest) {
                return mismatch(Recorded::Payload);
            }
            if decoded(&spec["signature"]["content"]).as_deref() != Some(signature) {
                return mismatch(Recorded::Signature);
            }
            if !is_pem_of(&spec["signature"]["publicKey"]["content"], verifier) {
                return mismatch(Recorded::CertificateOrKey);
            }
            Ok(())
        }
        ("dsse", "0.0.1", Signed::Envelope { payload, .. }) => {
            if spec["payloadHash"]["value"] != hex::encode(sha256(payload)) {
                return mismatch(Recorded::Payload);
            }
            let recorded = spec["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    decoded(&s["signature"]).as_deref() == Some(signature)
                        && is_pem_of(&s["verifier"], verifier)
                });
            if recorded {
                Ok(())
            } else {
                mismatch(Recorded::SignatureCertificateOrKey)
            }
        }
        ("intoto", "0.0.2", Signed::Envelope { payload, .. }) => {
            let content = &spec["content"];
            if content["payloadHash"]["value"] != hex::encode(sha256(payload)) {
                return mismatch(Recorded::Payload);
            }
            // intoto 0.0.2 keeps each signature base64 twice over.
            let recorded = content["envelope"]["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    decoded(&s["sig"])
                        .and_then(|inner| base64.decode(inner).ok())
                        .as_deref()
                        == Some(signature)
                        && is_pem_of(&s["publicKey"], verifier)
                });
            if recorded {
                Ok(())
            } else {
                mismatch(Recorded::SignatureCertificateOrKey)
            }
        }
        ("hashedrekord", "0.0.2", _) => {
            let spec = &spec["hashedRekordV002"];
            // A DSSE envelope goes into Rekor v2 as a hashed record of its PAE.
            let digest = match signed {
                Signed::Message { digest, .. } => digest.to_vec(),
                Signed::Envelope {
                    payload_type,
                    payload,
                    ..
                } => sha256(&crate::pae(payload_type, payload)).to_vec(),
            };
            if spec["data"]["algorithm"] != "SHA2_256"
                || decoded(&spec["data"]["digest"]).as_deref() != Some(&digest[..])
            {
                return mismatch(Recorded::Payload);
            }
            check_v2_signature(&spec["signature"], signature, verifier)
        }
        ("dsse", "0.0.2", Signed::Envelope { payload, .. }) => {
            let spec = &spec["dsseV002"];
            if spec["payloadHash"]["algorithm"] != "SHA2_256"
                || decoded(&spec["payloadHash"]["digest"]).as_deref() != Some(&sha256(payload)[..])
            {
                return mismatch(Recorded::Payload);
            }
            let recorded = spec["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| check_v2_signature(s, signature, verifier).is_ok());
            if recorded {
                Ok(())
            } else {
                mismatch(Recorded::SignatureCertificateOrKey)
            }
        }
        _ => Err(TlogError::UnsupportedKind {
            kind: kind.to_string(),
            version: version.to_string(),
        }),
    }
}

/// A Rekor v2 `Signature`: its content and its verifier's certificate or key.
fn check_v2_signature(
    value: &Value,
    signature: &[u8],
    verifier: Verifier<'_>,
) -> Result<(), TlogError> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let decoded = |v: &Value| v.as_str().and_then(|s| base64.decode(s).ok());
    if decoded(&value["content"]).as_deref() != Some(signature) {
        return Err(TlogError::RecordsAnother(Recorded::Signature));
    }
    let recorded = match verifier {
        Verifier::Certificate(certificate) => {
            decoded(&value["verifier"]["x509Certificate"]["rawBytes"]).as_deref()
                == Some(certificate)
        }
        Verifier::Key(spki) => {
            decoded(&value["verifier"]["publicKey"]["rawBytes"]).as_deref() == Some(spki)
        }
    };
    if !recorded {
        return Err(TlogError::RecordsAnother(Recorded::CertificateOrKey));
    }
    Ok(())
}

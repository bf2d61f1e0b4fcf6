//! The checks of a keyless signature, in order, offline: the log entry (proven or promised by
//! a log of the trusted root, recording this signature and certificate), the times it gives
//! (the log's signed time, RFC 3161 timestamps), the certificate at each of those times
//! (chained to a certificate authority of the root that was valid then, within its own
//! validity), its CT timestamp, who it names (the identity policy), and the signature itself.
//! What the signed payload names (an image's digest, a file's) is the caller's to check.

use regex::Regex;

use super::material::{Content, Form, Material};
use super::sct::{self, SctError};
use super::tlog::{self, Signed, TlogError, Verifier};
use super::trust::TrustedRoot;
use super::tsa::{self, TsaError};
use super::x509::{self, Purpose, X509Error};

/// A log time this far past the clock is refused as "in the future" (clocks drift).
const CLOCK_SKEW: i64 = 300;

/// One side of the identity policy: exact, or a regular expression found anywhere in the
/// value (as cosign's `…-regexp` flags, Go's `MatchString`).
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Pattern(Regex),
}

impl Matcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(expected) => expected == value,
            Matcher::Pattern(pattern) => pattern.is_match(value),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(value) => write!(f, "{value}"),
            Matcher::Pattern(pattern) => write!(f, "/{pattern}/"),
        }
    }
}

/// Who must have signed: `--certificate-identity[-regexp]` and
/// `--certificate-oidc-issuer[-regexp]`.
#[derive(Clone, Debug)]
pub struct Policy {
    pub identity: Matcher,
    pub issuer: Matcher,
}

/// What was signed, as the caller has it.
pub enum Artifact<'a> {
    /// The bytes themselves (cosign's simple-signing payload, a DSSE payload).
    Bytes(&'a [u8]),
    /// Only their SHA-256 (a file hashed as it streamed by, or `sha256:<hex>`).
    Sha256([u8; 32]),
}

/// A signature that passed: who signed, vouched for by whom, and when.
#[derive(Clone, Debug)]
pub struct Signer {
    pub identity: String,
    pub issuer: String,
    pub time: i64,
}

/// Why a signature did not pass: one variant per check, in the order they run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it is signed with a key, not keylessly (it carries no certificate)")]
    SignedWithKey,
    #[error("it signs another artifact (its message digest differs)")]
    OtherArtifact,
    #[error("the signed artifact is not at hand to check it")]
    ArtifactMissing,
    #[error("it carries no transparency log entry")]
    NoLogEntry,
    #[error("its log entry carries no inclusion proof")]
    NoInclusionProof,
    #[error(transparent)]
    LogEntry(#[from] TlogError),
    #[error(transparent)]
    Timestamp(#[from] TsaError),
    #[error(
        "its log entry's log key was not in use at {}",
        super::show_time(*.time)
    )]
    LogKeyNotInUse { time: i64 },
    #[error(
        "nothing places it in time: its log entry has no signed time and it carries no RFC 3161 \
         timestamp"
    )]
    NoTime,
    #[error("its log entry's time, {}, is in the future", super::show_time(*.time))]
    InFuture { time: i64 },
    /// No authority of the root issued it (`root`: where the root came from).
    #[error(
        "its certificate is not issued by a certificate authority of the trusted root ({root})"
    )]
    NoAuthority { root: String },
    /// Its validity or its usage: `reason` is [`X509Error::NotValidThen`] or
    /// [`X509Error::NotFor`] (told in the text, so not a `source`).
    #[error("its {}", certificate_reason(.reason))]
    Certificate { reason: X509Error },
    #[error(transparent)]
    Transparency(#[from] SctError),
    /// `wanted`: the policy's matcher, as shown.
    #[error("it is signed by {}, not {wanted}", or_none(&.identities.join(", "), "no identity"))]
    Identity {
        identities: Vec<String>,
        wanted: String,
    },
    #[error(
        "its identity was vouched for by {}, not {wanted}",
        or_none(.issuer, "no OIDC issuer")
    )]
    Issuer { issuer: String, wanted: String },
    #[error("its certificate's key is of a kind haul does not check")]
    UnsupportedKey,
    #[error("its signature does not verify under its certificate's key")]
    BadSignature,
    /// [`verify_with_key`]: the signature is not by the key given.
    #[error("its signature is not by this key")]
    NotByKey,
}

/// "the certificate was not valid …" as "certificate was not valid …".
fn certificate_reason(reason: &X509Error) -> String {
    let text = reason.to_string();
    match text.strip_prefix("the ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

fn or_none<'a>(value: &'a str, none: &'a str) -> &'a str {
    if value.is_empty() { none } else { value }
}

/// What `material` signs, with the digest a message signature's log entry records.
fn signed<'a>(
    material: &'a Material,
    artifact: Option<&Artifact<'_>>,
) -> Result<(Signed<'a>, Option<[u8; 32]>), Refusal> {
    let message_digest = match (&material.content, artifact) {
        (Content::Message { .. }, Some(Artifact::Bytes(bytes))) => Some(super::sha256(bytes)),
        (Content::Message { .. }, Some(Artifact::Sha256(digest))) => Some(*digest),
        (Content::Message { digest, .. }, None) => *digest,
        (Content::Envelope { .. }, _) => None,
    };
    if let (
        Content::Message {
            digest: Some(given),
            ..
        },
        Some(actual),
    ) = (&material.content, message_digest)
        && *given != actual
    {
        return Err(Refusal::OtherArtifact);
    }
    let signed = match &material.content {
        Content::Message { signature, .. } => Signed::Message {
            digest: message_digest.ok_or(Refusal::ArtifactMissing)?,
            signature,
        },
        Content::Envelope {
            payload_type,
            payload,
            signature,
        } => Signed::Envelope {
            payload_type,
            payload,
            signature,
        },
    };
    Ok((signed, message_digest))
}

/// The log entries (one must verify) and timestamps (each must): the times they vouch for.
fn logged_times(
    material: &Material,
    signed: &Signed<'_>,
    verifier: Verifier<'_>,
    root: &TrustedRoot,
) -> Result<Vec<i64>, Refusal> {
    let mut times = Vec::new();
    let mut windows = Vec::new();
    let mut logged = false;
    let mut reason = Refusal::NoLogEntry;
    for entry in &material.entries {
        if material.form == Form::Proof && entry.proof.is_none() {
            reason = Refusal::NoInclusionProof;
            continue;
        }
        match tlog::verify_entry(entry, root, signed, verifier) {
            Ok(verified) => {
                logged = true;
                times.extend(verified.time);
                windows.push(verified.log_valid);
            }
            Err(why) => reason = Refusal::LogEntry(why),
        }
    }
    if !logged {
        return Err(reason);
    }
    for response in &material.timestamps {
        times.push(tsa::verify(response, material.content.signature(), root)?);
    }
    // A log whose key was retired (or not yet in use) then proves nothing of that time.
    if let Some(time) = times
        .iter()
        .find(|t| !windows.iter().any(|w| w.contains(**t)))
    {
        return Err(Refusal::LogKeyNotInUse { time: *time });
    }
    Ok(times)
}

/// Checks a bundle signed with `key` (no certificate): the signature, and its log entry
/// against `root`. Returns the time the log vouches for, if any.
pub fn verify_with_key(
    material: &Material,
    key: &super::keys::Key,
    artifact: Option<&Artifact<'_>>,
    root: &TrustedRoot,
    now: i64,
) -> Result<Option<i64>, Refusal> {
    let (signed, message_digest) = signed(material, artifact)?;
    let verified = match (&material.content, artifact) {
        (
            Content::Envelope {
                payload_type,
                payload,
                ..
            },
            _,
        ) => key.verifies(
            &crate::pae(payload_type, payload),
            material.content.signature(),
        ),
        (Content::Message { .. }, Some(Artifact::Bytes(bytes))) => {
            key.verifies(bytes, material.content.signature())
        }
        (Content::Message { .. }, _) => key.verifies_sha256(
            &message_digest.expect("a message signature has a digest"),
            material.content.signature(),
        ),
    };
    if !verified {
        return Err(Refusal::NotByKey);
    }
    let times = logged_times(material, &signed, Verifier::Key(key.spki()), root)?;
    if let Some(future) = times.iter().find(|t| **t > now + CLOCK_SKEW) {
        return Err(Refusal::InFuture { time: *future });
    }
    Ok(times.first().copied())
}

/// Checks `material` against `root` and `policy` at `now` (Unix seconds). `artifact` is what a
/// message signature signs (an envelope signs its own payload).
pub fn verify(
    material: &Material,
    artifact: Option<&Artifact<'_>>,
    root: &TrustedRoot,
    policy: &Policy,
    now: i64,
) -> Result<Signer, Refusal> {
    let certificate = material
        .certificate
        .as_ref()
        .ok_or(Refusal::SignedWithKey)?;
    let signature = material.content.signature();
    let (signed, message_digest) = signed(material, artifact)?;

    // 1. The log, and 2. the timestamps: when it was signed.
    let times = logged_times(
        material,
        &signed,
        Verifier::Certificate(&material.certificate_der),
        root,
    )?;
    if times.is_empty() {
        return Err(Refusal::NoTime);
    }
    if let Some(future) = times.iter().find(|t| **t > now + CLOCK_SKEW) {
        return Err(Refusal::InFuture { time: *future });
    }

    // 3. The certificate, at every one of those times.
    let mut issuer = None;
    for time in &times {
        // What is wrong with the certificate itself says more than an authority's chain.
        let mut own_fault = None;
        let found = root.certificate_authorities.iter().find(|authority| {
            if !authority.valid.contains(*time) {
                return false;
            }
            match x509::chains_to(certificate, &authority.chain, *time, Purpose::CodeSigning) {
                Ok(()) => true,
                Err(reason @ (X509Error::NotValidThen { .. } | X509Error::NotFor { .. })) => {
                    own_fault = Some(reason);
                    false
                }
                Err(_) => false,
            }
        });
        match (found, own_fault) {
            (Some(authority), _) => issuer = authority.chain.first(),
            (None, Some(reason)) => return Err(Refusal::Certificate { reason }),
            (None, None) => {
                return Err(Refusal::NoAuthority {
                    root: root.source.clone(),
                });
            }
        }
    }
    let issuer = issuer.expect("a time was checked");

    // 4. Certificate transparency.
    sct::verify_embedded(certificate, issuer, &root.ctlogs)?;

    // 5. Who signed.
    let identities = x509::identities(certificate);
    let Some(identity) = identities.iter().find(|i| policy.identity.matches(i)) else {
        return Err(Refusal::Identity {
            identities,
            wanted: policy.identity.to_string(),
        });
    };
    let oidc_issuer = x509::oidc_issuer(certificate).unwrap_or_default();
    if !policy.issuer.matches(&oidc_issuer) {
        return Err(Refusal::Issuer {
            issuer: oidc_issuer,
            wanted: policy.issuer.to_string(),
        });
    }

    // 6. The signature itself.
    let key = x509::public_key(certificate).ok_or(Refusal::UnsupportedKey)?;
    let verified = match (&material.content, artifact) {
        (
            Content::Envelope {
                payload_type,
                payload,
                ..
            },
            _,
        ) => key.verifies(&crate::pae(payload_type, payload), signature),
        (Content::Message { .. }, Some(Artifact::Bytes(bytes))) => key.verifies(bytes, signature),
        (Content::Message { .. }, _) => key.verifies_sha256(
            &message_digest.expect("a message signature has a digest"),
            signature,
        ),
    };
    if !verified {
        return Err(Refusal::BadSignature);
    }
    Ok(Signer {
        identity: identity.clone(),
        issuer: oidc_issuer,
        time: times[0],
    })
}

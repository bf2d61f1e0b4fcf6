//! The checks of a keyless signature, in order, offline: the log entry (proven or promised by
//! a log of the trusted root, recording this signature and certificate), the times it gives
//! (the log's signed time, RFC 3161 timestamps), the certificate at each of those times
//! (chained to a certificate authority of the root that was valid then, within its own
//! validity), its CT timestamp, who it names (the identity policy), and the signature itself.
//! What the signed payload names (an image's digest, a file's) is the caller's to check.

use regex::Regex;

use super::material::{Content, Form, Material};
use super::sct;
use super::tlog::{self, Signed, Verifier};
use super::trust::TrustedRoot;
use super::tsa;
use super::x509::{self, Purpose};

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

/// What `material` signs, with the digest a message signature's log entry records.
fn signed<'a>(
    material: &'a Material,
    artifact: Option<&Artifact<'_>>,
) -> Result<(Signed<'a>, Option<[u8; 32]>), String> {
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
        return Err("it signs another artifact (its message digest differs)".to_string());
    }
    let signed = match &material.content {
        Content::Message { signature, .. } => Signed::Message {
            digest: message_digest
                .ok_or_else(|| "the signed artifact is not at hand to check it".to_string())?,
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
) -> Result<Vec<i64>, String> {
    if material.entries.is_empty() {
        return Err("it carries no transparency log entry".to_string());
    }
    let mut times = Vec::new();
    let mut windows = Vec::new();
    let mut logged = false;
    let mut reason = String::new();
    for entry in &material.entries {
        if material.form == Form::Proof && entry.proof.is_none() {
            reason = "its log entry carries no inclusion proof".to_string();
            continue;
        }
        match tlog::verify_entry(entry, root, signed, verifier) {
            Ok(verified) => {
                logged = true;
                times.extend(verified.time);
                windows.push(verified.log_valid);
            }
            Err(why) => reason = why,
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
        return Err(format!(
            "its log entry's log key was not in use at {}",
            super::show_time(*time)
        ));
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
) -> Result<Option<i64>, String> {
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
        return Err("its signature is not by this key".to_string());
    }
    let times = logged_times(material, &signed, Verifier::Key(key.spki()), root)?;
    if let Some(future) = times.iter().find(|t| **t > now + CLOCK_SKEW) {
        return Err(format!(
            "its log entry's time, {}, is in the future",
            super::show_time(*future)
        ));
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
) -> Result<Signer, String> {
    let certificate = material.certificate.as_ref().ok_or_else(|| {
        "it is signed with a key, not keylessly (it carries no certificate)".to_string()
    })?;
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
        return Err(
            "nothing places it in time: its log entry has no signed time and it carries no \
             RFC 3161 timestamp"
                .to_string(),
        );
    }
    if let Some(future) = times.iter().find(|t| **t > now + CLOCK_SKEW) {
        return Err(format!(
            "its log entry's time, {}, is in the future",
            super::show_time(*future)
        ));
    }

    // 3. The certificate, at every one of those times.
    let mut issuer = None;
    for time in &times {
        let mut why = format!(
            "its certificate is not issued by a certificate authority of the trusted root ({})",
            root.source
        );
        let found = root.certificate_authorities.iter().find(|authority| {
            if !authority.valid.contains(*time) {
                return false;
            }
            match x509::chains_to(certificate, &authority.chain, *time, Purpose::CodeSigning) {
                Ok(()) => true,
                Err(reason) => {
                    if reason.starts_with("the certificate was not valid")
                        || reason.starts_with("the certificate is not for")
                    {
                        why = format!("its {}", &reason["the ".len()..]);
                    }
                    false
                }
            }
        });
        match found {
            Some(authority) => issuer = authority.chain.first(),
            None => return Err(why),
        }
    }
    let issuer = issuer.expect("a time was checked");

    // 4. Certificate transparency.
    sct::verify_embedded(certificate, issuer, &root.ctlogs)?;

    // 5. Who signed.
    let identities = x509::identities(certificate);
    let Some(identity) = identities.iter().find(|i| policy.identity.matches(i)) else {
        return Err(format!(
            "it is signed by {}, not {}",
            if identities.is_empty() {
                "no identity".to_string()
            } else {
                identities.join(", ")
            },
            policy.identity
        ));
    };
    let oidc_issuer = x509::oidc_issuer(certificate).unwrap_or_default();
    if !policy.issuer.matches(&oidc_issuer) {
        return Err(format!(
            "its identity was vouched for by {}, not {}",
            if oidc_issuer.is_empty() {
                "no OIDC issuer"
            } else {
                &oidc_issuer
            },
            policy.issuer
        ));
    }

    // 6. The signature itself.
    let key = x509::public_key(certificate)
        .ok_or_else(|| "its certificate's key is of a kind haul does not check".to_string())?;
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
        return Err("its signature does not verify under its certificate's key".to_string());
    }
    Ok(Signer {
        identity: identity.clone(),
        issuer: oidc_issuer,
        time: times[0],
    })
}

//! Certificate transparency (RFC 6962): the signed certificate timestamps Fulcio embeds in a
//! certificate, each a CT log's promise that it logged the precertificate. One must verify
//! under a CT log key of the trusted root that was in use when the log signed.

use x509_cert::Certificate;

use super::sha256;
use super::trust::Log;
use super::x509;

/// An SCT as RFC 6962 §3.2 lays it out.
struct Sct<'a> {
    log_id: &'a [u8],
    /// Milliseconds since the epoch.
    timestamp: u64,
    extensions: &'a [u8],
    signature: &'a [u8],
}

fn parse(bytes: &[u8]) -> Option<Sct<'_>> {
    let take = |at: &mut usize, len: usize| -> Option<&[u8]> {
        let out = bytes.get(*at..*at + len)?;
        *at += len;
        Some(out)
    };
    let mut at = 0;
    let version = take(&mut at, 1)?[0];
    if version != 0 {
        return None;
    }
    let log_id = take(&mut at, 32)?;
    let timestamp = u64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?);
    let len = u16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
    let extensions = take(&mut at, len)?;
    let _algorithms = take(&mut at, 2)?;
    let len = u16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
    let signature = take(&mut at, len)?;
    (at == bytes.len()).then_some(Sct {
        log_id,
        timestamp,
        extensions,
        signature,
    })
}

/// The bytes a CT log signs for a precertificate (RFC 6962 §3.2, `digitally-signed`).
fn signed_data(sct: &Sct<'_>, issuer_key_hash: &[u8; 32], tbs: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0u8]; // v1, certificate_timestamp
    out.extend(sct.timestamp.to_be_bytes());
    out.extend(1u16.to_be_bytes()); // precert_entry
    out.extend(issuer_key_hash);
    out.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
    out.extend(tbs);
    out.extend((sct.extensions.len() as u16).to_be_bytes());
    out.extend(sct.extensions);
    out
}

/// Why no SCT of the certificate verifies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SctError {
    #[error("the certificate carries no SCT (certificate transparency)")]
    NoSct,
    #[error("the certificate's TBS cannot be rebuilt for its SCT")]
    TbsNotRebuilt,
    #[error("its SCT is by no CT log of the trusted root")]
    NoCtLog,
    #[error("its SCT cannot be read")]
    Unreadable,
    #[error("its SCT was signed outside the CT log key's validity")]
    OutsideLogValidity,
    #[error("its SCT does not verify under the CT log's key")]
    DoesNotVerify,
}

/// Whether one SCT embedded in `leaf` (issued by `issuer`) verifies under one of `ctlogs`,
/// signed while that log's key was in use; the reason when none does.
pub fn verify_embedded(
    leaf: &Certificate,
    issuer: &Certificate,
    ctlogs: &[Log],
) -> Result<(), SctError> {
    let scts = x509::embedded_scts(leaf);
    if scts.is_empty() {
        return Err(SctError::NoSct);
    }
    let tbs = x509::precertificate_tbs(leaf).ok_or(SctError::TbsNotRebuilt)?;
    let issuer_key_hash = sha256(&x509::spki_der(issuer));
    let mut reason = SctError::NoCtLog;
    for raw in &scts {
        let Some(sct) = parse(raw) else {
            reason = SctError::Unreadable;
            continue;
        };
        for log in ctlogs.iter().filter(|log| log.id == sct.log_id) {
            if !log.valid.contains((sct.timestamp / 1000) as i64) {
                reason = SctError::OutsideLogValidity;
                continue;
            }
            if log
                .key
                .verifies(&signed_data(&sct, &issuer_key_hash, &tbs), sct.signature)
            {
                return Ok(());
            }
            reason = SctError::DoesNotVerify;
        }
    }
    Err(reason)
}

//! sigstore's `trusted_root.json` (protobuf-specs `TrustedRoot`, JSON form): the Fulcio
//! certificate authorities, the transparency (Rekor) and certificate-transparency log keys and
//! the timestamp authorities a keyless signature is checked against, each with the window of
//! time it may be used for. Nothing else is trusted and nothing is fetched.

use base64::Engine as _;
use serde::Deserialize;
use x509_cert::Certificate;

use super::keys::Key;
use super::x509::parse_der;

/// sigstore's public-good `trusted_root.json` (from its TUF repository, as sigstore-python
/// 4.5.1 ships it; its newest key is valid from 2025-09-23).
pub const PUBLIC_GOOD: &[u8] = include_bytes!("public-good-trusted-root.json");

/// A span of time (Unix seconds), open at the end when the key or authority is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: Option<i64>,
}

impl Window {
    pub fn contains(&self, time: i64) -> bool {
        time >= self.start && self.end.is_none_or(|end| time <= end)
    }
}

/// A log (Rekor or CT) the root trusts: its key, its id and when the key was in use.
#[derive(Clone, Debug)]
pub struct Log {
    pub base_url: String,
    /// The log's id: SHA-256 of its key's DER SPKI (as the root gives it).
    pub id: Vec<u8>,
    pub key: Key,
    pub valid: Window,
}

/// A certificate authority (Fulcio) or timestamp authority the root trusts.
#[derive(Clone, Debug)]
pub struct Authority {
    pub uri: String,
    /// Its chain, as the root lists it: the issuing certificate first, the root last.
    pub chain: Vec<Certificate>,
    pub valid: Window,
}

#[derive(Clone, Debug, Default)]
pub struct TrustedRoot {
    /// Where it came from, for messages.
    pub source: String,
    pub tlogs: Vec<Log>,
    pub ctlogs: Vec<Log>,
    pub certificate_authorities: Vec<Authority>,
    pub timestamp_authorities: Vec<Authority>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the trusted root {path}: {detail}")]
    Read { path: String, detail: String },
    #[error(
        "{source_name} is not a sigstore trusted root ({detail}); give the trusted_root.json of the sigstore instance the signatures come from"
    )]
    Invalid { source_name: String, detail: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootJson {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogJson>,
    #[serde(default)]
    ctlogs: Vec<LogJson>,
    #[serde(default)]
    certificate_authorities: Vec<AuthorityJson>,
    #[serde(default)]
    timestamp_authorities: Vec<AuthorityJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogJson {
    #[serde(default)]
    base_url: String,
    public_key: PublicKeyJson,
    log_id: LogIdJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyJson {
    #[serde(default)]
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<WindowJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdJson {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityJson {
    #[serde(default)]
    uri: String,
    cert_chain: ChainJson,
    valid_for: Option<WindowJson>,
}

#[derive(Deserialize)]
struct ChainJson {
    certificates: Vec<RawJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct WindowJson {
    start: Option<String>,
    end: Option<String>,
}

/// Seconds since the epoch of an RFC 3339 time, as protobuf's JSON writes a Timestamp.
pub fn parse_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

impl TrustedRoot {
    /// Parses `bytes`, named `source` in messages.
    pub fn parse(bytes: &[u8], source: &str) -> Result<TrustedRoot, TrustError> {
        let error = |detail: String| TrustError::Invalid {
            source_name: source.to_string(),
            detail,
        };
        let json: RootJson =
            serde_json::from_slice(bytes).map_err(|e| error(format!("not its JSON: {e}")))?;
        if !json
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(error(format!("its mediaType is {:?}", json.media_type)));
        }
        let base64 = base64::engine::general_purpose::STANDARD;
        let window = |json: &Option<WindowJson>, what: &str| -> Result<Window, TrustError> {
            let json = json
                .as_ref()
                .ok_or_else(|| error(format!("{what} has no validFor")))?;
            let start = json
                .start
                .as_deref()
                .and_then(parse_time)
                .ok_or_else(|| error(format!("{what} has no valid validFor.start")))?;
            let end = match &json.end {
                None => None,
                Some(end) => Some(
                    parse_time(end)
                        .ok_or_else(|| error(format!("{what} has a validFor.end of {end:?}")))?,
                ),
            };
            Ok(Window { start, end })
        };
        let logs = |logs: &[LogJson], kind: &str| -> Result<Vec<Log>, TrustError> {
            let mut out = Vec::new();
            for (i, log) in logs.iter().enumerate() {
                let what = format!("{kind} {i} ({})", log.base_url);
                let spki = base64
                    .decode(&log.public_key.raw_bytes)
                    .map_err(|e| error(format!("{what}: its key is not base64: {e}")))?;
                let id = base64
                    .decode(&log.log_id.key_id)
                    .map_err(|e| error(format!("{what}: its logId is not base64: {e}")))?;
                // A key of a kind haul cannot check is left out (sigstore-go does the same);
                // what it signed then finds no key, and says so.
                let Some(key) = Key::from_details(&spki, &log.public_key.key_details) else {
                    continue;
                };
                out.push(Log {
                    base_url: log.base_url.clone(),
                    id,
                    key,
                    valid: window(&log.public_key.valid_for, &what)?,
                });
            }
            Ok(out)
        };
        let authorities =
            |list: &[AuthorityJson], kind: &str| -> Result<Vec<Authority>, TrustError> {
                let mut out = Vec::new();
                for (i, authority) in list.iter().enumerate() {
                    let what = format!("{kind} {i} ({})", authority.uri);
                    let mut chain = Vec::new();
                    for raw in &authority.cert_chain.certificates {
                        let der = base64.decode(&raw.raw_bytes).map_err(|e| {
                            error(format!("{what}: a certificate is not base64: {e}"))
                        })?;
                        chain.push(parse_der(&der).map_err(|e| error(format!("{what}: {e}")))?);
                    }
                    if chain.is_empty() {
                        return Err(error(format!("{what} has no certificates")));
                    }
                    out.push(Authority {
                        uri: authority.uri.clone(),
                        chain,
                        valid: window(&authority.valid_for, &what)?,
                    });
                }
                Ok(out)
            };
        Ok(TrustedRoot {
            source: source.to_string(),
            tlogs: logs(&json.tlogs, "tlog")?,
            ctlogs: logs(&json.ctlogs, "ctlog")?,
            certificate_authorities: authorities(
                &json.certificate_authorities,
                "certificateAuthority",
            )?,
            timestamp_authorities: authorities(&json.timestamp_authorities, "timestampAuthority")?,
        })
    }

    /// sigstore's public-good root, as haul ships it (see the README for its age and how to
    /// refresh it).
    pub fn public_good() -> TrustedRoot {
        TrustedRoot::parse(
            PUBLIC_GOOD,
            "sigstore's public-good trusted root (shipped with haul)",
        )
        .expect("the shipped trusted root parses")
    }

    /// Reads a trusted root from a file.
    pub fn read(path: &std::path::Path) -> Result<TrustedRoot, TrustError> {
        let bytes = TrustedRoot::read_bytes(path)?;
        TrustedRoot::parse(&bytes, &path.display().to_string())
    }

    /// A trusted root file's bytes, checked to parse (an export carries them as they are).
    pub fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>, TrustError> {
        let bytes = std::fs::read(path).map_err(|e| TrustError::Read {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        TrustedRoot::parse(&bytes, &path.display().to_string())?;
        Ok(bytes)
    }
}

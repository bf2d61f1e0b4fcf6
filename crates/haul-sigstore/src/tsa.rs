//! RFC 3161 timestamps: a timestamp authority's signed statement that it saw a signature at a
//! time (`genTime`). Rekor v2 records no time, so a timestamp is how such a signature is
//! placed in time. The token is a CMS SignedData over a TSTInfo whose message imprint is the
//! hash of the signature's bytes; its signer must chain, at that time, to a timestamp
//! authority of the trusted root.

use der::asn1::ObjectIdentifier as Oid;
use sha2::Digest as _;
use x509_cert::Certificate;

use super::der_walk::{
    self, CONTEXT_0, GENERALIZED_TIME, INTEGER, OCTET_STRING, OID, SEQUENCE, SET,
};
use super::keys::Key;
use super::trust::TrustedRoot;
use super::x509::{self, Purpose, X509Error};

const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");

fn oid(bytes: &[u8]) -> Option<Oid> {
    Oid::from_bytes(der_walk::only(bytes, OID)?).ok()
}

fn hash(algorithm: &Oid, bytes: &[u8]) -> Option<Vec<u8>> {
    match *algorithm {
        a if a == SHA256 => Some(sha2::Sha256::digest(bytes).to_vec()),
        a if a == SHA384 => Some(sha2::Sha384::digest(bytes).to_vec()),
        a if a == SHA512 => Some(sha2::Sha512::digest(bytes).to_vec()),
        _ => None,
    }
}

/// The X.509 signature algorithm a signer info means: its own, or (when it names only the
/// key's kind) that kind with its digest algorithm.
fn signer_algorithm(signature: &Oid, digest: &Oid) -> Oid {
    let pick = |sha256: &str, sha384: &str, sha512: &str| {
        let name = match *digest {
            d if d == SHA384 => sha384,
            d if d == SHA512 => sha512,
            _ => sha256,
        };
        Oid::new_unwrap(name)
    };
    match *signature {
        s if s == RSA_ENCRYPTION => pick(
            "1.2.840.113549.1.1.11",
            "1.2.840.113549.1.1.12",
            "1.2.840.113549.1.1.13",
        ),
        s if s == EC_PUBLIC_KEY => pick(
            "1.2.840.10045.4.3.2",
            "1.2.840.10045.4.3.3",
            "1.2.840.10045.4.3.4",
        ),
        s => s,
    }
}

/// `YYYYMMDDHHMMSS[.f…]Z` in Unix seconds.
fn generalized_time(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.get(..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| digits[range].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let clock = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// What a token says, once parsed.
struct Token<'a> {
    tst_info: &'a [u8],
    imprint_algorithm: Oid,
    imprint: &'a [u8],
    gen_time: i64,
    certificates: Vec<Certificate>,
    digest_algorithm: Oid,
    /// The signed attributes as signed: re-tagged as a SET.
    signed_attributes: Vec<u8>,
    message_digest: &'a [u8],
    signature_algorithm: Oid,
    signature: &'a [u8],
}

/// Why a timestamp does not place the signature in time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TsaError {
    #[error("its timestamp cannot be read (not an RFC 3161 response)")]
    Malformed,
    #[error("its timestamp response does not grant a timestamp")]
    NotGranted,
    #[error("its timestamp has not exactly one signer")]
    NotOneSigner,
    #[error("its timestamp's signer signs no attributes")]
    NoSignedAttributes,
    #[error("its timestamp is of another signature")]
    OfAnotherSignature,
    #[error("its timestamp's signed digest does not match its content")]
    DigestMismatch,
    #[error("its timestamp is by no timestamp authority of the trusted root")]
    NoAuthority,
    #[error("its timestamp is signed by another certificate than the authority's")]
    NotAuthoritysCertificate,
    #[error("its timestamp's signer: {0}")]
    Signer(#[source] X509Error),
    #[error("its timestamp was made outside the authority's validity")]
    OutsideAuthorityValidity,
}

fn parse(response: &[u8]) -> Result<Token<'_>, TsaError> {
    let resp = der_walk::elements(der_walk::only(response, SEQUENCE).ok_or(TsaError::Malformed)?)
        .ok_or(TsaError::Malformed)?;
    let [(SEQUENCE, status, _), (SEQUENCE, token, _)] = resp.as_slice() else {
        return Err(TsaError::Malformed);
    };
    let status = der_walk::elements(status).ok_or(TsaError::Malformed)?;
    match status.first() {
        Some((INTEGER, [0], _)) => {}
        _ => return Err(TsaError::NotGranted),
    }
    let content_info = der_walk::elements(token).ok_or(TsaError::Malformed)?;
    let [(OID, _, content_type), (CONTEXT_0, signed, _)] = content_info.as_slice() else {
        return Err(TsaError::Malformed);
    };
    if oid(content_type) != Some(SIGNED_DATA) {
        return Err(TsaError::Malformed);
    }
    let signed_data =
        der_walk::elements(der_walk::only(signed, SEQUENCE).ok_or(TsaError::Malformed)?)
            .ok_or(TsaError::Malformed)?;
    let mut fields = signed_data.iter();
    let _version = fields
        .next()
        .filter(|f| f.0 == INTEGER)
        .ok_or(TsaError::Malformed)?;
    let _digests = fields
        .next()
        .filter(|f| f.0 == SET)
        .ok_or(TsaError::Malformed)?;
    let encapsulated = fields
        .next()
        .filter(|f| f.0 == SEQUENCE)
        .ok_or(TsaError::Malformed)?;
    let mut certificates = Vec::new();
    let mut signer_infos = None;
    for (tag, content, _) in fields {
        match *tag {
            CONTEXT_0 => {
                for (_, _, raw) in der_walk::elements(content).ok_or(TsaError::Malformed)? {
                    if let Ok(cert) = x509::parse_der(raw) {
                        certificates.push(cert);
                    }
                }
            }
            SET => signer_infos = Some(*content),
            _ => {}
        }
    }
    let encapsulated = der_walk::elements(encapsulated.1).ok_or(TsaError::Malformed)?;
    let [(OID, _, e_type), (CONTEXT_0, e_content, _)] = encapsulated.as_slice() else {
        return Err(TsaError::Malformed);
    };
    if oid(e_type) != Some(TST_INFO) {
        return Err(TsaError::Malformed);
    }
    let tst_info = der_walk::only(e_content, OCTET_STRING).ok_or(TsaError::Malformed)?;
    let info = der_walk::elements(der_walk::only(tst_info, SEQUENCE).ok_or(TsaError::Malformed)?)
        .ok_or(TsaError::Malformed)?;
    let [
        (INTEGER, ..),
        (OID, ..),
        (SEQUENCE, imprint, _),
        (INTEGER, ..),
        (GENERALIZED_TIME, gen_time, _),
        ..,
    ] = info.as_slice()
    else {
        return Err(TsaError::Malformed);
    };
    let imprint = der_walk::elements(imprint).ok_or(TsaError::Malformed)?;
    let [(SEQUENCE, imprint_algorithm, _), (OCTET_STRING, imprint, _)] = imprint.as_slice() else {
        return Err(TsaError::Malformed);
    };
    let imprint_algorithm = der_walk::elements(imprint_algorithm)
        .and_then(|a| a.first().and_then(|f| oid(f.2)))
        .ok_or(TsaError::Malformed)?;
    let gen_time = generalized_time(gen_time).ok_or(TsaError::Malformed)?;

    let signer_infos =
        der_walk::elements(signer_infos.ok_or(TsaError::Malformed)?).ok_or(TsaError::Malformed)?;
    let [(SEQUENCE, signer, _)] = signer_infos.as_slice() else {
        return Err(TsaError::NotOneSigner);
    };
    let signer = der_walk::elements(signer).ok_or(TsaError::Malformed)?;
    let mut fields = signer.iter().skip(2); // version, sid
    let digest_algorithm = fields
        .next()
        .filter(|f| f.0 == SEQUENCE)
        .and_then(|f| der_walk::elements(f.1)?.first().and_then(|a| oid(a.2)))
        .ok_or(TsaError::Malformed)?;
    let attributes = fields
        .next()
        .filter(|f| f.0 == CONTEXT_0)
        .ok_or(TsaError::NoSignedAttributes)?;
    let signature_algorithm = fields
        .next()
        .filter(|f| f.0 == SEQUENCE)
        .and_then(|f| der_walk::elements(f.1)?.first().and_then(|a| oid(a.2)))
        .ok_or(TsaError::Malformed)?;
    let signature = fields
        .next()
        .filter(|f| f.0 == OCTET_STRING)
        .ok_or(TsaError::Malformed)?
        .1;
    let mut message_digest = None;
    let mut content_type_ok = false;
    for (_, attribute, _) in der_walk::elements(attributes.1).ok_or(TsaError::Malformed)? {
        let parts = der_walk::elements(attribute).ok_or(TsaError::Malformed)?;
        let [(OID, _, kind), (SET, values, _)] = parts.as_slice() else {
            return Err(TsaError::Malformed);
        };
        match oid(kind) {
            Some(k) if k == MESSAGE_DIGEST => {
                message_digest = der_walk::only(values, OCTET_STRING);
            }
            Some(k) if k == CONTENT_TYPE => content_type_ok = oid(values) == Some(TST_INFO),
            _ => {}
        }
    }
    if !content_type_ok {
        return Err(TsaError::Malformed);
    }
    let mut signed_attributes = attributes.2.to_vec();
    signed_attributes[0] = SET;
    Ok(Token {
        tst_info,
        imprint_algorithm,
        imprint,
        gen_time,
        certificates,
        digest_algorithm,
        signed_attributes,
        message_digest: message_digest.ok_or(TsaError::Malformed)?,
        signature_algorithm: signer_algorithm(&signature_algorithm, &digest_algorithm),
        signature,
    })
}

/// Checks RFC 3161 response `response` as a timestamp of `signature` (the signature's raw
/// bytes) by a timestamp authority of `root`. Returns the time it gives.
pub fn verify(response: &[u8], signature: &[u8], root: &TrustedRoot) -> Result<i64, TsaError> {
    let token = parse(response)?;
    if hash(&token.imprint_algorithm, signature).as_deref() != Some(token.imprint) {
        return Err(TsaError::OfAnotherSignature);
    }
    if hash(&token.digest_algorithm, token.tst_info).as_deref() != Some(token.message_digest) {
        return Err(TsaError::DigestMismatch);
    }
    let mut reason = TsaError::NoAuthority;
    for authority in &root.timestamp_authorities {
        // The root's chain starts with the authority's own certificate when it is not a CA.
        let (leaf, chain) = match authority.chain.split_first() {
            Some((first, rest)) if !x509::is_ca(first) => (Some(first), rest),
            _ => (None, authority.chain.as_slice()),
        };
        let candidates = token.certificates.iter().chain(leaf);
        for signer in candidates {
            let signs = Key::for_x509(&x509::spki_der(signer), &token.signature_algorithm)
                .is_some_and(|key| key.verifies(&token.signed_attributes, token.signature));
            if !signs {
                continue;
            }
            if leaf.is_some_and(|leaf| leaf != signer) {
                reason = TsaError::NotAuthoritysCertificate;
                continue;
            }
            if let Err(why) = x509::chains_to(signer, chain, token.gen_time, Purpose::TimeStamping)
            {
                reason = TsaError::Signer(why);
                continue;
            }
            if !authority.valid.contains(token.gen_time) {
                reason = TsaError::OutsideAuthorityValidity;
                continue;
            }
            return Ok(token.gen_time);
        }
    }
    Err(reason)
}

//! The X.509 side of a keyless signature: the signer's short-lived certificate (who signed:
//! its subject alternative name and the OIDC issuer Fulcio wrote into it), its chain up to a
//! certificate authority of the trusted root, and the certificate-transparency timestamps
//! (SCTs) embedded in it.

use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};

use super::der_walk;
use super::keys::Key;

/// Fulcio's OIDC issuer, v1: the extension's value is the issuer's bytes, unwrapped.
const ISSUER_V1: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer, v2: a DER UTF8String.
const ISSUER_V2: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's SAN for identities that are neither e-mail nor URI (a username).
const OTHER_NAME_USERNAME: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// The embedded SCT list (RFC 6962 §3.3).
const SCT_LIST: Oid = Oid::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const CODE_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.3");
const TIME_STAMPING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.8");

/// Why a certificate could not be read, or does not chain as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("a certificate is not DER X.509: {0}")]
    NotDer(#[source] der::Error),
    #[error("a certificate is not PEM X.509: {0}")]
    NotPem(#[source] der::Error),
    #[error(
        "the certificate is not a timestamp authority's (its one extended key usage must be \
         timeStamping, critical)"
    )]
    NotTimestampAuthority,
    #[error("the certificate is not for {purpose}")]
    NotFor { purpose: Purpose },
    #[error(
        "the certificate was not valid when it was used ({}; it is valid from {} to {})",
        super::show_time(*.time),
        super::show_time(*.from),
        super::show_time(*.to)
    )]
    NotValidThen { time: i64, from: i64, to: i64 },
    #[error("the certificate is not signed by the authority's chain")]
    NotSignedByChain,
    #[error("a certificate of the chain is not a CA")]
    ChainNotCa,
    #[error("a certificate of the authority's chain was not valid then")]
    ChainNotValidThen,
    #[error("the authority's chain does not end in a self-signed root")]
    NoSelfSignedRoot,
}

pub fn parse_der(der: &[u8]) -> Result<Certificate, X509Error> {
    Certificate::from_der(der).map_err(X509Error::NotDer)
}

/// Certificates in PEM, one after the other (cosign's certificate and chain annotations).
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, X509Error> {
    Certificate::load_pem_chain(pem).map_err(X509Error::NotPem)
}

/// The certificate's validity, in Unix seconds.
pub fn validity(cert: &Certificate) -> (i64, i64) {
    let validity = cert.tbs_certificate().validity();
    (
        validity.not_before.to_unix_duration().as_secs() as i64,
        validity.not_after.to_unix_duration().as_secs() as i64,
    )
}

pub fn spki_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .expect("a decoded key encodes")
}

/// The key of `cert`, checking what it signs with the usual hash of its kind.
pub fn public_key(cert: &Certificate) -> Option<Key> {
    Key::natural(&spki_der(cert))
}

/// Whether `issuer` signed `cert`.
pub fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(tbs) = cert.tbs_certificate().to_der() else {
        return false;
    };
    let Some(signature) = cert.signature().as_bytes() else {
        return false;
    };
    Key::for_x509(&spki_der(issuer), &cert.signature_algorithm().oid)
        .is_some_and(|key| key.verifies(&tbs, signature))
}

pub fn is_ca(cert: &Certificate) -> bool {
    let constraints = matches!(
        cert.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    );
    let usage = match cert.tbs_certificate().get_extension::<KeyUsage>() {
        Ok(Some((_, usage))) => usage.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    constraints && usage
}

fn has_extended_usage(cert: &Certificate, usage: Oid) -> bool {
    matches!(
        cert.tbs_certificate().get_extension::<ExtendedKeyUsage>(),
        Ok(Some((_, ExtendedKeyUsage(usages)))) if usages.contains(&usage)
    )
}

/// RFC 3161 §2.3: a timestamp authority's certificate has one extended key usage,
/// timeStamping, marked critical.
fn is_timestamping_only(cert: &Certificate) -> bool {
    matches!(
        cert.tbs_certificate().get_extension::<ExtendedKeyUsage>(),
        Ok(Some((true, ExtendedKeyUsage(usages)))) if usages == [TIME_STAMPING]
    )
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    CodeSigning,
    TimeStamping,
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Purpose::CodeSigning => "code signing",
            Purpose::TimeStamping => "time stamping",
        })
    }
}

/// Whether `leaf` chains, at `time`, to `chain` (issuing certificate first, a self-signed
/// root last): each signed by the next, each next a CA, every one valid at `time`, and the
/// leaf for `purpose`. The reason when it does not.
pub fn chains_to(
    leaf: &Certificate,
    chain: &[Certificate],
    time: i64,
    purpose: Purpose,
) -> Result<(), X509Error> {
    let within = |cert: &Certificate| {
        let (from, to) = validity(cert);
        from <= time && time <= to
    };
    let wanted = match purpose {
        Purpose::CodeSigning => CODE_SIGNING,
        Purpose::TimeStamping => TIME_STAMPING,
    };
    if purpose == Purpose::TimeStamping && !is_timestamping_only(leaf) {
        return Err(X509Error::NotTimestampAuthority);
    }
    if !has_extended_usage(leaf, wanted) {
        return Err(X509Error::NotFor { purpose });
    }
    if !within(leaf) {
        let (from, to) = validity(leaf);
        return Err(X509Error::NotValidThen { time, from, to });
    }
    let mut child = leaf;
    for issuer in chain {
        if child.tbs_certificate().issuer() != issuer.tbs_certificate().subject()
            || !signed_by(child, issuer)
        {
            return Err(X509Error::NotSignedByChain);
        }
        if !is_ca(issuer) {
            return Err(X509Error::ChainNotCa);
        }
        if !within(issuer) {
            return Err(X509Error::ChainNotValidThen);
        }
        child = issuer;
    }
    // The last is the root: the chain ends where it signs itself.
    if !signed_by(child, child) {
        return Err(X509Error::NoSelfSignedRoot);
    }
    Ok(())
}

/// Who the certificate names: its subject alternative names (e-mail, URI, Fulcio username),
/// in order.
pub fn identities(cert: &Certificate) -> Vec<String> {
    let Ok(Some((_, SubjectAltName(names)))) =
        cert.tbs_certificate().get_extension::<SubjectAltName>()
    else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|name| match name {
            GeneralName::Rfc822Name(email) => Some(email.to_string()),
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            GeneralName::OtherName(other) if other.type_id == OTHER_NAME_USERNAME => other
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.to_string()),
            _ => None,
        })
        .collect()
}

/// The OIDC issuer Fulcio wrote into the certificate: the v2 extension, else the v1.
pub fn oidc_issuer(cert: &Certificate) -> Option<String> {
    let extensions = cert.tbs_certificate().extensions()?;
    let find = |oid: Oid| extensions.iter().find(|e| e.extn_id == oid);
    if let Some(v2) = find(ISSUER_V2) {
        return der::asn1::Utf8StringRef::from_der(v2.extn_value.as_bytes())
            .ok()
            .map(|s| s.to_string());
    }
    find(ISSUER_V1).and_then(|v1| String::from_utf8(v1.extn_value.as_bytes().to_vec()).ok())
}

/// The SCTs embedded in the certificate, raw (RFC 6962 `SignedCertificateTimestamp`s): the
/// extension's value is an OCTET STRING holding the TLS-encoded list.
pub fn embedded_scts(cert: &Certificate) -> Vec<Vec<u8>> {
    let Some(extension) = cert
        .tbs_certificate()
        .extensions()
        .and_then(|e| e.iter().find(|e| e.extn_id == SCT_LIST))
    else {
        return Vec::new();
    };
    let Some(list) = der_walk::only(extension.extn_value.as_bytes(), der_walk::OCTET_STRING) else {
        return Vec::new();
    };
    let u16_at = |at: usize| {
        list.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    };
    let mut out = Vec::new();
    if u16_at(0) != Some(list.len().saturating_sub(2)) {
        return out;
    }
    let mut at = 2;
    while let Some(len) = u16_at(at) {
        let Some(sct) = list.get(at + 2..at + 2 + len) else {
            break;
        };
        out.push(sct.to_vec());
        at += 2 + len;
    }
    out
}

/// The TBS certificate as the CT log signed it: the leaf's, without the SCT list extension
/// (RFC 6962 §3.2: the precertificate's TBS, whose extensions are the final certificate's
/// but that one).
pub fn precertificate_tbs(cert: &Certificate) -> Option<Vec<u8>> {
    let tbs = cert.tbs_certificate().to_der().ok()?;
    let (tag, content, _) = der_walk::tlv(&tbs)?;
    if tag != 0x30 {
        return None;
    }
    let mut fields = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tag, _, len) = der_walk::tlv(rest)?;
        if tag != 0xa3 {
            // Every field but the extensions ([3], explicit), as encoded.
            fields.extend_from_slice(&rest[..len]);
        }
        rest = &rest[len..];
    }
    let mut extensions = Vec::new();
    for extension in cert.tbs_certificate().extensions()? {
        if extension.extn_id != SCT_LIST {
            extensions.extend(extension.to_der().ok()?);
        }
    }
    fields.extend(der_walk::encode(0xa3, &der_walk::encode(0x30, &extensions)));
    Some(der_walk::encode(0x30, &fields))
}

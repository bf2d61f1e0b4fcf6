//! Entry points for the fuzzers (`fuzz/`) and the test that replays their corpora: each
//! takes any bytes, as they would come by courier with a bundle, and must return (a refusal
//! is fine), never panic, abort or run away.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::trust::TrustedRoot;

/// The shipped public-good root, read once: what offline checks run against.
fn public_good() -> &'static TrustedRoot {
    static ROOT: OnceLock<TrustedRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        TrustedRoot::parse(crate::trust::PUBLIC_GOOD, "the shipped root")
            .expect("the shipped root parses")
    })
}

/// A sigstore bundle (any version), read for its material.
pub fn sigstore_bundle(data: &[u8]) {
    let _ = crate::material::from_bundle(data);
}

/// A cosign signature layer: the data is its annotations (a JSON object of strings), the
/// signature what the layer's simple-signing payload would be signed with.
pub fn cosign_layer(data: &[u8]) {
    let Ok(annotations) = serde_json::from_slice::<BTreeMap<String, String>>(data) else {
        return;
    };
    let content = crate::material::Content::Message {
        digest: None,
        signature: data.iter().take(64).copied().collect(),
    };
    let _ = crate::material::from_cosign_layer(content, &annotations);
}

/// A certificate (DER, or a PEM chain), and everything read from one.
pub fn x509(data: &[u8]) {
    let mut certificates: Vec<_> = crate::x509::parse_der(data).into_iter().collect();
    certificates.extend(crate::x509::parse_pem_chain(data).unwrap_or_default());
    for certificate in &certificates {
        let _ = crate::x509::validity(certificate);
        let _ = crate::x509::spki_der(certificate);
        let _ = crate::x509::public_key(certificate);
        let _ = crate::x509::is_ca(certificate);
        let _ = crate::x509::identities(certificate);
        let _ = crate::x509::oidc_issuer(certificate);
        let _ = crate::x509::embedded_scts(certificate);
        let _ = crate::x509::precertificate_tbs(certificate);
        let _ = crate::x509::signed_by(certificate, certificate);
        let _ = crate::sct::verify_embedded(certificate, certificate, &[]);
    }
}

/// A trusted root (`trusted_root.json`).
pub fn trusted_root(data: &[u8]) {
    let _ = TrustedRoot::parse(data, "fuzz");
}

/// An RFC 3161 timestamp response, checked against the public-good root.
pub fn timestamp(data: &[u8]) {
    let _ = crate::tsa::verify(data, b"signature", public_good());
}

/// A transparency log's signed checkpoint (a note).
pub fn checkpoint(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::tlog::Checkpoint::parse(text);
    }
}

/// A Merkle inclusion proof: index, size, then the proof's hashes.
pub fn inclusion_proof(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let index = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let size = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    let proof: Vec<[u8; 32]> = data[16..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let _ = crate::merkle::root_from_inclusion_proof(index, size, [0; 32], &proof);
}

/// DER, walked element by element, as the timestamp and certificate readers walk it.
pub fn der(data: &[u8]) {
    fn walk(bytes: &[u8], depth: usize) {
        if depth > 64 {
            return;
        }
        if let Some(elements) = crate::der_walk::elements(bytes) {
            for (_, content, _) in elements {
                walk(content, depth + 1);
            }
        }
    }
    walk(data, 0);
}

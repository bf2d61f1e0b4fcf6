//! cosign's key-based signatures, checked without a network, in each place cosign puts one:
//!
//! - the `sha256-<hex>.sig` tag (cosign 2's default): an image manifest whose layers are
//!   "simple signing" payloads (JSON naming the signed manifest's digest), each with its base64
//!   signature in the annotation `dev.cosignproject.cosign/signature`;
//! - the same manifest as an OCI 1.1 referrer (`cosign sign --registry-referrers-mode=oci-1-1`),
//!   listed by the referrers API or the fallback tag;
//! - a sigstore bundle referrer ([`sigstore`]: cosign 3's `cosign sign --key`).
//!
//! A signature counts when it verifies under one of the keys given and names the image's
//! digest (or its index's). One check serves a tar (`haul verify --key`) and a registry
//! (`--verify-key`): both hand it the attachments they found and a way to read their blobs.
//! Keyless signatures (Fulcio certificates, Rekor entries) are checked by [`keyless`] (the
//! `haul-sigstore` crate), under the same policy ([`policy`]).
//!
//! Over 600 lines because the one check (`check_attachments`, each place cosign puts a
//! signature, each key kind) and its tests are here; what uses it stands beside it: a
//! bundle's check ([`bundle`]), a registry's ([`registry`]), a file's ([`blob`]).

pub use haul_sigstore as keyless;
pub mod blob;
pub mod bundle;
pub mod policy;
pub mod registry;
pub mod sigstore;

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::digest::Digest;
use sigstore::pae;

/// The annotation of a signature layer that holds the base64 signature of its payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The tag cosign gives the signatures of manifest `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// A public key to check signatures with, and the file it came from (for messages).
pub struct PublicKey {
    pub path: PathBuf,
    key: ParsedPublicKey,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a public key in PEM (-----BEGIN PUBLIC KEY-----, as `cosign generate-key-pair` \
         writes cosign.pub)",
        path = path.display()
    )]
    NotPem { path: PathBuf },
    #[error(
        "the key in {path} is not ECDSA P-256, Ed25519 or RSA (2048 to 8192 bits), the kinds \
         haul checks",
        path = path.display()
    )]
    Unsupported { path: PathBuf },
}

impl PublicKey {
    /// Reads a PEM public key (SubjectPublicKeyInfo): ECDSA P-256, Ed25519 or RSA.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let der = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| KeyError::NotPem {
            path: path.to_path_buf(),
        })?;
        // cosign's algorithms for each kind of key.
        let algorithms: [&'static dyn VerificationAlgorithm; 3] = [
            &sig::ECDSA_P256_SHA256_ASN1,
            &sig::ED25519,
            &sig::RSA_PKCS1_2048_8192_SHA256,
        ];
        let key = algorithms
            .into_iter()
            .find_map(|algorithm| ParsedPublicKey::new(algorithm, der.as_ref()).ok())
            .ok_or_else(|| KeyError::Unsupported {
                path: path.to_path_buf(),
            })?;
        Ok(PublicKey {
            path: path.to_path_buf(),
            key,
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// What a signature must be to count: by one of these keys, or keyless by an identity the
/// policy names (checked against a trusted root); a signature, or with `--predicate-type` an
/// attestation of that type.
#[derive(Default)]
pub struct Trust {
    pub keys: Vec<PublicKey>,
    pub keyless: Option<Keyless>,
    /// An attestation of this predicate type is what must be carried, not a signature.
    pub predicate_type: Option<String>,
}

/// A keyless signature's trust: the root it must chain to and who must have signed.
pub struct Keyless {
    pub root: keyless::trust::TrustedRoot,
    pub policy: keyless::verify::Policy,
}

impl Trust {
    /// Whether anything is asked for.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.keyless.is_none()
    }

    /// What a signature must be by, for messages: `cosign.pub`, `a@b (issuer https://…)`.
    pub fn signers(&self) -> String {
        let mut out: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.path.display().to_string())
            .collect();
        if let Some(keyless) = &self.keyless {
            out.push(format!(
                "{} (issuer {})",
                keyless.policy.identity, keyless.policy.issuer
            ));
        }
        out.join(", ")
    }

    /// "signed" or "attested as <type>", for messages.
    pub fn what(&self) -> String {
        match &self.predicate_type {
            None => "signed".to_string(),
            Some(predicate) => format!("attested ({predicate})"),
        }
    }
}

/// Why a signature did not count (the last reason is reported when none does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No layer of the signature manifest verified under any key.
    NoKeyVerifies,
    /// It verified, but signs another manifest.
    OtherDigest(String),
    /// The signature manifest or its payload could not be read.
    Malformed(String),
    /// It verified, but is an attestation of this predicate type, not what was asked for.
    Attestation(String),
    /// It verified, but is a signature, and an attestation was asked for.
    NotAttestation,
    /// A keyless signature that did not pass, and why.
    Keyless(keyless::verify::Refusal),
    /// Keyless, and no identity policy was given (or signed with a key, and only a policy was).
    OtherKind(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NoKeyVerifies => f.write_str("its signatures are not by this key"),
            Rejection::OtherDigest(digest) => {
                write!(
                    f,
                    "its signature verifies but signs another manifest, {digest}"
                )
            }
            Rejection::Malformed(detail) => write!(f, "its signature cannot be read: {detail}"),
            Rejection::Attestation(predicate) => write!(
                f,
                "it carries a verified attestation of another kind ({predicate}), but not what \
                 was asked for"
            ),
            Rejection::NotAttestation => f.write_str(
                "it carries a verified signature, but no attestation of the type asked for",
            ),
            Rejection::Keyless(refusal) => write!(f, "{refusal}"),
            Rejection::OtherKind(reason) => f.write_str(reason),
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: SignedImage,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Whether a simple-signing `payload` names one of `digests` (the image's manifest, or the
/// index it was chosen from).
fn names_image(payload: &[u8], digests: &[&Digest]) -> Result<(), Rejection> {
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Malformed(format!("the payload is not simple signing: {e}")))?;
    if digests
        .iter()
        .any(|d| d.to_string() == payload.critical.image.digest)
    {
        Ok(())
    } else {
        Err(Rejection::OtherDigest(payload.critical.image.digest))
    }
}

/// Whether `payload`, signed by base64 `signature`, verifies under one of `keys` and names
/// one of `digests` (the image's manifest, or the index it was chosen from).
pub fn check(
    keys: &[PublicKey],
    payload: &[u8],
    signature: &str,
    digests: &[&Digest],
) -> Result<(), Rejection> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|e| Rejection::Malformed(format!("the signature is not base64: {e}")))?;
    if !keys.iter().any(|key| key.verifies(payload, &raw)) {
        return Err(Rejection::NoKeyVerifies);
    }
    names_image(payload, digests)
}

/// The media type of cosign's attestation layers (`cosign attest`, the `.att` tag).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The layers of `attachments` referring to one of `wanted` that carry signatures (simple
/// signing payloads with their signature, DSSE envelopes, sigstore bundles), in order, each
/// once.
fn signature_layers(
    attachments: &[crate::bundle::Attachment],
    wanted: &[&Digest],
) -> Vec<crate::manifest::Descriptor> {
    let mut out: Vec<crate::manifest::Descriptor> = Vec::new();
    let manifests = attachments
        .iter()
        .filter(|a| wanted.contains(&&a.subject))
        .flat_map(|a| &a.manifests);
    for manifest in manifests {
        let Ok(image) = serde_json::from_slice::<crate::manifest::ImageManifest>(&manifest.bytes)
        else {
            continue;
        };
        for layer in image.layers {
            let carries = (layer.media_type == SIMPLE_SIGNING
                && layer.annotations.contains_key(SIGNATURE_ANNOTATION))
                || layer.media_type == DSSE_ENVELOPE
                || sigstore::is_bundle(&layer.media_type);
            let seen = out
                .iter()
                .any(|d| d.digest == layer.digest && d.annotations == layer.annotations);
            if carries && !seen {
                out.push(layer);
            }
        }
    }
    out
}

/// The blobs a check of `attachments` for `wanted` reads: their signature layers, each once.
pub fn signature_blobs(
    attachments: &[crate::bundle::Attachment],
    wanted: &[&Digest],
) -> Vec<crate::manifest::Descriptor> {
    let mut out = signature_layers(attachments, wanted);
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| seen.insert(d.digest.clone()));
    out
}

/// What a verified layer signed.
enum Signed<'a> {
    /// A simple-signing payload.
    Payload(&'a [u8]),
    /// An in-toto statement (a DSSE envelope's payload).
    Statement(Vec<u8>),
}

/// The seconds since the epoch now: the time a keyless signature's log time must not pass.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Who signed `material` (keyless), by `trust`'s policy; `artifact` is what a message
/// signature signs.
fn check_keyless(
    trust: &Trust,
    material: &keyless::material::Material,
    artifact: Option<&keyless::verify::Artifact<'_>>,
) -> Result<(), Rejection> {
    let Some(policy) = &trust.keyless else {
        return Err(Rejection::OtherKind(format!(
            "its signature is keyless (a certificate for {}); check it with \
             --certificate-identity and --certificate-oidc-issuer",
            material
                .certificate
                .as_ref()
                .map(keyless::x509::identities)
                .unwrap_or_default()
                .first()
                .cloned()
                .unwrap_or_else(|| "no identity".to_string())
        )));
    };
    keyless::verify::verify(material, artifact, &policy.root, &policy.policy, now())
        .map(|_| ())
        .map_err(Rejection::Keyless)
}

/// Checks one signature layer (`bytes` its blob) against `trust`: who signed it, then what it
/// names.
fn check_layer(
    trust: &Trust,
    layer: &crate::manifest::Descriptor,
    bytes: &[u8],
    wanted: &[&Digest],
) -> Result<(), Rejection> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let signed = if layer.media_type == SIMPLE_SIGNING {
        let signature = layer
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
            .unwrap_or_default();
        let raw = base64
            .decode(signature.trim())
            .map_err(|e| Rejection::Malformed(format!("the signature is not base64: {e}")))?;
        let material = keyless::material::from_cosign_layer(
            keyless::material::Content::Message {
                digest: Some(keyless::sha256(bytes)),
                signature: raw.clone(),
            },
            &layer.annotations,
        )
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
        authenticate(trust, material.as_ref(), Some(bytes), |key| {
            key.verifies(bytes, &raw)
        })?;
        Signed::Payload(bytes)
    } else if layer.media_type == DSSE_ENVELOPE {
        let envelope =
            sigstore::Envelope::parse(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        envelope.require_statement()?;
        let signed = pae(&envelope.payload_type, &envelope.payload);
        let material = keyless::material::from_cosign_layer(
            keyless::material::Content::Envelope {
                payload_type: envelope.payload_type.clone(),
                payload: envelope.payload.clone(),
                // A keyless envelope has its certificate's one signature.
                signature: envelope.signatures[0].clone(),
            },
            &layer.annotations,
        )
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
        authenticate(trust, material.as_ref(), None, |key| {
            envelope.signatures.iter().any(|s| key.verifies(&signed, s))
        })?;
        Signed::Statement(envelope.payload)
    } else {
        let material = keyless::material::from_bundle(bytes)
            .map_err(|e| Rejection::Malformed(e.to_string()))?;
        match material.certificate.is_some().then_some(material) {
            Some(material) => {
                check_keyless(trust, &material, None)?;
                match material.content {
                    keyless::material::Content::Envelope {
                        payload,
                        payload_type,
                        ..
                    } => {
                        sigstore::require_statement(&payload_type)?;
                        Signed::Statement(payload)
                    }
                    keyless::material::Content::Message { .. } => {
                        return Err(Rejection::Malformed(
                            "its sigstore bundle holds a message signature, which names no \
                             image"
                                .to_string(),
                        ));
                    }
                }
            }
            None if trust.keys.is_empty() => {
                return Err(Rejection::OtherKind(
                    "its signature is by a key, not keyless; check it with --verify-key \
                     (--key for haul verify)"
                        .to_string(),
                ));
            }
            None => Signed::Statement(sigstore::open_with_keys(&trust.keys, bytes)?),
        }
    };
    match signed {
        Signed::Payload(payload) => {
            if trust.predicate_type.is_some() {
                return Err(Rejection::NotAttestation);
            }
            names_image(payload, wanted)
        }
        Signed::Statement(payload) => {
            sigstore::statement_names(&payload, wanted, trust.predicate_type.as_deref())
        }
    }
}

/// A layer's signer: one of the keys, else (when it carries a certificate) the keyless
/// policy. `verifies` checks the signature under a key.
fn authenticate(
    trust: &Trust,
    material: Option<&keyless::material::Material>,
    payload: Option<&[u8]>,
    verifies: impl Fn(&PublicKey) -> bool,
) -> Result<(), Rejection> {
    if trust.keys.iter().any(&verifies) {
        return Ok(());
    }
    match material {
        Some(material) => {
            let artifact = payload.map(keyless::verify::Artifact::Bytes);
            check_keyless(trust, material, artifact.as_ref())
        }
        None if trust.keys.is_empty() => Err(Rejection::OtherKind(
            "its signature is by a key, not keyless; check it with --verify-key (--key for \
             haul verify)"
                .to_string(),
        )),
        None => Err(Rejection::NoKeyVerifies),
    }
}

/// Whether one of `attachments` referring to one of `wanted` is a signature (or the
/// attestation asked for) that `trust` accepts, naming one of `wanted`; `blob` reads the bytes
/// of a layer ([`signature_blobs`] names them). When none is, why the last one checked did
/// not count (`None`: there was none).
pub fn check_attachments(
    trust: &Trust,
    wanted: &[&Digest],
    attachments: &[crate::bundle::Attachment],
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
) -> Result<(), Option<Rejection>> {
    let mut reason: Option<Rejection> = None;
    for layer in signature_layers(attachments, wanted) {
        let Some(bytes) = blob(&layer.digest) else {
            continue;
        };
        match check_layer(trust, &layer, &bytes, wanted) {
            Ok(()) => return Ok(()),
            // A reason about this image's own signature says more than one about another
            // kind of layer (an attestation, a key-signed one).
            Err(rejection) => {
                let weaker = matches!(
                    rejection,
                    Rejection::Attestation(_)
                        | Rejection::NotAttestation
                        | Rejection::OtherKind(_)
                        | Rejection::Malformed(_)
                );
                if reason.is_none() || !weaker {
                    reason = Some(rejection);
                }
            }
        }
    }
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};

    fn pem(der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    fn key_pair() -> (EcdsaKeyPair, PublicKey, tempfile::TempDir) {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.pub");
        std::fs::write(&path, pem(pair.public_key().as_der().unwrap().as_ref())).unwrap();
        let key = PublicKey::read(&path).unwrap();
        (pair, key, dir)
    }

    fn payload(digest: &Digest) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "registry.example.com/app"},
                "image": {"docker-manifest-digest": digest.to_string()},
                "type": "cosign container image signature"
            },
            "optional": null
        }))
        .unwrap()
    }

    fn sign(pair: &EcdsaKeyPair, message: &[u8]) -> String {
        let signature = pair.sign(&SystemRandom::new(), message).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }

    #[test]
    fn a_signature_counts_only_by_the_key_and_for_the_digest() {
        let (pair, key, _dir) = key_pair();
        let (other_pair, other_key, _other_dir) = key_pair();
        let digest = Digest::of(b"manifest");
        let body = payload(&digest);
        let good = sign(&pair, &body);
        assert_eq!(
            check(std::slice::from_ref(&key), &body, &good, &[&digest]),
            Ok(())
        );
        // Any one key of several suffices.
        let both = [other_key, key];
        assert_eq!(check(&both, &body, &good, &[&digest]), Ok(()));
        // By another key.
        let by_other = sign(&other_pair, &body);
        assert_eq!(
            check(&both[1..], &body, &by_other, &[&digest]),
            Err(Rejection::NoKeyVerifies)
        );
        // Signing another manifest.
        let elsewhere = payload(&Digest::of(b"other"));
        let signed_elsewhere = sign(&pair, &elsewhere);
        assert!(matches!(
            check(&both, &elsewhere, &signed_elsewhere, &[&digest]),
            Err(Rejection::OtherDigest(_))
        ));
        // A payload changed after signing.
        let mut changed = body.clone();
        changed[10] ^= 1;
        assert_eq!(
            check(&both, &changed, &good, &[&digest]),
            Err(Rejection::NoKeyVerifies)
        );
    }

    fn encode_back(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    }

    #[test]
    fn a_sigstore_bundle_counts_as_cosign_3_makes_it() {
        let (pair, key, _dir) = key_pair();
        let (other_pair, _other_key, _other_dir) = key_pair();
        let digest = Digest::of(b"manifest");
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let bundle = |pair: &EcdsaKeyPair, predicate: &str, named: &Digest| -> Vec<u8> {
            let payload = serde_json::to_vec(&serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": named.hex()}, "annotations": {}}],
                "predicateType": predicate,
                "predicate": {},
            }))
            .unwrap();
            let signed = sigstore::pae("application/vnd.in-toto+json", &payload);
            serde_json::to_vec(&serde_json::json!({
                "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "verificationMaterial": {"publicKey": {"hint": "x"}},
                "dsseEnvelope": {
                    "payload": encode(&payload),
                    "payloadType": "application/vnd.in-toto+json",
                    "signatures": [{"sig": sign(pair, &signed)}],
                },
            }))
            .unwrap()
        };
        let keys = std::slice::from_ref(&key);
        let good = bundle(&pair, sigstore::COSIGN_SIGN, &digest);
        assert_eq!(sigstore::check(keys, &good, &[&digest]), Ok(()));
        assert_eq!(
            sigstore::check(
                keys,
                &bundle(&other_pair, sigstore::COSIGN_SIGN, &digest),
                &[&digest]
            ),
            Err(Rejection::NoKeyVerifies)
        );
        assert!(matches!(
            sigstore::check(
                keys,
                &bundle(&pair, "https://slsa.dev/provenance/v1", &digest),
                &[&digest]
            ),
            Err(Rejection::Attestation(_))
        ));
        assert!(matches!(
            sigstore::check(
                keys,
                &bundle(&pair, sigstore::COSIGN_SIGN, &Digest::of(b"other")),
                &[&digest]
            ),
            Err(Rejection::OtherDigest(_))
        ));
        // The payload changed after signing: the PAE no longer verifies.
        let mut tampered: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let payload = tampered["dsseEnvelope"]["payload"]
            .as_str()
            .unwrap()
            .to_string();
        let mut bytes = encode_back(&payload);
        bytes.push(b' ');
        tampered["dsseEnvelope"]["payload"] = encode(&bytes).into();
        assert_eq!(
            sigstore::check(keys, &serde_json::to_vec(&tampered).unwrap(), &[&digest]),
            Err(Rejection::NoKeyVerifies)
        );
        // Another payload type: not a statement, whatever it holds.
        let mut other: serde_json::Value = serde_json::from_slice(&good).unwrap();
        other["dsseEnvelope"]["payloadType"] = "text/plain".into();
        assert!(matches!(
            sigstore::check(keys, &serde_json::to_vec(&other).unwrap(), &[&digest]),
            Err(Rejection::Malformed(m)) if m.contains("not an in-toto statement")
        ));
    }

    #[test]
    fn rsa_and_ed25519_keys_verify_too() {
        use aws_lc_rs::rsa::KeySize;
        use aws_lc_rs::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(b"manifest");
        let body = payload(&digest);
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let mut signature = vec![0u8; rsa.public_modulus_len()];
        rsa.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            &body,
            &mut signature,
        )
        .unwrap();
        let path = dir.path().join("rsa.pub");
        std::fs::write(&path, pem(rsa.public_key().as_der().unwrap().as_ref())).unwrap();
        let key = PublicKey::read(&path).unwrap();
        assert_eq!(
            check(&[key], &body, &encode(&signature), &[&digest]),
            Ok(())
        );

        let ed = Ed25519KeyPair::generate().unwrap();
        let path = dir.path().join("ed25519.pub");
        std::fs::write(&path, pem(ed.public_key().as_der().unwrap().as_ref())).unwrap();
        let key = PublicKey::read(&path).unwrap();
        let signature = ed.sign(&body);
        assert_eq!(
            check(&[key], &body, &encode(signature.as_ref()), &[&digest]),
            Ok(())
        );
    }

    #[test]
    fn a_key_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pub");
        std::fs::write(&path, "not a key").unwrap();
        let error = PublicKey::read(&path).err().unwrap();
        assert!(error.to_string().contains("key.pub"), "{error}");
    }
}

//! Public keys as sigstore names them (a trusted root's `keyDetails`) and as X.509 names them
//! (a certificate's signature algorithm and its key's curve), checked through aws-lc-rs.

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use der::Decode;
use der::asn1::ObjectIdentifier as Oid;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");

/// The kind of a public key, from its SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    P521,
    Ed25519,
    Rsa,
}

fn kind_of(spki: &[u8]) -> Option<Kind> {
    let info = SubjectPublicKeyInfoOwned::from_der(spki).ok()?;
    let algorithm = &info.algorithm;
    if algorithm.oid == ED25519 {
        return Some(Kind::Ed25519);
    }
    if algorithm.oid == RSA_ENCRYPTION {
        return Some(Kind::Rsa);
    }
    if algorithm.oid != EC_PUBLIC_KEY {
        return None;
    }
    let curve: Oid = algorithm.parameters.as_ref()?.decode_as().ok()?;
    match curve {
        c if c == P256 => Some(Kind::P256),
        c if c == P384 => Some(Kind::P384),
        c if c == P521 => Some(Kind::P521),
        _ => None,
    }
}

/// A public key (DER SubjectPublicKeyInfo) with the one algorithm it verifies under.
#[derive(Clone)]
pub struct Key {
    spki: Vec<u8>,
    algorithm: &'static dyn VerificationAlgorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("spki", &hex::encode(&self.spki))
            .finish()
    }
}

impl Key {
    /// A key as a trusted root describes it: DER SPKI and its `keyDetails`. `None` for a
    /// scheme haul does not check (it is then left out of the root, as sigstore-go does).
    pub fn from_details(spki: &[u8], details: &str) -> Option<Key> {
        let algorithm: &'static dyn VerificationAlgorithm = match details {
            "PKIX_ECDSA_P256_SHA_256" => &sig::ECDSA_P256_SHA256_ASN1,
            "PKIX_ECDSA_P384_SHA_384" => &sig::ECDSA_P384_SHA384_ASN1,
            "PKIX_ECDSA_P521_SHA_512" => &sig::ECDSA_P521_SHA512_ASN1,
            "PKIX_ED25519" => &sig::ED25519,
            "PKIX_RSA_PKCS1V15_2048_SHA256"
            | "PKIX_RSA_PKCS1V15_3072_SHA256"
            | "PKIX_RSA_PKCS1V15_4096_SHA256" => &sig::RSA_PKCS1_2048_8192_SHA256,
            "PKIX_RSA_PSS_2048_SHA256"
            | "PKIX_RSA_PSS_3072_SHA256"
            | "PKIX_RSA_PSS_4096_SHA256" => &sig::RSA_PSS_2048_8192_SHA256,
            // Older roots leave it out: the key's own kind decides, with its usual hash.
            "" | "PUBLIC_KEY_DETAILS_UNSPECIFIED" => return Key::natural(spki),
            _ => return None,
        };
        ParsedPublicKey::new(algorithm, spki).ok()?;
        Some(Key {
            spki: spki.to_vec(),
            algorithm,
        })
    }

    /// A key checked with the hash its kind is used with: P-256 with SHA-256, P-384 with
    /// SHA-384, Ed25519, RSA PKCS#1 v1.5 with SHA-256 (what a signer's certificate key signs
    /// with in sigstore).
    pub fn natural(spki: &[u8]) -> Option<Key> {
        let algorithm: &'static dyn VerificationAlgorithm = match kind_of(spki)? {
            Kind::P256 => &sig::ECDSA_P256_SHA256_ASN1,
            Kind::P384 => &sig::ECDSA_P384_SHA384_ASN1,
            Kind::P521 => &sig::ECDSA_P521_SHA512_ASN1,
            Kind::Ed25519 => &sig::ED25519,
            Kind::Rsa => &sig::RSA_PKCS1_2048_8192_SHA256,
        };
        ParsedPublicKey::new(algorithm, spki).ok()?;
        Some(Key {
            spki: spki.to_vec(),
            algorithm,
        })
    }

    /// The key of `spki` checking signatures of X.509 algorithm `signature_oid` (a
    /// certificate's, a timestamp's): the algorithm must suit the key.
    pub fn for_x509(spki: &[u8], signature_oid: &Oid) -> Option<Key> {
        let kind = kind_of(spki)?;
        let algorithm: &'static dyn VerificationAlgorithm = match (kind, *signature_oid) {
            (Kind::P256, o) if o == ECDSA_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
            (Kind::P256, o) if o == ECDSA_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
            (Kind::P384, o) if o == ECDSA_SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
            (Kind::P384, o) if o == ECDSA_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
            (Kind::P521, o) if o == ECDSA_SHA512 => &sig::ECDSA_P521_SHA512_ASN1,
            (Kind::Ed25519, o) if o == ED25519 => &sig::ED25519,
            (Kind::Rsa, o) if o == RSA_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            (Kind::Rsa, o) if o == RSA_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            (Kind::Rsa, o) if o == RSA_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            _ => return None,
        };
        ParsedPublicKey::new(algorithm, spki).ok()?;
        Some(Key {
            spki: spki.to_vec(),
            algorithm,
        })
    }

    /// An ECDSA key checking signatures over SHA-256 whatever its curve (Rekor's signed entry
    /// timestamps).
    pub fn ecdsa_sha256(spki: &[u8]) -> Option<Key> {
        let algorithm: &'static dyn VerificationAlgorithm = match kind_of(spki)? {
            Kind::P256 => &sig::ECDSA_P256_SHA256_ASN1,
            Kind::P384 => &sig::ECDSA_P384_SHA256_ASN1,
            _ => return None,
        };
        ParsedPublicKey::new(algorithm, spki).ok()?;
        Some(Key {
            spki: spki.to_vec(),
            algorithm,
        })
    }

    /// The key's DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER SPKI: how sigstore names a log by its key.
    pub fn id(&self) -> [u8; 32] {
        super::sha256(&self.spki)
    }

    pub fn is_ed25519(&self) -> bool {
        kind_of(&self.spki) == Some(Kind::Ed25519)
    }

    /// Whether `signature` signs a message whose SHA-256 is `digest` (a file hashed as it
    /// streamed by, or one known only by its digest). ECDSA and RSA only: Ed25519 signs the
    /// message itself.
    pub fn verifies_sha256(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(digest) =
            aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
        else {
            return false;
        };
        ParsedPublicKey::new(self.algorithm, &self.spki)
            .is_ok_and(|key| key.verify_digest_sig(&digest, signature).is_ok())
    }

    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ParsedPublicKey::new(self.algorithm, &self.spki)
            .is_ok_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

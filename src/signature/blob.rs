//! A file's sigstore bundle checked offline, as `cosign verify-blob` checks it (`haul
//! verify-blob`): by a key, or keylessly (who signed, vouched for by whom, against a trusted
//! root). The file is hashed as it streams by, never held; `sha256:<hex>` stands for a file
//! not at hand. A DSSE envelope signs a statement: it must name the file, and be of the type
//! asked for.

use std::io::Read;
use std::path::{Path, PathBuf};

use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;

use super::Rejection;
use super::keyless::keys::Key;
use super::keyless::material::{self, Content, Material, MaterialError};
use super::keyless::trust::TrustedRoot;
use super::keyless::verify::{self, Artifact, Policy, Refusal, Signer};
use crate::digest::Digest;

/// Why a file did not pass its bundle, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the key {}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{text} is not a SHA-256 digest (sha256: and 64 hex digits)")]
    NotADigest { text: String },
    #[error("{} is not a public key in PEM (-----BEGIN PUBLIC KEY-----)", path.display())]
    NotAPemKey { path: PathBuf },
    #[error(
        "the key in {} is not ECDSA, Ed25519 or RSA, the kinds haul checks",
        path.display()
    )]
    UnsupportedKey { path: PathBuf },
    #[error("{bundle}: {source}")]
    Material {
        bundle: String,
        #[source]
        source: MaterialError,
    },
    #[error("{file} does not pass {bundle}: {source}")]
    Refused {
        file: String,
        bundle: String,
        #[source]
        source: Refusal,
    },
    #[error("{file} does not pass {bundle}: {reason}")]
    Statement {
        file: String,
        bundle: String,
        reason: Rejection,
    },
    #[error(
        "{file} does not pass {bundle}: it is a signature, not an attestation of the type asked \
         for"
    )]
    NotAnAttestation { file: String, bundle: String },
}

/// Who must have signed.
pub enum Signers<'a> {
    Key { path: &'a Path, key: &'a Key },
    Keyless(&'a Policy),
}

/// Who did, when the file passed.
pub enum Signed {
    /// By the key, at the time the log gives (if it gives one).
    Key {
        path: PathBuf,
        logged: Option<i64>,
    },
    Keyless(Signer),
}

/// A file (`file` as the user named it, hashed to `digest`) and its bundle, to check.
pub struct BlobCheck<'a> {
    pub file: &'a str,
    pub digest: &'a Digest,
    /// The bundle's name for messages, and what it holds (see [`read_material`]).
    pub bundle: &'a str,
    pub material: &'a Material,
    pub root: &'a TrustedRoot,
    /// `--predicate-type`: an attestation of this type is asked for.
    pub predicate_type: Option<&'a str>,
}

impl BlobCheck<'_> {
    /// Checks the bundle against `signers` at `now` (Unix seconds).
    pub fn verify(&self, signers: &Signers<'_>, now: i64) -> Result<Signed, BlobError> {
        let material = self.material;
        let artifact = Artifact::Sha256(
            hex::decode(self.digest.hex())
                .ok()
                .and_then(|d| d.try_into().ok())
                .expect("a SHA-256 digest"),
        );
        let refused = |source| BlobError::Refused {
            file: self.file.to_string(),
            bundle: self.bundle.to_string(),
            source,
        };
        let signed = match signers {
            Signers::Key { path, key } => Signed::Key {
                path: path.to_path_buf(),
                logged: verify::verify_with_key(material, key, Some(&artifact), self.root, now)
                    .map_err(refused)?,
            },
            Signers::Keyless(policy) => Signed::Keyless(
                verify::verify(material, Some(&artifact), self.root, policy, now)
                    .map_err(refused)?,
            ),
        };
        match &material.content {
            Content::Envelope { payload, .. } => {
                let own = statement_type(payload);
                let predicate = self.predicate_type.unwrap_or(&own);
                super::sigstore::statement_names(payload, &[self.digest], Some(predicate))
                    .map_err(|reason| BlobError::Statement {
                        file: self.file.to_string(),
                        bundle: self.bundle.to_string(),
                        reason,
                    })?;
            }
            Content::Message { .. } if self.predicate_type.is_some() => {
                return Err(BlobError::NotAnAttestation {
                    file: self.file.to_string(),
                    bundle: self.bundle.to_string(),
                });
            }
            Content::Message { .. } => {}
        }
        Ok(signed)
    }
}

/// What the bundle `bundle` (its name for messages) holds, from its bytes: read before the
/// file is hashed, so that a bad bundle is refused at once.
pub fn read_material(bundle: &str, bytes: &[u8]) -> Result<Material, BlobError> {
    material::from_bundle(bytes).map_err(|source| BlobError::Material {
        bundle: bundle.to_string(),
        source,
    })
}

/// The statement's own predicate type: without --predicate-type any type is accepted.
fn statement_type(payload: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    value["predicateType"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The SHA-256 of `file`, streamed, or the digest `sha256:<hex>` gives.
pub fn file_digest(file: &str) -> Result<Digest, BlobError> {
    if let Some(hex) = file.strip_prefix("sha256:")
        && !Path::new(file).exists()
    {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::NotADigest {
                text: file.to_string(),
            });
        }
        return Ok(format!("sha256:{}", hex.to_ascii_lowercase())
            .parse()
            .expect("a well-formed digest"));
    }
    let read_error = |source| BlobError::Read {
        path: PathBuf::from(file),
        source,
    };
    let mut reader = std::fs::File::open(file).map_err(read_error)?;
    let mut verifier = crate::digest::Verifier::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = reader.read(&mut buffer).map_err(read_error)?;
        if read == 0 {
            break;
        }
        verifier.update(&buffer[..read]);
    }
    Ok(verifier.finish())
}

/// A PEM public key (as cosign.pub), for a bundle signed with a key.
pub fn read_key(path: &Path) -> Result<Key, BlobError> {
    let pem = std::fs::read(path).map_err(|source| BlobError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| BlobError::NotAPemKey {
        path: path.to_path_buf(),
    })?;
    Key::natural(der.as_ref()).ok_or_else(|| BlobError::UnsupportedKey {
        path: path.to_path_buf(),
    })
}

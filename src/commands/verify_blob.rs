//! `haul verify-blob FILE --bundle B`: a file's sigstore bundle checked offline, as `cosign
//! verify-blob` checks it: keyless (an identity, its issuer, a trusted root) or by a key. The
//! file is hashed as it streams by, never held; `sha256:<hex>` stands for a file not at hand.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;

use crate::cli::VerifyBlobArgs;
use crate::digest::Digest;
use crate::signature::keyless::material::{self, Content};
use crate::signature::keyless::trust::TrustedRoot;
use crate::signature::keyless::verify::{self, Artifact};
use crate::signature::keyless::{keys::Key, show_time};

pub fn run(args: &VerifyBlobArgs, quiet: bool) -> anyhow::Result<()> {
    let key = args.key.as_deref().map(read_key).transpose()?;
    let policy = crate::signature::policy::keyless_policy(
        &super::keyless_options(&args.keyless),
        key.is_some(),
        false,
    )?;
    if key.is_none() && policy.is_none() {
        bail!(
            "say who must have signed {}: --certificate-identity with --certificate-oidc-issuer \
             (or their -regexp forms), or --key",
            args.file
        );
    }
    let root = match &args.keyless.trusted_root {
        Some(path) => TrustedRoot::read(path)?,
        None => TrustedRoot::public_good(),
    };
    let bundle_name = args.bundle.display().to_string();
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read the bundle {bundle_name}"))?;
    let material =
        material::from_bundle(&bytes).map_err(|e| anyhow::anyhow!("{bundle_name}: {e}"))?;
    let digest = file_digest(&args.file)?;
    let artifact = Artifact::Sha256(
        hex::decode(digest.hex())
            .ok()
            .and_then(|d| d.try_into().ok())
            .expect("a SHA-256 digest"),
    );
    let refused = |why: &dyn std::fmt::Display| {
        anyhow::anyhow!("{} does not pass {bundle_name}: {why}", args.file)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    let said = match (&key, &policy) {
        (Some((path, key)), _) => {
            let time = verify::verify_with_key(&material, key, Some(&artifact), &root, now)
                .map_err(|e| refused(&e))?;
            format!(
                "by the key {}{}",
                path.display(),
                time.map(|t| format!(", logged {}", show_time(t)))
                    .unwrap_or_default()
            )
        }
        (None, Some(policy)) => {
            let signer = verify::verify(&material, Some(&artifact), &root, policy, now)
                .map_err(|e| refused(&e))?;
            format!(
                "by {} (issuer {}), at {}",
                signer.identity,
                signer.issuer,
                show_time(signer.time)
            )
        }
        (None, None) => unreachable!("checked above"),
    };
    // A DSSE envelope signs a statement: it must name this file, and be of the type asked.
    match &material.content {
        Content::Envelope { payload, .. } => {
            let own = statement_type(payload);
            let predicate = args.keyless.predicate_type.as_deref().unwrap_or(&own);
            crate::signature::sigstore::statement_names(payload, &[&digest], Some(predicate))
                .map_err(|r| refused(&r))?;
        }
        Content::Message { .. } if args.keyless.predicate_type.is_some() => {
            return Err(refused(
                &"it is a signature, not an attestation of the type asked for",
            ));
        }
        Content::Message { .. } => {}
    }
    if !quiet {
        println!("ok: {} is signed {said}", args.file);
    }
    Ok(())
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
fn file_digest(file: &str) -> anyhow::Result<Digest> {
    if let Some(hex) = file.strip_prefix("sha256:")
        && !Path::new(file).exists()
    {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{file} is not a SHA-256 digest (sha256: and 64 hex digits)");
        }
        return Ok(format!("sha256:{}", hex.to_ascii_lowercase())
            .parse()
            .expect("a well-formed digest"));
    }
    let mut reader = std::fs::File::open(file).with_context(|| format!("cannot read {file}"))?;
    let mut verifier = crate::digest::Verifier::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = reader
            .read(&mut buffer)
            .with_context(|| format!("cannot read {file}"))?;
        if read == 0 {
            break;
        }
        verifier.update(&buffer[..read]);
    }
    Ok(verifier.finish())
}

/// A PEM public key (as cosign.pub), for a bundle signed with a key.
fn read_key(path: &Path) -> anyhow::Result<(std::path::PathBuf, Key)> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read the key {}", path.display()))?;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a public key in PEM (-----BEGIN PUBLIC KEY-----)",
            path.display()
        )
    })?;
    let key = Key::natural(der.as_ref()).ok_or_else(|| {
        anyhow::anyhow!(
            "the key in {} is not ECDSA, Ed25519 or RSA, the kinds haul checks",
            path.display()
        )
    })?;
    Ok((path.to_path_buf(), key))
}

//! `haul verify-blob FILE --bundle B`: a file's sigstore bundle checked offline, as `cosign
//! verify-blob` checks it (see [`crate::signature::blob`]).

use anyhow::{Context, bail};

use crate::cli::VerifyBlobArgs;
use crate::signature::blob::{BlobCheck, Signed, Signers, file_digest, read_key, read_material};
use crate::signature::keyless::show_time;
use crate::signature::keyless::trust::TrustedRoot;

pub fn run(args: &VerifyBlobArgs, quiet: bool) -> anyhow::Result<()> {
    let key = args.key.as_deref().map(read_key).transpose()?;
    let policy = crate::signature::policy::keyless_policy(
        &super::keyless_options(&args.keyless),
        key.is_some(),
        false,
    )?;
    let signers = match (&args.key, &key, &policy) {
        (Some(path), Some(key), _) => Signers::Key { path, key },
        (_, _, Some(policy)) => Signers::Keyless(policy),
        _ => bail!(
            "say who must have signed {}: --certificate-identity with --certificate-oidc-issuer \
             (or their -regexp forms), or --key",
            args.file
        ),
    };
    let root = match &args.keyless.trusted_root {
        Some(path) => TrustedRoot::read(path)?,
        None => TrustedRoot::public_good(),
    };
    let bundle = args.bundle.display().to_string();
    let bundle_bytes =
        std::fs::read(&args.bundle).with_context(|| format!("cannot read the bundle {bundle}"))?;
    let material = read_material(&bundle, &bundle_bytes)?;
    let digest = file_digest(&args.file)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let check = BlobCheck {
        file: &args.file,
        digest: &digest,
        bundle: &bundle,
        material: &material,
        root: &root,
        predicate_type: args.keyless.predicate_type.as_deref(),
    };
    let said = match check.verify(&signers, now)? {
        Signed::Key { path, logged } => format!(
            "by the key {}{}",
            path.display(),
            logged
                .map(|t| format!(", logged {}", show_time(t)))
                .unwrap_or_default()
        ),
        Signed::Keyless(signer) => format!(
            "by {} (issuer {}), at {}",
            signer.identity,
            signer.issuer,
            show_time(signer.time)
        ),
    };
    if !quiet {
        println!("ok: {} is signed {said}", args.file);
    }
    Ok(())
}

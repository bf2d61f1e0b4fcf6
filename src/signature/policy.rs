//! The trust a user asks for, built from plain values (what the options gave): the keys, the
//! keyless identity and issuer, the trusted root they are checked against, the predicate type
//! demanded; and which trusted root a tar may bring. Checked as options first (a pattern that
//! does not compile, an identity without its issuer, a root with nothing to check), so a
//! mistake is refused before anything is read or downloaded.

use std::path::PathBuf;

use super::keyless::trust::{PUBLIC_GOOD, TrustError, TrustedRoot};
use super::keyless::verify::{Matcher, Policy};
use super::{Keyless, PublicKey, Trust};
use crate::digest::Digest;

/// The keyless options, as given (cosign's names).
#[derive(Clone, Debug, Default)]
pub struct KeylessOptions {
    pub identity: Option<String>,
    pub identity_regexp: Option<String>,
    pub issuer: Option<String>,
    pub issuer_regexp: Option<String>,
    pub trusted_root: Option<PathBuf>,
    pub predicate_type: Option<String>,
}

/// Options that cannot make a trust, or a root that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("--{flag}-regexp {pattern:?} is not a regular expression: {detail}")]
    Pattern {
        flag: &'static str,
        pattern: String,
        detail: String,
    },
    #[error(
        "--certificate-identity needs --certificate-oidc-issuer (or -regexp): an identity means \
         something only with the issuer that vouched for it"
    )]
    IdentityWithoutIssuer,
    #[error("--certificate-oidc-issuer needs --certificate-identity (or -regexp): who signed")]
    IssuerWithoutIdentity,
    #[error(
        "--predicate-type needs a signer: --verify-key (--key), or --certificate-identity with \
         --certificate-oidc-issuer"
    )]
    PredicateWithoutSigner,
    #[error(
        "--trusted-root checks keyless signatures: give --certificate-identity and \
         --certificate-oidc-issuer too (an export carries it with --referrers)"
    )]
    RootWithoutIdentity,
    #[error(transparent)]
    Root(#[from] TrustError),
    #[error(
        "{name} carries a trusted root whose SHA-256 is {digest}, not {pin}: it is not the root \
         that was pinned; nothing was checked against it"
    )]
    CarriedRootNotPinned {
        name: String,
        digest: Digest,
        pin: Digest,
    },
    #[error(
        "--trusted-root-digest: {name} carries no trusted root (export it with --referrers \
         --trusted-root FILE, or give --trusted-root FILE here)"
    )]
    NoCarriedRoot { name: String },
    #[error(
        "{name} carries a trusted root (sha256 {digest}), but a root carried beside the images it \
         vouches for proves nothing by itself: pin it with --trusted-root-digest {digest} (the \
         export printed it), or give --trusted-root FILE"
    )]
    CarriedRootUnpinned { name: String, digest: Digest },
}

/// The identity policy the options give, or None when they name no identity.
/// `keys_given`: keys check signatures too. `root_travels`: an export with `--referrers`
/// carries `--trusted-root` even when nothing is checked on the way.
pub fn keyless_policy(
    options: &KeylessOptions,
    keys_given: bool,
    root_travels: bool,
) -> Result<Option<Policy>, PolicyError> {
    let matcher = |exact: &Option<String>, pattern: &Option<String>, flag: &'static str| {
        Ok::<_, PolicyError>(match (exact, pattern) {
            (Some(exact), _) => Some(Matcher::Exact(exact.clone())),
            (None, Some(pattern)) => Some(Matcher::Pattern(regex::Regex::new(pattern).map_err(
                |e| PolicyError::Pattern {
                    flag,
                    pattern: pattern.clone(),
                    detail: e.to_string(),
                },
            )?)),
            (None, None) => None,
        })
    };
    let identity = matcher(
        &options.identity,
        &options.identity_regexp,
        "certificate-identity",
    )?;
    let issuer = matcher(
        &options.issuer,
        &options.issuer_regexp,
        "certificate-oidc-issuer",
    )?;
    let policy = match (identity, issuer) {
        (Some(identity), Some(issuer)) => Some(Policy { identity, issuer }),
        (None, None) => None,
        (Some(_), None) => return Err(PolicyError::IdentityWithoutIssuer),
        (None, Some(_)) => return Err(PolicyError::IssuerWithoutIdentity),
    };
    if policy.is_none() && !keys_given {
        if options.predicate_type.is_some() {
            return Err(PolicyError::PredicateWithoutSigner);
        }
        if options.trusted_root.is_some() && !root_travels {
            return Err(PolicyError::RootWithoutIdentity);
        }
    }
    Ok(policy)
}

/// Checks the options before anything is read: the policy, and the root file it would use.
pub fn check_options(options: &KeylessOptions, keys_given: bool) -> Result<(), PolicyError> {
    if keyless_policy(options, keys_given, false)?.is_some()
        && let Some(path) = &options.trusted_root
    {
        TrustedRoot::read(path)?;
    }
    Ok(())
}

/// The trust `keys` and `options` describe. `carried` is the trusted root a tar brings, used
/// when `--trusted-root` is not given (else sigstore's public-good root).
pub fn trust(
    keys: Vec<PublicKey>,
    options: &KeylessOptions,
    carried: Option<&[u8]>,
    root_travels: bool,
) -> Result<Trust, PolicyError> {
    let policy = keyless_policy(options, !keys.is_empty(), root_travels)?;
    let keyless = match policy {
        None => None,
        Some(policy) => {
            let root = match (&options.trusted_root, carried) {
                (Some(path), _) => TrustedRoot::read(path)?,
                (None, Some(bytes)) => TrustedRoot::parse(bytes, "the tar's trusted root")?,
                (None, None) => TrustedRoot::public_good(),
            };
            Some(Keyless { root, policy })
        }
    };
    Ok(Trust {
        keys,
        keyless,
        predicate_type: options.predicate_type.clone(),
    })
}

/// The trusted root a tar (called `name`) carries, when it may be used: pinned by `pin`
/// (`--trusted-root-digest`), or the public-good one haul ships. One the tar brings unpinned
/// is refused when it would decide (`keyless` checks without `--trusted-root`): whoever could
/// change the images could change it too.
pub fn carried_root<'b>(
    name: &str,
    carried: Option<&'b [u8]>,
    pin: Option<&Digest>,
    options: &KeylessOptions,
) -> Result<Option<&'b [u8]>, PolicyError> {
    let keyless = options.identity.is_some() || options.identity_regexp.is_some();
    match (carried, pin) {
        (Some(bytes), Some(pin)) => {
            let digest = Digest::of(bytes);
            if digest != *pin {
                return Err(PolicyError::CarriedRootNotPinned {
                    name: name.to_string(),
                    digest,
                    pin: pin.clone(),
                });
            }
            Ok(Some(bytes))
        }
        (None, Some(_)) => Err(PolicyError::NoCarriedRoot {
            name: name.to_string(),
        }),
        (Some(bytes), None) if bytes == PUBLIC_GOOD => Ok(Some(bytes)),
        (Some(bytes), None) if keyless && options.trusted_root.is_none() => {
            Err(PolicyError::CarriedRootUnpinned {
                name: name.to_string(),
                digest: Digest::of(bytes),
            })
        }
        _ => Ok(None),
    }
}

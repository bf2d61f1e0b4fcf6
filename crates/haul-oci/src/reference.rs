//! Image references, parsed as docker parses them (distribution's reference grammar):
//! `busybox` is `docker.io/library/busybox:latest`; `host:5000/a/b:tag`, `name@sha256:<hex>`
//! and `name:tag@sha256:<hex>` keep what they say. A reference with both a tag and a digest is
//! pulled by digest; the tag only names the image in the tar.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry docker means when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`.
    registry: String,
    /// `library/busybox`, `a/b`.
    repository: String,
    /// Absent only when the reference names a digest and no tag.
    tag: Option<String>,
    digest: Option<Digest>,
}

/// What a manifest is asked for by, in a repository: `manifests/<tag>` or
/// `manifests/<digest>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    Tag(String),
    Digest(Digest),
}

impl Identifier {
    /// What joins it to a repository's name: `name:tag`, `name@digest`.
    pub fn separator(&self) -> char {
        match self {
            Identifier::Tag(_) => ':',
            Identifier::Digest(_) => '@',
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Tag(tag) => f.write_str(tag),
            Identifier::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// What is wrong with a reference, in words a user can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    input: String,
    reason: String,
}

fn invalid(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// The registry host (with port) as the user means it: `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host the registry API answers on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn identifier(&self) -> Identifier {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => Identifier::Digest(digest.clone()),
            (None, Some(tag)) => Identifier::Tag(tag.clone()),
            (None, None) => Identifier::Tag(DEFAULT_TAG.to_string()),
        }
    }

    /// `registry/repository`, fully qualified.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name docker shows: Docker Hub's registry and `library/` are dropped
    /// (`busybox`, `user/app`); other registries keep their host (`ghcr.io/a/b`).
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.full_name()
        }
    }

    /// The `RepoTags` entry docker writes for this image (`busybox:latest`), if it has a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{}", self.familiar_name(), tag))
    }

    /// `registry/repository:tag` (or `@digest` when untagged): the full name containerd uses.
    pub fn full_tagged(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => format!("{}:{}", self.full_name(), tag),
            (None, Some(digest)) => format!("{}@{}", self.full_name(), digest),
            (None, None) => format!("{}:{}", self.full_name(), DEFAULT_TAG),
        }
    }

    /// This reference pinned to `digest` (keeping its tag for naming).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// Whether `registry` (`host` or `host:port`) is on this machine: `localhost`, `127.0.0.0/8`
/// or `[::1]`.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_without_port(registry);
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` → `host`; `[::1]:5000` → `[::1]`.
pub fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(invalid(input, "it is empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(input, "it contains whitespace"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|e| invalid(input, e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        // A tag follows the last ':' after the last '/'; a ':' before it belongs to a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(input, tag)?;
        }

        let (registry, repository) = split_registry(name);
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry.to_string()
        };
        validate_registry(input, &registry)?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        validate_repository(input, &repository)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                input,
                format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// docker's rule: the first component is a registry if it has a `.` or `:`, or is `localhost`.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(invalid(
            input,
            format!(
                "tag {tag:?} must be 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            ),
        ));
    }
    Ok(())
}

fn validate_registry(input: &str, registry: &str) -> Result<(), ReferenceError> {
    let (host, port) = if let Some(end) = registry.strip_prefix('[').and_then(|r| r.find(']')) {
        let host = &registry[1..=end];
        let after = &registry[end + 2..];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(
                input,
                format!("registry {registry:?} is not a valid IPv6 address"),
            ));
        }
        (None, after.strip_prefix(':'))
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(invalid(
                input,
                format!("registry host {host:?} is not a valid host name"),
            ));
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(invalid(
            input,
            format!("registry port {port:?} is not a number from 0 to 65535"),
        ));
    }
    Ok(())
}

/// Components are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn validate_repository(input: &str, repository: &str) -> Result<(), ReferenceError> {
    for component in repository.split('/') {
        if !valid_component(component) {
            let why = if component.chars().any(|c| c.is_ascii_uppercase()) {
                "repository names must be lowercase".to_string()
            } else if component.is_empty() {
                "the repository name has an empty path component".to_string()
            } else {
                format!(
                    "repository component {component:?} may hold only lowercase letters, digits and single separators ('.', '_', '__', '-')"
                )
            };
            return Err(invalid(input, why));
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-'.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= bytes.len() || !alnum(bytes[i]) {
            return false;
        }
    }
    true
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = parse("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar_tagged().unwrap(), "busybox:latest");
        assert_eq!(parse("user/app:1").to_string(), "docker.io/user/app:1");
        assert_eq!(parse("user/app:1").familiar_tagged().unwrap(), "user/app:1");
        assert_eq!(
            parse("index.docker.io/library/nginx:1.27")
                .familiar_tagged()
                .unwrap(),
            "nginx:1.27"
        );
    }

    #[test]
    fn registries_ports_tags_digests() {
        let r = parse("host:5000/a/b:tag");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("host:5000", "a/b", Some("tag"))
        );
        assert_eq!(r.familiar_tagged().unwrap(), "host:5000/a/b:tag");
        let r = parse("host:5000/a/b");
        assert_eq!(r.tag(), Some("latest"));
        let r = parse(&format!("busybox@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.identifier().to_string(), format!("sha256:{HEX}"));
        assert_eq!(r.familiar_tagged(), None);
        let r = parse(&format!("busybox:1.36@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.identifier().to_string(), format!("sha256:{HEX}"));
        let r = parse("localhost/app");
        assert_eq!(r.registry(), "localhost");
        assert!(is_loopback(r.registry()));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert_eq!(parse("ghcr.io/a/b-c__d.e").repository(), "a/b-c__d.e");
    }

    #[test]
    fn round_trips() {
        for s in [
            "docker.io/library/busybox:latest",
            "127.0.0.1:5000/test/busybox:v1",
            &format!("ghcr.io/a/b:t@sha256:{HEX}"),
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        for (bad, why) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:.x", "tag"),
            ("busybox:a/b", "port"),
            ("a//b", "empty path component"),
            ("a/b/", "empty path component"),
            ("bad name", "whitespace"),
            ("busybox@sha256:abc", "invalid digest"),
            ("busybox@md5:abc", "invalid digest"),
            ("host:99999/a", "port"),
            ("-a/b", "repository component"),
            ("a..b/c", "host"),
            ("a/b:../../etc", "repository component"),
        ] {
            let err = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains("invalid reference"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err} (expected {why})");
        }
        assert!(
            format!("a:{}", "x".repeat(129))
                .parse::<Reference>()
                .is_err()
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No input makes the parser panic, and whatever it accepts round-trips.
        #[test]
        fn never_panics_and_round_trips(input in "\\PC{0,80}") {
            if let Ok(reference) = input.parse::<Reference>() {
                let again: Reference = reference.to_string().parse().unwrap();
                prop_assert_eq!(again, reference);
            }
        }

        /// Inputs built from the grammar's own alphabet, where acceptance is likely.
        #[test]
        fn grammar_like_inputs(input in "([a-z0-9.:-]{1,12}/)?[a-z0-9._-]{1,20}(/[a-z0-9_-]{1,8})?(:[A-Za-z0-9_.-]{1,10})?(@sha256:[0-9a-f]{64})?") {
            if let Ok(reference) = input.parse::<Reference>() {
                prop_assert!(!reference.repository().is_empty());
                let again: Reference = reference.to_string().parse().unwrap();
                prop_assert_eq!(again, reference);
            }
        }
    }
}

//! Where an image's content is fetched from: the registry's mirrors, in order, then the
//! registry itself; and over which transport (verified HTTPS, unverified HTTPS, plain HTTP).
//! Names never change: a mirror only decides where bytes come from, so the tar still says
//! `nginx:1.27` when they came from `mirror.example.com/prefix/docker.io/library/nginx`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub use haul_oci::reference::is_loopback;
use haul_oci::reference::{DOCKER_HUB, Reference, host_without_port};

/// How a request reaches a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTPS; `verify: false` accepts any certificate (`--insecure-registry`).
    Https {
        verify: bool,
    },
    Http,
}

impl Transport {
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Https { .. } => "https",
            Transport::Http => "http",
        }
    }

    /// Its name where it is remembered between runs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Https { verify: true } => "https",
            Transport::Https { verify: false } => "https-unverified",
            Transport::Http => "http",
        }
    }

    pub fn from_name(name: &str) -> Option<Transport> {
        match name {
            "https" => Some(Transport::Https { verify: true }),
            "https-unverified" => Some(Transport::Https { verify: false }),
            "http" => Some(Transport::Http),
            _ => None,
        }
    }
}

/// The scheme written in front of a mirror, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A mirror of one registry: `[SCHEME://]HOST[:PORT][/PREFIX]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub scheme: Option<Scheme>,
    /// `host` or `host:port`.
    pub host: String,
    /// The path the mirror re-hosts the registry's repositories under (`prefix/docker.io`),
    /// or empty.
    pub prefix: String,
}

/// Why a text is not a mirror.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    #[error("mirror {input:?}: only http:// and https:// are supported")]
    UnsupportedScheme { input: String },
    #[error(
        "mirror {input:?}: expected [http://|https://]HOST[:PORT][/PREFIX], \
         e.g. mirror.example.com or registry.example.com/prefix/docker.io"
    )]
    InvalidHost { input: String },
    #[error(
        "mirror {input:?}: the path {prefix:?} is not a valid repository prefix \
         (lowercase letters, digits, '.', '_', '-', separated by '/')"
    )]
    InvalidPrefix { input: String, prefix: String },
}

impl FromStr for Mirror {
    type Err = MirrorError;

    fn from_str(input: &str) -> Result<Mirror, MirrorError> {
        let (scheme, rest) = if let Some(rest) = input.strip_prefix("https://") {
            (Some(Scheme::Https), rest)
        } else if let Some(rest) = input.strip_prefix("http://") {
            (Some(Scheme::Http), rest)
        } else if input.contains("://") {
            return Err(MirrorError::UnsupportedScheme {
                input: input.to_string(),
            });
        } else {
            (None, input)
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // A pasted API URL (`https://mirror/v2/`) means the mirror's root.
        let prefix = prefix
            .strip_prefix("v2")
            .map_or(prefix, |p| p.trim_start_matches('/'));
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c));
        if !valid_host {
            return Err(MirrorError::InvalidHost {
                input: input.to_string(),
            });
        }
        let valid_prefix = prefix.split('/').all(|part| {
            prefix.is_empty()
                || (!part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
        });
        if !valid_prefix {
            return Err(MirrorError::InvalidPrefix {
                input: input.to_string(),
                prefix: prefix.to_string(),
            });
        }
        Ok(Mirror {
            scheme,
            host: host.to_ascii_lowercase(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Some(Scheme::Http) => write!(f, "http://")?,
            Some(Scheme::Https) => write!(f, "https://")?,
            None => {}
        }
        write!(f, "{}", self.host)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Why a `--mirror` value is not `REGISTRY=MIRROR`. Clap prints only this error's own text,
/// so the wrapped errors give theirs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MirrorFlagError {
    #[error("{input:?}: expected REGISTRY=MIRROR, e.g. docker.io=https://mirror.example.com")]
    MissingEquals { input: String },
    #[error(transparent)]
    Registry(#[from] RegistryNameError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// `REGISTRY=MIRROR`, as `--mirror` takes it.
pub fn parse_mirror_flag(input: &str) -> Result<(String, Mirror), MirrorFlagError> {
    let (registry, mirror) =
        input
            .split_once('=')
            .ok_or_else(|| MirrorFlagError::MissingEquals {
                input: input.to_string(),
            })?;
    let registry = normalize_registry(registry)?;
    Ok((registry, mirror.parse()?))
}

/// A registry name that is not a host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a registry name; expected a host like docker.io or ghcr.io")]
pub struct RegistryNameError {
    /// As normalized: lowercase, without scheme or trailing '/'.
    pub name: String,
}

/// The registry name references use: Docker Hub's aliases become `docker.io`.
pub fn normalize_registry(name: &str) -> Result<String, RegistryNameError> {
    let name = name.trim().trim_end_matches('/').to_ascii_lowercase();
    let name = name
        .strip_prefix("https://")
        .or_else(|| name.strip_prefix("http://"))
        .unwrap_or(&name)
        .to_string();
    if name.is_empty() || name.contains('/') {
        return Err(RegistryNameError { name });
    }
    Ok(match name.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => name,
    })
}

/// One place to fetch a repository's content from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Names the endpoint in messages and finds its credentials (`docker.io`, a mirror's host).
    pub registry: String,
    /// The `host[:port]` requests go to (`registry-1.docker.io` for Docker Hub).
    pub host: String,
    /// The repository's path on that host.
    pub repository: String,
    /// What to try, in order, until the host's transport is known.
    pub transports: Vec<Transport>,
    pub is_mirror: bool,
}

impl Endpoint {
    /// `https://host/v2/repository/<suffix>` over `transport`.
    pub fn url(&self, transport: Transport, suffix: &str) -> String {
        format!(
            "{}://{}/v2/{}/{suffix}",
            transport.scheme(),
            self.host,
            self.repository
        )
    }
}

/// Mirrors per registry and the hosts allowed to skip TLS verification.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Registry (`docker.io`) → its mirrors, tried in this order before it.
    pub mirrors: HashMap<String, Vec<Mirror>>,
    /// Hosts (`host` or `host:port`) spoken to over unverified HTTPS or plain HTTP.
    pub insecure_registries: Vec<String>,
}

impl Routes {
    /// Where to fetch `reference`'s content from: its registry's mirrors, then the registry.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mut endpoints: Vec<Endpoint> = self
            .mirrors
            .get(reference.registry())
            .into_iter()
            .flatten()
            .map(|mirror| Endpoint {
                registry: mirror.host.clone(),
                host: mirror.host.clone(),
                repository: if mirror.prefix.is_empty() {
                    reference.repository().to_string()
                } else {
                    format!("{}/{}", mirror.prefix, reference.repository())
                },
                transports: self.transports(&mirror.host, mirror.scheme),
                is_mirror: true,
            })
            .collect();
        endpoints.push(Endpoint {
            registry: reference.registry().to_string(),
            host: reference.api_host().to_string(),
            repository: reference.repository().to_string(),
            transports: self.transports(reference.registry(), None),
            is_mirror: false,
        });
        endpoints
    }

    /// Whether `host` (`host` or `host:port`) was listed with `--insecure-registry`.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure_registries.iter().any(|h| {
            h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(host_without_port(host))
        })
    }

    /// As docker and go-containerregistry do: HTTPS, verified; an insecure host also accepts
    /// any certificate and falls back to plain HTTP; a loopback host falls back to plain HTTP.
    fn transports(&self, host: &str, scheme: Option<Scheme>) -> Vec<Transport> {
        let verify = !self.is_insecure(host);
        match scheme {
            Some(Scheme::Http) => vec![Transport::Http],
            Some(Scheme::Https) => vec![Transport::Https { verify }],
            None if !verify || is_loopback(host) => {
                vec![Transport::Https { verify }, Transport::Http]
            }
            None => vec![Transport::Https { verify }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn parses_mirrors() {
        let (registry, mirror) =
            parse_mirror_flag("docker.io=https://mirror.example.com/").unwrap();
        assert_eq!(registry, "docker.io");
        assert_eq!(
            mirror,
            Mirror {
                scheme: Some(Scheme::Https),
                host: "mirror.example.com".into(),
                prefix: String::new()
            }
        );
        let (registry, mirror) =
            parse_mirror_flag("index.docker.io=registry.example.com:5000/prefix/docker.io")
                .unwrap();
        assert_eq!(registry, "docker.io");
        assert_eq!(mirror.scheme, None);
        assert_eq!(mirror.host, "registry.example.com:5000");
        assert_eq!(mirror.prefix, "prefix/docker.io");
        assert_eq!(
            mirror.to_string(),
            "registry.example.com:5000/prefix/docker.io"
        );
        assert_eq!("http://m/v2/".parse::<Mirror>().unwrap().prefix, "");

        let fails = |flag: &str| parse_mirror_flag(flag).unwrap_err();
        assert!(matches!(
            fails("docker.io"),
            MirrorFlagError::MissingEquals { .. }
        ));
        assert!(matches!(
            fails("docker.io="),
            MirrorFlagError::Mirror(MirrorError::InvalidHost { .. })
        ));
        assert!(matches!(
            fails("docker.io=ftp://m"),
            MirrorFlagError::Mirror(MirrorError::UnsupportedScheme { .. })
        ));
        for bad_prefix in ["docker.io=m/UPPER", "docker.io=m//x"] {
            assert!(
                matches!(
                    fails(bad_prefix),
                    MirrorFlagError::Mirror(MirrorError::InvalidPrefix { .. })
                ),
                "{bad_prefix}"
            );
        }
        assert!(matches!(fails("a/b=m"), MirrorFlagError::Registry(_)));
    }

    #[test]
    fn mirrors_come_first_and_keep_the_repository() {
        let mut routes = Routes::default();
        routes.mirrors.insert(
            "docker.io".into(),
            vec![
                "http://127.0.0.1:5001".parse().unwrap(),
                "registry.example.com/prefix/docker.io".parse().unwrap(),
            ],
        );
        let endpoints = routes.endpoints(&reference("nginx:1.27"));
        assert_eq!(endpoints.len(), 3);
        assert_eq!(
            endpoints[0].url(endpoints[0].transports[0], "manifests/1.27"),
            "http://127.0.0.1:5001/v2/library/nginx/manifests/1.27"
        );
        assert_eq!(endpoints[0].transports, vec![Transport::Http]);
        assert_eq!(
            endpoints[1].url(endpoints[1].transports[0], "blobs/x"),
            "https://registry.example.com/v2/prefix/docker.io/library/nginx/blobs/x"
        );
        assert_eq!(endpoints[2].host, "registry-1.docker.io");
        assert_eq!(endpoints[2].registry, "docker.io");
        assert!(!endpoints[2].is_mirror);
        // Other registries have no mirrors.
        assert_eq!(routes.endpoints(&reference("ghcr.io/a/b")).len(), 1);
    }

    #[test]
    fn picks_transports() {
        let routes = Routes {
            insecure_registries: vec!["build.local".into()],
            ..Routes::default()
        };
        let transports = |r: &str| routes.endpoints(&reference(r)).pop().unwrap().transports;
        let verified = Transport::Https { verify: true };
        let unverified = Transport::Https { verify: false };
        assert_eq!(transports("ghcr.io/a/b"), vec![verified]);
        assert_eq!(
            transports("127.0.0.1:5000/a"),
            vec![verified, Transport::Http]
        );
        assert_eq!(
            transports("build.local:5000/a"),
            vec![unverified, Transport::Http]
        );
    }
}

//! Platforms (`os/arch[/variant]`): parsing, normalization and matching, after containerd's
//! `platforms` package. `aarch64` is `arm64`, `arm64` means `arm64/v8`, `arm` means `arm/v7`,
//! so `--platform linux/arm64` finds an index entry written as `linux/arm64/v8` and back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An image platform as an index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid platform {0:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm/v7"
)]
pub struct PlatformError(String);

impl Platform {
    /// The platform of the machine haul runs on. Images are Linux images wherever they are
    /// pulled (as with Docker Desktop), so the OS is always `linux`.
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// A normalized platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let architecture = architecture.to_ascii_lowercase();
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty());
        let (architecture, variant) = match (architecture.as_str(), variant.as_deref()) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.map(str::to_string)),
            ("i386" | "i686" | "386", _) => ("386", None),
            ("aarch64" | "arm64", None | Some("8" | "v8")) => ("arm64", Some("v8".to_string())),
            ("aarch64" | "arm64", Some(v)) => ("arm64", Some(v.to_string())),
            ("armhf", _) => ("arm", Some("v7".to_string())),
            ("armel", _) => ("arm", Some("v6".to_string())),
            ("arm", None) => ("arm", Some("v7".to_string())),
            ("arm", Some(v)) => (
                "arm",
                Some(if v.starts_with('v') {
                    v.to_string()
                } else {
                    format!("v{v}")
                }),
            ),
            (other, v) => (other, v.map(str::to_string)),
        };
        Platform {
            os,
            architecture: architecture.to_string(),
            variant,
        }
    }

    /// This platform with containerd's normalization applied (for entries read from an index).
    pub fn normalized(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    /// Whether an image built for `candidate` satisfies a request for `self`. A request
    /// without a variant takes any variant of its architecture (arm64 and arm carry their
    /// default variant, so `linux/arm` does not take an `arm/v6` image).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let want = self.normalized();
        let have = candidate.normalized();
        want.os == have.os
            && want.architecture == have.architecture
            && (want.variant.is_none() || want.variant == have.variant)
    }

    /// The architecture as used in default file names (`amd64`, `arm64`, `armv7`).
    pub fn file_name_part(&self) -> String {
        match (&self.architecture[..], &self.variant) {
            ("arm", Some(v)) => format!("arm{v}"),
            (arch, _) => arch.to_string(),
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok_part = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok_part) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn normalizes_like_containerd() {
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
    }

    #[test]
    fn matches_with_variants() {
        let arm64_plain = Platform::new("linux", "arm64", None);
        assert!(p("linux/arm64/v8").matches(&arm64_plain));
        assert!(p("linux/arm64").matches(&Platform::new("linux", "arm64", Some("v8"))));
        assert!(p("linux/arm/v7").matches(&Platform::new("linux", "arm", Some("v7"))));
        assert!(!p("linux/arm/v7").matches(&Platform::new("linux", "arm", Some("v6"))));
        assert!(!p("linux/arm").matches(&Platform::new("linux", "arm", Some("v6"))));
        assert!(p("linux/amd64").matches(&Platform::new("linux", "amd64", None)));
        assert!(!p("linux/amd64").matches(&Platform::new("linux", "arm64", None)));
        assert!(!p("linux/amd64").matches(&Platform::new("windows", "amd64", None)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/../x",
            "",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}

//! The configuration file: settings a machine keeps for every run (mirrors, insecure
//! registries, extra certificate authorities). Read from `--config FILE` or `$HAUL_CONFIG`,
//! else `$XDG_CONFIG_HOME/haul/config.toml`, else `~/.config/haul/config.toml`; a missing
//! default file is no error.
//!
//! ```toml
//! insecure-registries = ["build.internal:5000"]
//! ca-certs = ["/etc/ssl/private-ca.pem"]
//!
//! [mirrors]
//! "docker.io" = ["https://mirror.example.com", "registry.example.com/prefix/docker.io"]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::registry::endpoint::{Mirror, Routes, normalize_registry};

/// The file as written; every key is optional, unknown keys are refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    #[serde(default)]
    mirrors: HashMap<String, Vec<String>>,
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    ca_certs: Vec<PathBuf>,
}

/// The settings a configuration file gave, checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Registry (`docker.io`) → its mirrors, in the order to try them.
    pub mirrors: HashMap<String, Vec<Mirror>>,
    pub insecure_registries: Vec<String>,
    /// Absolute, or relative to the file's folder.
    pub ca_certs: Vec<PathBuf>,
}

impl Config {
    /// The routes and CA files with the command line's laid over the file's: a registry's
    /// mirrors given on the command line replace the file's (in their order); insecure
    /// registries and CA files add up.
    pub fn with_command_line(
        self,
        mirrors: &[(String, Mirror)],
        insecure_registries: &[String],
        ca_certs: &[PathBuf],
    ) -> (Routes, Vec<PathBuf>) {
        let mut from_cli: HashMap<String, Vec<Mirror>> = HashMap::new();
        for (registry, mirror) in mirrors {
            from_cli
                .entry(registry.clone())
                .or_default()
                .push(mirror.clone());
        }
        let mut routes = Routes {
            mirrors: self.mirrors,
            insecure_registries: self.insecure_registries,
        };
        routes.mirrors.extend(from_cli);
        routes
            .insecure_registries
            .extend(insecure_registries.iter().cloned());
        let mut all_ca_certs = self.ca_certs;
        all_ca_certs.extend(ca_certs.iter().cloned());
        (routes, all_ca_certs)
    }
}

/// What is wrong with the configuration file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {detail}", path = path.display())]
    Invalid { path: PathBuf, detail: String },
}

/// Reads the configuration: `explicit` (from `--config` or `$HAUL_CONFIG`) must exist; the
/// default file may not.
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_path_buf(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok(Config::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Config::default());
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    parse(&text, &path)
}

/// `$XDG_CONFIG_HOME/haul/config.toml`, else `~/.config/haul/config.toml`; on Windows
/// `%APPDATA%\haul\config.toml`.
pub fn default_path() -> Option<PathBuf> {
    crate::portable::config_file()
}

fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let invalid = |detail: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let file: ConfigFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut mirrors = HashMap::new();
    for (registry, list) in file.mirrors {
        let registry =
            normalize_registry(&registry).map_err(|e| invalid(format!("[mirrors] {e}")))?;
        let list = list
            .iter()
            .map(|m| m.parse::<Mirror>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("[mirrors] {e}")))?;
        mirrors.insert(registry, list);
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    Ok(Config {
        mirrors,
        insecure_registries: file.insecure_registries,
        ca_certs: file.ca_certs.into_iter().map(|p| folder.join(p)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_file() {
        let config = parse(
            r#"
insecure-registries = ["build.internal:5000"]
ca-certs = ["ca.pem", "/etc/ssl/other.pem"]

[mirrors]
"index.docker.io" = ["https://mirror.example.com", "registry.example.com/prefix/docker.io"]
"ghcr.io" = []
"#,
            Path::new("/home/u/.config/haul/config.toml"),
        )
        .unwrap();
        assert_eq!(config.mirrors["docker.io"].len(), 2);
        assert_eq!(config.mirrors["docker.io"][1].prefix, "prefix/docker.io");
        assert!(config.mirrors["ghcr.io"].is_empty());
        assert_eq!(config.insecure_registries, vec!["build.internal:5000"]);
        assert_eq!(
            config.ca_certs,
            vec![
                PathBuf::from("/home/u/.config/haul/ca.pem"),
                PathBuf::from("/etc/ssl/other.pem")
            ]
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let path = Path::new("c.toml");
        for (text, expected) in [
            ("mirror = 1", "unknown field"),
            ("[mirrors]\n\"docker.io\" = \"https://m\"", "invalid type"),
            (
                "[mirrors]\n\"docker.io\" = [\"ftp://m\"]",
                "only http:// and https://",
            ),
            ("insecure-registries = [", "c.toml"),
        ] {
            let error = parse(text, path).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("c.toml"), "{error}");
        }
    }
}

//! Authentication: `WWW-Authenticate` challenges, credentials (command line, docker's
//! `config.json`) and the bearer tokens a token service hands out.
//!
//! The flow is docker's: ask without credentials; on 401 read the challenge; for `Basic`,
//! send the user's credentials; for `Bearer`, get a token for the repository's pull scope
//! from the realm (with the credentials, if any; push scope for uploads, and whatever scope the
//! challenge names, such as a mount's source) and keep it for every later request to that
//! repository. A 401 with a token in hand means it expired: the caller drops it and asks once more.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;

use super::RegistryError;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="value", key2=value2` → map; quoted values may hold commas and `\"`.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    params
}

/// The body of a token service's answer (`token`, or OAuth2's `access_token`).
#[derive(Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    /// `access_token` (OAuth2) when present, else `token`, as docker and containerd read
    /// them; an empty one counts as absent.
    pub fn into_token(self) -> Option<String> {
        let non_empty = |t: &String| !t.is_empty();
        self.access_token
            .filter(non_empty)
            .or(self.token.filter(non_empty))
    }
}

/// Asks the token service at `realm` for a bearer token for `scopes` (one `scope` parameter
/// each, as docker sends them), sending the credentials, if any, and returns the
/// `Authorization` header to use.
pub(super) async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    repository: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<String, RegistryError> {
    let unauthorized = |detail: &str| RegistryError::Unauthorized {
        registry: registry.to_string(),
        repository: repository.to_string(),
        detail: detail.to_string(),
    };
    let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Url {
        url: realm.to_string(),
        source: e.into(),
    })?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    let mut request = http.get(url.clone());
    if let Some(c) = credentials {
        request = request.header(reqwest::header::AUTHORIZATION, c.basic_header());
    }
    let response = request.send().await.map_err(|source| {
        if super::http::is_certificate_error(&source) {
            super::http::untrusted_certificate(
                format!("the token service of {registry}"),
                realm_host(&url),
                source,
            )
        } else {
            RegistryError::Connect {
                registry: format!("{registry}'s token service {realm}"),
                source,
            }
        }
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(unauthorized(if credentials.is_some() {
            "the token service rejected the credentials"
        } else {
            "the token service requires credentials"
        }));
    }
    if !status.is_success() {
        return Err(RegistryError::Status {
            registry: registry.to_string(),
            status,
            url: url.to_string(),
            retry_after: super::retry::retry_after(response.headers()),
            detail: super::error_detail(response).await,
        });
    }
    let unreadable =
        |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::TokenAnswer {
            registry: registry.to_string(),
            realm: realm.to_string(),
            source,
        };
    let body = response.bytes().await.map_err(|e| unreadable(e.into()))?;
    let body: TokenResponse = serde_json::from_slice(&body).map_err(|e| unreadable(e.into()))?;
    let token = body
        .into_token()
        .ok_or_else(|| unauthorized("the token service answered without a token"))?;
    Ok(format!("Bearer {token}"))
}

/// `host[:port]` of a token service, as `--insecure-registry` names hosts.
pub(super) fn realm_host(url: &reqwest::Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Where credentials come from, most specific first: the command line, then docker's
/// `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    /// From `--username` / `--password-stdin`: used for every registry of the run.
    explicit: Option<Credentials>,
    /// From config.json's `auths`, keyed by registry host.
    from_config: HashMap<String, Credentials>,
    /// config.json's `credHelpers`: registry host → helper name.
    helpers: HashMap<String, String>,
    /// config.json's `credsStore`: the helper for every other registry.
    default_helper: Option<String>,
    /// What helpers answered, so each runs once per registry and run.
    from_helpers: std::sync::Arc<std::sync::Mutex<HashMap<String, Option<Credentials>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read docker config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl CredentialStore {
    /// Reads docker's config.json if there is one; `explicit` overrides it.
    pub fn load(explicit: Option<Credentials>) -> Result<CredentialStore, CredentialError> {
        let mut store = CredentialStore {
            explicit,
            ..CredentialStore::default()
        };
        let Some(path) = docker_config_path() else {
            return Ok(store);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(CredentialError::Read { path, source }),
        };
        let config: DockerConfig =
            serde_json::from_str(&text).map_err(|source| CredentialError::Parse {
                path: path.clone(),
                source,
            })?;
        store.default_helper = config.creds_store.filter(|h| !h.is_empty());
        store.helpers = config
            .cred_helpers
            .into_iter()
            .map(|(key, helper)| (normalize_registry_key(&key), helper))
            .collect();
        for (key, entry) in config.auths {
            if let Some(credentials) = entry.credentials() {
                store
                    .from_config
                    .insert(normalize_registry_key(&key), credentials);
            }
        }
        Ok(store)
    }

    /// Credentials for `registry` (as the reference names it: `docker.io`, `host:5000`).
    /// Looked up as docker does: the command line, then the registry's `credHelpers` entry,
    /// then an `auths` entry, then the `credsStore` helper.
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        if let Some(explicit) = &self.explicit {
            return Some(explicit.clone());
        }
        let key = normalize_registry_key(registry);
        if let Some(helper) = self.helpers.get(&key) {
            return self.ask_helper(helper, &key);
        }
        if let Some(credentials) = self.from_config.get(&key) {
            return Some(credentials.clone());
        }
        let helper = self.default_helper.as_ref()?;
        self.ask_helper(helper, &key)
    }

    /// Runs `docker-credential-HELPER get` with the server on stdin, as docker does.
    fn ask_helper(&self, helper: &str, key: &str) -> Option<Credentials> {
        let mut cache = self.from_helpers.lock().ok()?;
        if let Some(known) = cache.get(key) {
            return known.clone();
        }
        let found = run_helper(helper, key);
        cache.insert(key.to_string(), found.clone());
        found
    }
}

/// The server name a helper is asked about: Docker Hub's historic URL, else the host.
fn helper_server(key: &str) -> String {
    if key == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        key.to_string()
    }
}

fn run_helper(helper: &str, key: &str) -> Option<Credentials> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    #[derive(Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("cannot run the credential helper {program} for {key}: {e}");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(helper_server(key).as_bytes());
    }
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        // "credentials not found" is the helpers' normal answer for an unknown server.
        let message = String::from_utf8_lossy(&output.stdout);
        if !message.contains("credentials not found") {
            tracing::warn!(
                "the credential helper {program} failed for {key}: {}{}",
                message.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        return None;
    }
    match serde_json::from_slice::<HelperAnswer>(&output.stdout) {
        Ok(answer) => Some(Credentials {
            username: answer.username,
            password: answer.secret,
        }),
        Err(e) => {
            tracing::warn!(
                "the credential helper {program} answered unreadable JSON for {key}: {e}"
            );
            None
        }
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    home().map(|home| home.join(".docker").join("config.json"))
}

/// The user's home folder (`HOME`; on Windows `USERPROFILE`), where docker keeps
/// `.docker/config.json`.
fn home() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        var("USERPROFILE").or_else(|| var("HOME"))
    } else {
        var("HOME")
    }
}

/// config.json keys are written many ways (`https://index.docker.io/v1/`, `host:5000`,
/// `https://host:5000`); reduce each to the bare host and map Docker Hub's aliases together.
fn normalize_registry_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let Some(encoded) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (username, password) = decoded.split_once(':')?;
            return Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        Some(Credentials {
            username: self.username.clone()?,
            password: self.password.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_prefer_a_non_empty_access_token() {
        let token = |json: &str| {
            serde_json::from_str::<TokenResponse>(json)
                .unwrap()
                .into_token()
        };
        assert_eq!(token(r#"{"token":"a"}"#).as_deref(), Some("a"));
        assert_eq!(token(r#"{"access_token":"b"}"#).as_deref(), Some("b"));
        assert_eq!(
            token(r#"{"token":"","access_token":"b"}"#).as_deref(),
            Some("b")
        );
        assert_eq!(
            token(r#"{"token":"a","access_token":""}"#).as_deref(),
            Some("a")
        );
        assert_eq!(token(r#"{"token":"","expires_in":300}"#), None);
    }

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=https://x/token"),
            Some(Challenge::Bearer {
                realm: "https://x/token".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn normalizes_config_keys() {
        assert_eq!(
            normalize_registry_key("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_registry_key("https://ghcr.io"), "ghcr.io");
    }

    #[test]
    fn decodes_config_entries() {
        let entry = AuthEntry {
            auth: Some("dXNlcjpwYTpzcw==".into()),
            username: None,
            password: None,
        };
        let c = entry.credentials().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.basic_header(), "Basic dXNlcjpwYTpzcw==");
    }
}

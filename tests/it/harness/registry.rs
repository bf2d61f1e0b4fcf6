//! A real registry process (Debian's `docker-registry`) on a free loopback port, with its
//! own storage folder, and pushes through the registry API.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::images::{DOCKER_LIST, Image, OCI_INDEX, hex_of, require_tool, sha256};
use super::token::{self, Access, TokenIssuer, TokenServer};

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running registry with its own storage folder; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    pub credentials: Option<(String, String)>,
    /// In token mode: the token service's signer, to mint the harness's own push tokens.
    token_issuer: Option<Arc<TokenIssuer>>,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None, None, "")
    }

    /// A pull-through cache (distribution's `proxy: remoteurl:`) in front of `upstream`
    /// (`http://host:port`): it serves what it fetched once from its own storage.
    pub fn start_pull_through(upstream: &str) -> Registry {
        Registry::start_with(None, None, &format!("proxy:\n  remoteurl: {upstream}\n"))
    }

    /// A registry behind HTTP basic auth (htpasswd mode).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user.to_string(), password.to_string())), None, "")
    }

    /// A registry in token mode (`auth: token`): clients get bearer tokens from `tokens`,
    /// whose signing certificate is the registry's `rootcertbundle`. The harness pushes with
    /// tokens it mints itself, so `tokens` records only what clients asked.
    pub fn start_token_auth(tokens: &TokenServer) -> Registry {
        Registry::start_with(None, Some((tokens.issuer(), tokens.realm())), "")
    }

    fn start_with(
        credentials: Option<(String, String)>,
        token: Option<(Arc<TokenIssuer>, String)>,
        extra: &str,
    ) -> Registry {
        require_tool("/usr/bin/docker-registry");
        // The port is free when picked but may be taken before the registry binds it: retry.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let mut auth = String::new();
            if let Some((issuer, realm)) = &token {
                let bundle = dir.path().join("token-signer.pem");
                std::fs::write(&bundle, issuer.cert_pem()).unwrap();
                auth = format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    token::TOKEN_SERVICE,
                    token::TOKEN_ISSUER,
                    bundle.display()
                );
            }
            if let Some((user, password)) = &credentials {
                require_tool("/usr/bin/htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: haul-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}{extra}",
                dir.path().join("storage").display()
            );
            let child = spawn_registry(dir.path(), &config);
            let mut registry = Registry {
                child,
                port,
                dir,
                credentials: credentials.clone(),
                token_issuer: token.as_ref().map(|(issuer, _)| issuer.clone()),
            };
            if registry.wait_ready() {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("could not start docker-registry on a free port; its last log:\n{last_log}")
    }

    /// Waits until this registry process (not another one that took the port meanwhile)
    /// listens and answers `GET /v2/`. False when it exited (port taken) or never answered.
    fn wait_ready(&mut self) -> bool {
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited: port taken, most likely
            }
            if self.log().contains(&listening)
                && let Ok(response) = http().get(format!("http://{}/v2/", self.host())).send()
                && (response.status().as_u16() == 200 || response.status().as_u16() == 401)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps blob `digest`'s bytes (to corrupt it, as a hostile registry).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = hex_of(digest);
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many times the registry served (GET) blob `digest` of `repository`, from its
    /// access log.
    pub fn blob_gets(&self, repository: &str, digest: &str) -> usize {
        let request = format!("\"GET /v2/{repository}/blobs/{digest} ");
        self.log()
            .lines()
            .filter(|line| line.contains(&request) && line.contains("\" 200 "))
            .count()
    }

    /// Adds what a push to `repository` needs: basic credentials, or in token mode a token
    /// for pull and push there (the registry checks both on uploads).
    fn authorize(
        &self,
        repository: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        if let Some(issuer) = &self.token_issuer {
            let access = [Access::repository(repository, &["pull", "push"])];
            return request.bearer_auth(issuer.mint("harness", &access, Duration::from_secs(300)));
        }
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Pushes a blob (monolithic upload) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        self.upload(repository, &digest, bytes.to_vec().into(), http());
        digest
    }

    /// Pushes a blob streamed from a file (for blobs too large to hold in memory), whose
    /// digest the caller computed.
    pub fn push_blob_file(&self, repository: &str, path: &std::path::Path, digest: &str) {
        let file = std::fs::File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let slow = reqwest::blocking::Client::builder()
            .timeout(None)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        self.upload(
            repository,
            digest,
            reqwest::blocking::Body::sized(file, len),
            slow,
        );
    }

    fn upload(
        &self,
        repository: &str,
        digest: &str,
        body: reqwest::blocking::Body,
        client: reqwest::blocking::Client,
    ) {
        let start = self
            .authorize(
                repository,
                http().post(format!(
                    "http://{}/v2/{repository}/blobs/uploads/",
                    self.host()
                )),
            )
            .send()
            .unwrap();
        assert_eq!(
            start.status().as_u16(),
            202,
            "start upload: {:?}",
            start.text()
        );
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("http://{}{location}", self.host())
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = self
            .authorize(
                repository,
                client.put(format!("{location}{separator}digest={digest}")),
            )
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(put.status().as_u16(), 201, "upload: {:?}", put.text());
    }

    /// Pushes a manifest under `tag` (or a digest) and returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let response = self
            .authorize(
                repository,
                http().put(format!(
                    "http://{}/v2/{repository}/manifests/{tag}",
                    self.host()
                )),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            201,
            "push manifest: {:?}",
            response.text()
        );
        sha256(bytes)
    }

    /// Pushes an image's blobs and manifest; returns the pushed image with its digests.
    pub fn push(&self, repository: &str, tag: &str, image: &Image) -> Pushed {
        self.push_blob(repository, &image.config);
        for layer in &image.layers {
            self.push_blob(repository, &layer.compressed);
        }
        let manifest = image.manifest();
        let manifest_digest =
            self.push_manifest(repository, tag, image.manifest_media_type(), &manifest);
        Pushed {
            reference: format!("{}/{repository}:{tag}", self.host()),
            manifest_digest,
            config_digest: sha256(&image.config),
            layer_digests: image.layers.iter().map(|l| l.digest.clone()).collect(),
        }
    }

    /// Pushes, as `repository:tag`, a runnable image (busybox) whose command prints `message`,
    /// with a small layer of its own.
    pub fn push_app(&self, repository: &str, tag: &str, message: &str) -> Pushed {
        let image = Image::runnable(
            message,
            vec![super::images::Layer::text(
                "etc/message",
                &format!("{message}\n"),
                super::images::Compression::Gzip,
            )],
            super::images::Compression::Gzip,
            false,
        );
        self.push(repository, tag, &image)
    }

    /// Pushes several platform images and an index (OCI) or manifest list (Docker) over them.
    pub fn push_index(
        &self,
        repository: &str,
        tag: &str,
        images: &[(&Image, &str, &str, Option<&str>)],
        oci: bool,
    ) -> String {
        let mut manifests = Vec::new();
        for (image, os, arch, variant) in images {
            let pushed = self.push(
                repository,
                &format!("{tag}-{arch}{}", variant.unwrap_or("")),
                image,
            );
            let manifest = image.manifest();
            let mut platform = serde_json::json!({"os": os, "architecture": arch});
            if let Some(variant) = variant {
                platform["variant"] = serde_json::json!(variant);
            }
            manifests.push(serde_json::json!({
                "mediaType": image.manifest_media_type(),
                "digest": pushed.manifest_digest,
                "size": manifest.len(),
                "platform": platform,
            }));
        }
        let media_type = if oci { OCI_INDEX } else { DOCKER_LIST };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        }))
        .unwrap();
        self.push_manifest(repository, tag, media_type, &index)
    }
}

/// Starts `docker-registry serve` with `config` (YAML), written into `dir`, logging to
/// `dir/registry.log`.
pub(super) fn spawn_registry(dir: &std::path::Path, config: &str) -> Child {
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start docker-registry")
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a push produced.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

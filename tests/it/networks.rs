//! Real networks: mirrors (flag and configuration file, path prefixes, fallback), a TLS
//! registry whose certificate authority the test makes, and HTTP / HTTPS proxies.

use crate::fault_proxy::{Fault, FaultProxy};
use crate::harness::*;

fn three_layer_image(message: &str) -> Image {
    Image::runnable(
        message,
        vec![
            Layer::text("etc/one", "1\n", Compression::Gzip),
            Layer::random("opt/two", 200_000, 2),
        ],
        Compression::Gzip,
        false,
    )
}

fn repo_tags(tar: &std::path::Path) -> Vec<String> {
    tar_json(tar, "manifest.json")[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn manifest_paths(proxy: &FaultProxy) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count()
}

#[test]
fn mirrors_serve_first_in_order_and_the_registry_fills_the_gaps() {
    let upstream = Registry::start();
    let mirror = Registry::start();
    let upstream_proxy = FaultProxy::start(&upstream.host());
    let mirror_proxy = FaultProxy::start(&mirror.host());
    let repository = unique("team/mirrored");
    let image = three_layer_image("mirrored");
    let pushed = upstream.push(&repository, "v1", &image);
    // The mirror re-hosts the upstream's repositories under a path prefix.
    mirror.push(&format!("cache/upstream/{repository}"), "v1", &image);

    let reference = format!("{}/{repository}:v1", upstream_proxy.host());
    let flag = format!(
        "{}=http://{}/cache/upstream",
        upstream_proxy.host(),
        mirror_proxy.host()
    );

    // Everything from the mirror; the registry is not asked at all; the name stays.
    let haul = Haul::new();
    haul.run(&["export", &reference, "-o", "a.tar", "--mirror", &flag])
        .success();
    assert!(
        upstream_proxy.requests().is_empty(),
        "{:?}",
        upstream_proxy.requests()
    );
    assert_eq!(mirror_proxy.blob_requests().len(), 1 + 3);
    let tar = haul.workdir.path().join("a.tar");
    assert_eq!(repo_tags(&tar), vec![reference.clone()]);
    assert_eq!(
        tar_json(&tar, "manifest.json")[0]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The mirror lacks one layer: that layer, and only it, comes from the registry.
    mirror_proxy.clear();
    let missing = &pushed.layer_digests[2];
    mirror_proxy.inject(hex_of(missing), Fault::Status(404), 1);
    let haul = Haul::new();
    haul.run(&["export", &reference, "-o", "b.tar", "--mirror", &flag])
        .success();
    let from_upstream: Vec<String> = upstream_proxy
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        from_upstream,
        vec![format!("/v2/{repository}/blobs/{missing}")]
    );

    // A mirror that cannot be reached is skipped, with one warning, for the next one.
    upstream_proxy.clear();
    mirror_proxy.clear();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_host = dead.local_addr().unwrap().to_string();
    drop(dead);
    let dead_flag = format!("{}=http://{dead_host}", upstream_proxy.host());
    let haul = Haul::new();
    let run = haul
        .run(&[
            "export", &reference, "-o", "c.tar", "--mirror", &dead_flag, "--mirror", &flag,
        ])
        .success();
    assert_eq!(
        run.stderr.matches("not asking it again").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(upstream_proxy.requests().is_empty());
    assert_eq!(mirror_proxy.blob_requests().len(), 4);

    // A mirror without the image at all: the registry serves all of it.
    upstream_proxy.clear();
    let empty_flag = format!("{}=http://{}", upstream_proxy.host(), mirror_proxy.host());
    let haul = Haul::new();
    haul.run(&["export", &reference, "-o", "d.tar", "--mirror", &empty_flag])
        .success();
    assert_eq!(manifest_paths(&upstream_proxy), 1);
    assert_eq!(upstream_proxy.blob_requests().len(), 4);
}

#[test]
fn a_docker_hub_mirror_from_the_config_file_keeps_the_familiar_name() {
    let mirror = Registry::start();
    let name = unique("haul-mirrored");
    let image = Image::runnable("from the mirror", vec![], Compression::Gzip, false);
    mirror.push(&format!("prefix/docker.io/library/{name}"), "1.0", &image);

    let haul = Haul::new();
    let config_dir = haul.workdir.path().join("config/haul");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "[mirrors]\n\"docker.io\" = [\"http://{}/prefix/docker.io\"]\n",
            mirror.host()
        ),
    )
    .unwrap();
    // Docker Hub is not reachable from the tests: everything must come from the mirror.
    let reference = format!("docker.io/library/{name}:1.0");
    haul.run_with(&["export", &reference, "-o", "hub.tar"], |c| {
        c.env("XDG_CONFIG_HOME", haul.workdir.path().join("config"));
    })
    .success();
    let tar = haul.workdir.path().join("hub.tar");
    assert_eq!(repo_tags(&tar), vec![format!("{name}:1.0")]);
    let tag = format!("{name}:1.0");
    let _cleanup = Engine::Classic.cleanup(&[&tag]);
    Engine::Classic.load(&tar);
    assert_eq!(Engine::Classic.run(&tag, &[]).trim(), "from the mirror");

    // --mirror for docker.io replaces the file's list: the file's mirror is not asked.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_host = dead.local_addr().unwrap().to_string();
    drop(dead);
    std::fs::write(
        config_dir.join("config.toml"),
        format!("[mirrors]\n\"docker.io\" = [\"http://{dead_host}\"]\n"),
    )
    .unwrap();
    let flag = format!("docker.io=http://{}/prefix/docker.io", mirror.host());
    let run = Haul::new()
        .run_with(
            &["export", &reference, "-o", "x.tar", "--mirror", &flag],
            |c| {
                c.env("HAUL_CONFIG", config_dir.join("config.toml"));
            },
        )
        .success();
    assert!(!run.stderr.contains(&dead_host), "{}", run.stderr);

    // A broken configuration file is named, with what is wrong in it.
    std::fs::write(config_dir.join("config.toml"), "mirrors = 3\n").unwrap();
    Haul::new()
        .run_with(&["export", &reference, "-o", "y.tar"], |c| {
            c.env("HAUL_CONFIG", config_dir.join("config.toml"));
        })
        .failure(&["config.toml", "mirrors"]);
    Haul::new()
        .run(&["export", &reference, "--mirror", "docker.io", "-o", "z.tar"])
        .status
        .code()
        .filter(|&code| code == 2)
        .expect("a malformed --mirror is a usage error");
}

#[test]
fn a_tls_registry_is_trusted_through_its_ca_or_explicitly_insecure() {
    let plain = Registry::start();
    let repository = unique("secure/app");
    let image = three_layer_image("over tls");
    plain.push(&repository, "v1", &image);
    let ca = TestCa::new("haul test CA");
    let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
    let tls = TlsRegistry::serve(&plain.storage_dir(), &cert, &key);
    let reference = format!("{}/{repository}:v1", tls.host());
    let ca_pem = ca.ca_pem();
    let ca_pem = ca_pem.to_str().unwrap();

    // An unknown authority: refused, saying what to do; nothing written; no plain-HTTP retry.
    let haul = Haul::new();
    haul.run(&["export", &reference, "-o", "a.tar"]).failure(&[
        "not trusted",
        "--ca-cert",
        "--insecure-registry",
    ]);
    assert!(haul.workdir_files().is_empty());

    // Its CA given: verified HTTPS, no warning.
    let haul = Haul::new();
    let run = haul
        .run(&["export", &reference, "-o", "b.tar", "--ca-cert", ca_pem])
        .success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let tar = haul.workdir.path().join("b.tar");
    assert_eq!(repo_tags(&tar), vec![reference.clone()]);
    let log = tls.log();
    assert!(
        log.contains(&format!("/v2/{repository}/manifests/v1")),
        "the TLS registry served it"
    );

    // --insecure-registry: HTTPS without verification, with a warning.
    let run = Haul::new()
        .run(&[
            "export",
            &reference,
            "-o",
            "c.tar",
            "--insecure-registry",
            &tls.host(),
        ])
        .success();
    assert!(run.stderr.contains("not verifying"), "{}", run.stderr);

    // The CA from the configuration file, relative to it.
    let haul = Haul::new();
    let config_dir = haul.workdir.path().join("conf");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(ca.ca_pem(), config_dir.join("private-ca.pem")).unwrap();
    std::fs::write(
        config_dir.join("haul.toml"),
        "ca-certs = [\"private-ca.pem\"]\n",
    )
    .unwrap();
    haul.run(&[
        "export",
        &reference,
        "-o",
        "d.tar",
        "--config",
        config_dir.join("haul.toml").to_str().unwrap(),
    ])
    .success();

    // A CA file that is missing or not PEM is named.
    Haul::new()
        .run(&["export", &reference, "--ca-cert", "/nonexistent/ca.pem"])
        .failure(&["--ca-cert", "/nonexistent/ca.pem"]);
    let haul = Haul::new();
    std::fs::write(haul.workdir.path().join("junk.pem"), "not a certificate").unwrap();
    haul.run(&["export", &reference, "--ca-cert", "junk.pem"])
        .failure(&["junk.pem", "no PEM certificate"]);

    // Through an HTTPS proxy (CONNECT), unless NO_PROXY names the host.
    let proxy = ConnectProxy::start();
    Haul::new()
        .run_with(
            &["export", &reference, "-o", "e.tar", "--ca-cert", ca_pem],
            |c| {
                c.env("HTTPS_PROXY", proxy.url());
            },
        )
        .success();
    assert!(
        proxy.targets().contains(&tls.host()),
        "{:?}",
        proxy.targets()
    );
    let before = proxy.targets().len();
    Haul::new()
        .run_with(
            &["export", &reference, "-o", "f.tar", "--ca-cert", ca_pem],
            |c| {
                c.env("HTTPS_PROXY", proxy.url())
                    .env("NO_PROXY", "127.0.0.1");
            },
        )
        .success();
    assert_eq!(proxy.targets().len(), before);
}

#[test]
fn plain_http_goes_through_http_proxy() {
    let registry = Registry::start();
    let repository = unique("proxied/app");
    registry.push(&repository, "v1", &three_layer_image("proxied"));
    // A forwarding proxy: it passes each request (absolute-form URL) on to the registry.
    let proxy = FaultProxy::start(&registry.host());
    let reference = format!("{}/{repository}:v1", registry.host());
    Haul::new()
        .run_with(&["export", &reference, "-o", "a.tar"], |c| {
            c.env("HTTP_PROXY", format!("http://{}", proxy.host()));
        })
        .success();
    let seen = proxy.requests();
    assert!(
        seen.iter()
            .any(|r| r.path == format!("http://{}/v2/{repository}/manifests/v1", registry.host())),
        "{seen:?}"
    );
    assert_eq!(proxy.blob_requests().len(), 4);

    proxy.clear();
    Haul::new()
        .run_with(&["export", &reference, "-o", "b.tar"], |c| {
            c.env("HTTP_PROXY", format!("http://{}", proxy.host()))
                .env("NO_PROXY", "127.0.0.1");
        })
        .success();
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}

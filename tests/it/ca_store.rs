//! A system without CA certificates (a minimal root without the ca-certificates package):
//! plain-HTTP registries, the cache and registries whose authority `--ca-cert` names still
//! work; an HTTPS registry haul cannot verify is refused with what to do.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// No system CA store, as rustls-native-certs sees it: `SSL_CERT_FILE` names a file that
/// does not exist and `SSL_CERT_DIR` an empty folder, so it loads no certificate at all.
fn without_system_store(empty: &Path) -> impl FnOnce(&mut Command) + '_ {
    move |command| {
        command
            .env("SSL_CERT_FILE", empty.join("no-such-bundle.pem"))
            .env("SSL_CERT_DIR", empty);
    }
}

#[test]
fn without_a_system_ca_store_plain_http_and_given_cas_still_work() {
    let empty = tempfile::tempdir().unwrap();
    let plain = Registry::start();
    let repository = unique("castore/app");
    plain.push_app(&repository, "v1", "no ca store");

    // Plain HTTP: no certificate is involved, so no CA store is needed.
    let haul = Haul::new();
    let reference = format!("{}/{repository}:v1", plain.host());
    let run = haul
        .run_with(
            &["export", &reference, "-o", "plain.tar"],
            without_system_store(empty.path()),
        )
        .success();
    assert!(!run.stderr.contains("CA certificates"), "{}", run.stderr);
    let manifest = tar_json(&haul.workdir.path().join("plain.tar"), "manifest.json");
    assert_eq!(manifest[0]["RepoTags"][0], reference.as_str());

    // From the cache alone: nothing to connect to, nothing to verify.
    haul.run_with(
        &["export", &reference, "--offline", "-o", "offline.tar"],
        without_system_store(empty.path()),
    )
    .success();
    assert!(haul.workdir.path().join("offline.tar").exists());

    // The same image over HTTPS, signed by a private authority.
    let ca = TestCa::new("haul ca-store test CA");
    let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
    let tls = TlsRegistry::serve(&plain.storage_dir(), &cert, &key);
    let reference = format!("{}/{repository}:v1", tls.host());
    let ca_pem = ca.ca_pem();
    let ca_pem = ca_pem.to_str().unwrap();

    // Its authority not given: refused, saying the system has no CA certificates and both
    // ways out; no tar written.
    let haul = Haul::new();
    let run = haul
        .run_with(
            &["export", &reference, "-o", "refused.tar"],
            without_system_store(empty.path()),
        )
        .failure(&[
            "not trusted",
            "no CA certificates",
            "--ca-cert",
            "ca-certs",
            "ca-certificates",
            &tls.host(),
        ]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        haul.workdir_files().is_empty(),
        "{:?}",
        haul.workdir_files()
    );

    // Another authority given than the one that signed it: the same explanation.
    let other = TestCa::new("some other CA");
    haul.run_with(
        &[
            "export",
            &reference,
            "-o",
            "other.tar",
            "--ca-cert",
            other.ca_pem().to_str().unwrap(),
        ],
        without_system_store(empty.path()),
    )
    .failure(&["no CA certificates", "--ca-cert", "ca-certificates"]);

    // Its authority given: verified HTTPS, without any system store.
    let haul = Haul::new();
    let run = haul
        .run_with(
            &["export", &reference, "-o", "tls.tar", "--ca-cert", ca_pem],
            without_system_store(empty.path()),
        )
        .success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let manifest = tar_json(&haul.workdir.path().join("tls.tar"), "manifest.json");
    assert_eq!(manifest[0]["RepoTags"][0], reference.as_str());
    assert!(
        tls.log()
            .contains(&format!("/v2/{repository}/manifests/v1")),
        "the TLS registry served it"
    );
}

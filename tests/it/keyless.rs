//! Keyless signatures checked at a site with no network. The harness plays Fulcio, the CT
//! log, Rekor (v1 and v2) and a timestamp authority (`harness::sigstore`); real cosign 2.5
//! accepts what it makes and refuses each tampered case, and haul gives the same answers
//! offline, each refusal with its reason. A run in a network namespace with no route, traced,
//! opens no connection.

use std::path::Path;
use std::process::Command;

use crate::harness::sigstore::{Identity, SignatureImage, Sigstore, Tamper, now};
use crate::harness::*;

const ISSUER: &str = "https://issuer.haul.test";
const ALICE: &str = "alice@haul.test";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn push_signature(registry: &Registry, repository: &str, tag: &str, image: &SignatureImage) {
    for blob in &image.blobs {
        registry.push_blob(repository, blob);
    }
    registry.push_manifest(repository, tag, OCI_MANIFEST, &image.manifest);
}

fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.trim_start_matches("sha256:"))
}

/// `cosign verify` (2.5) of `reference` by `identity` and `issuer`, offline, with the
/// harness's trust given as cosign 2.5 reads it for `.sig` signatures.
fn cosign_verify(
    clients: &Clients,
    sigstore: &Sigstore,
    reference: &str,
    identity: &str,
    issuer: &str,
) -> std::process::Output {
    let env = sigstore.cosign_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    clients.output(
        Client::Cosign,
        &[
            "verify",
            "--offline",
            "--allow-http-registry",
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            issuer,
            reference,
        ],
        &env,
    )
}

/// Runs haul under `strace` in a network namespace with no route: the run must not have
/// opened an inet socket connection. Returns its output.
fn offline_traced(haul: &Haul, args: &[&str]) -> Run {
    require_on_path("unshare");
    require_on_path("strace");
    let trace = haul
        .workdir
        .path()
        .join(format!("trace-{}.txt", unique("t")));
    let binary = env!("CARGO_BIN_EXE_haul");
    let mut command = Command::new("unshare");
    command
        .args([
            "--net",
            "--",
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
        ])
        .arg(&trace)
        .arg(binary)
        .args(args)
        .current_dir(haul.workdir.path())
        .env("HAUL_CACHE_DIR", haul.cache.path());
    let run = Run::from(output_within(
        &mut command,
        None,
        std::time::Duration::from_secs(120),
    ));
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    let inet: Vec<&str> = calls
        .lines()
        .filter(|l| l.contains("AF_INET") || l.contains("AF_INET6"))
        .collect();
    assert!(
        inet.is_empty(),
        "haul opened network connections:\n{}",
        inet.join("\n")
    );
    assert!(
        !calls.is_empty() || run.status.success(),
        "strace wrote nothing"
    );
    run
}

#[test]
fn keyless_image_signatures_pass_and_fail_as_cosign_says() {
    let registry = Registry::start();
    let sigstore = Sigstore::new();
    let clients = Clients::new();
    let haul = Haul::new();
    let alice = Identity::email(ALICE, ISSUER);
    let root = sigstore.trusted_root_str();

    // One image per case, each signed the way the case says.
    let sign = |name: &str, named_other: bool, leaf: &crate::harness::sigstore::Leaf, time: i64| {
        let repository = unique(&format!("keyless/{name}"));
        let image = registry.push_app(&repository, "v1", name);
        let named = if named_other {
            format!("sha256:{}", "ab".repeat(32))
        } else {
            image.manifest_digest.clone()
        };
        let signature = sigstore.cosign_signature(
            &format!("{}/{repository}", registry.host()),
            &named,
            leaf,
            time,
        );
        push_signature(
            &registry,
            &repository,
            &sig_tag(&image.manifest_digest),
            &signature,
        );
        image
    };
    let good = sign("good", false, &sigstore.issue(&alice), now());
    let other_digest = sign("other-digest", true, &sigstore.issue(&alice), now());
    let expired = sign(
        "expired",
        false,
        &sigstore.issue_by(&sigstore.fulcio, &alice, now() - 3600, 600),
        now(),
    );
    let stranger = sigstore.stranger_authority();
    let foreign_ca = sign(
        "foreign-ca",
        false,
        &sigstore.issue_by(&stranger, &alice, now() - 60, 600),
        now(),
    );
    let future = sign("future", false, &sigstore.issue(&alice), now() + 86_400);

    // cosign 2.5 accepts the good one, by that identity and issuer only, and refuses the rest.
    let verified = cosign_verify(&clients, &sigstore, &good.reference, ALICE, ISSUER);
    assert!(
        verified.status.success(),
        "cosign refused the harness's signature:\n{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    for (reference, identity, issuer) in [
        (&good.reference, "bob@haul.test", ISSUER),
        (&good.reference, ALICE, "https://other.haul.test"),
        (&other_digest.reference, ALICE, ISSUER),
        (&expired.reference, ALICE, ISSUER),
        (&foreign_ca.reference, ALICE, ISSUER),
        (&future.reference, ALICE, ISSUER),
    ] {
        let refused = cosign_verify(&clients, &sigstore, reference, identity, issuer);
        assert!(
            !refused.status.success(),
            "cosign accepted {reference} by {identity} ({issuer})"
        );
    }

    // haul, against the registry: the good one passes and its tar carries the root.
    let policy = [
        "--certificate-identity",
        ALICE,
        "--certificate-oidc-issuer",
        ISSUER,
    ];
    let export = |reference: &str, output: &str, extra: &[&str]| {
        let mut args = vec!["export", reference, "-o", output, "--trusted-root", &root];
        args.extend_from_slice(extra);
        haul.run(&args)
    };
    let mut with_referrers = vec!["--referrers"];
    with_referrers.extend_from_slice(&policy);
    let exported = export(&good.reference, "good.tar", &with_referrers).success();
    let root_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(sigstore.trusted_root()).unwrap()
        ))
    );
    assert!(
        exported
            .stderr
            .contains(&format!("--trusted-root-digest {root_digest}")),
        "{}",
        exported.stderr
    );
    let tar = haul.workdir.path().join("good.tar");
    assert!(
        tar_entries(&tar)
            .iter()
            .any(|(name, bytes)| name == "haul-trusted-root.json"
                && bytes == &std::fs::read(sigstore.trusted_root()).unwrap()),
        "the tar does not carry the trusted root"
    );
    // Each refused, naming the image and the reason.
    let cases: [(&str, Vec<&str>, &str); 6] = [
        (
            &good.reference,
            vec![
                "--certificate-identity",
                "bob@haul.test",
                "--certificate-oidc-issuer",
                ISSUER,
            ],
            "signed by alice@haul.test, not bob@haul.test",
        ),
        (
            &good.reference,
            vec![
                "--certificate-identity",
                ALICE,
                "--certificate-oidc-issuer",
                "https://other.haul.test",
            ],
            "vouched for by https://issuer.haul.test, not https://other.haul.test",
        ),
        (
            &other_digest.reference,
            policy.to_vec(),
            "signs another manifest",
        ),
        (
            &expired.reference,
            policy.to_vec(),
            "certificate was not valid when it was used",
        ),
        (
            &foreign_ca.reference,
            policy.to_vec(),
            "not issued by a certificate authority of the trusted root",
        ),
        (&future.reference, policy.to_vec(), "is in the future"),
    ];
    for (reference, options, reason) in cases {
        let run = export(reference, "refused.tar", &options).failure(&[reason, "not signed by"]);
        assert!(run.stderr.contains(reference), "{}", run.stderr);
        assert!(!haul.workdir.path().join("refused.tar").exists());
    }
    // A pattern, found anywhere in the identity, as cosign's.
    export(
        &good.reference,
        "pattern.tar",
        &[
            "--certificate-identity-regexp",
            "@haul\\.test$",
            "--certificate-oidc-issuer-regexp",
            "issuer",
        ],
    )
    .success();

    // At the site: the tar and the root's digest (it carries the root), no network.
    let mut args = vec!["verify", "good.tar", "--trusted-root-digest", &root_digest];
    args.extend_from_slice(&policy);
    let run = offline_traced(&haul, &args).success();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout
            .contains("signed: every image, by alice@haul.test (issuer https://issuer.haul.test)"),
        "{stdout}"
    );
    // The carried root unpinned proves nothing: whoever could swap the images could swap it.
    let mut unpinned = vec!["verify", "good.tar"];
    unpinned.extend_from_slice(&policy);
    haul.run(&unpinned).failure(&[
        "carries a trusted root",
        "pin it with --trusted-root-digest",
        &root_digest,
    ]);
    // A root swapped in the tar: not the pinned one.
    let swapped = haul.workdir.path().join("swapped.tar");
    let mut entries = strip_entry(&tar, "haul-trusted-root.json");
    entries = append_entry(
        entries,
        "haul-trusted-root.json",
        &Sigstore::new().trusted_root_bytes(),
    );
    std::fs::write(&swapped, entries).unwrap();
    let mut args = vec![
        "verify",
        "swapped.tar",
        "--trusted-root-digest",
        &root_digest,
    ];
    args.extend_from_slice(&policy);
    haul.run(&args).failure(&["not the root that was pinned"]);
    haul.run(&[
        "verify",
        "good.tar",
        "--trusted-root-digest",
        &root_digest,
        "--certificate-identity",
        "bob@haul.test",
        "--certificate-oidc-issuer",
        ISSUER,
    ])
    .failure(&[
        "is whole, but 1 image in it is not signed by bob@haul.test",
        "signed by alice@haul.test, not bob@haul.test",
    ]);
    // Without the carried root, sigstore's public-good one: this signer is not in it.
    let bare = haul.workdir.path().join("bare.tar");
    std::fs::write(&bare, strip_entry(&tar, "haul-trusted-root.json")).unwrap();
    haul.run(&[
        "verify",
        "bare.tar",
        "--certificate-identity",
        ALICE,
        "--certificate-oidc-issuer",
        ISSUER,
    ])
    .failure(&["by a log the trusted root does not hold"]);
}

/// `tar` (bytes, ending in the end-of-archive blocks) with a file `name` of `bytes` added.
fn append_entry(tar: Vec<u8>, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, bytes).unwrap();
    builder.into_inner().unwrap()
}

/// The tar at `path` without its entry `name` (a tar exported before roots travelled).
fn strip_entry(path: &Path, name: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (entry, bytes) in tar_entries(path) {
        if entry == name {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        if entry.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
        }
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, &entry, bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn an_attestation_is_demanded_by_its_predicate_type() {
    let registry = Registry::start();
    let sigstore = Sigstore::new();
    let clients = Clients::new();
    let haul = Haul::new();
    let alice = Identity::uri(
        "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
        "https://token.actions.githubusercontent.com",
    );
    let repository = unique("keyless/attested");
    let image = registry.push_app(&repository, "v1", "attested");
    let manifest = skopeo_raw(&image.reference, None).expect("the pushed manifest");
    let slsa = "https://slsa.dev/provenance/v1";
    let bundle = sigstore.attestation_bundle(
        image.manifest_digest.trim_start_matches("sha256:"),
        slsa,
        &sigstore.issue(&alice),
    );
    let referrer = Sigstore::bundle_referrer(
        &bundle,
        slsa,
        (OCI_MANIFEST, &image.manifest_digest, manifest.len()),
    );
    // The registry has no referrers API: the OCI 1.1 fallback tag lists the referrer.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": referrer.digest(),
            "size": referrer.manifest.len(),
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        }]
    }))
    .unwrap();
    push_signature(&registry, &repository, &referrer.digest(), &referrer);
    registry.push_manifest(
        &repository,
        &format!(
            "sha256-{}",
            image.manifest_digest.trim_start_matches("sha256:")
        ),
        "application/vnd.oci.image.index.v1+json",
        &index,
    );

    // cosign 2.5 reads bundles only with verify-attestation (and its Fulcio roots first).
    let env = [("SIGSTORE_ROOT_FILE", sigstore.cosign_env()[0].1.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let root = sigstore.trusted_root_str();
    let verify_attestation = |issuer: &str| {
        clients.output(
            Client::Cosign,
            &[
                "verify-attestation",
                "--new-bundle-format",
                "--allow-http-registry",
                "--trusted-root",
                &root,
                "--type",
                slsa,
                "--certificate-identity",
                alice.name(),
                "--certificate-oidc-issuer",
                issuer,
                &image.reference,
            ],
            &env,
        )
    };
    let accepted = verify_attestation("https://token.actions.githubusercontent.com");
    assert!(
        accepted.status.success(),
        "cosign refused the attestation:\n{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        !verify_attestation("https://other.haul.test")
            .status
            .success()
    );

    let policy = [
        "--trusted-root",
        &root,
        "--certificate-identity",
        alice.name(),
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
    ];
    let mut args = vec!["pull", &image.reference, "--predicate-type", slsa];
    args.extend_from_slice(&policy);
    haul.run(&args).success();
    // A signature is what is asked for without --predicate-type: an attestation is not one.
    let mut args = vec!["pull", &image.reference];
    args.extend_from_slice(&policy);
    haul.run(&args).failure(&[
        "not signed by",
        "attestation of another kind (https://slsa.dev/provenance/v1)",
    ]);
    let mut args = vec![
        "pull",
        &image.reference,
        "--predicate-type",
        "https://spdx.dev/Document",
    ];
    args.extend_from_slice(&policy);
    haul.run(&args)
        .failure(&["not attested (https://spdx.dev/Document)"]);
}

#[test]
fn file_bundles_check_as_cosign_verify_blob_checks_them() {
    let sigstore = Sigstore::new();
    let clients = Clients::new();
    let haul = Haul::new();
    let alice = Identity::email(ALICE, ISSUER);
    let chart = b"a helm chart, say".repeat(1000);
    let dir = haul.workdir.path();
    std::fs::write(dir.join("chart.tgz"), &chart).unwrap();
    let write = |name: &str, bundle: String| std::fs::write(dir.join(name), bundle).unwrap();
    write(
        "good.sigstore.json",
        sigstore.blob_bundle(&chart, &sigstore.issue(&alice), now(), Tamper::default()),
    );
    write(
        "proof.sigstore.json",
        sigstore.blob_bundle(
            &chart,
            &sigstore.issue(&alice),
            now(),
            Tamper {
                proof: true,
                ..Tamper::default()
            },
        ),
    );
    write(
        "checkpoint.sigstore.json",
        sigstore.blob_bundle(
            &chart,
            &sigstore.issue(&alice),
            now(),
            Tamper {
                checkpoint_key: true,
                ..Tamper::default()
            },
        ),
    );
    write(
        "other.sigstore.json",
        sigstore.blob_bundle(
            b"another file",
            &sigstore.issue(&alice),
            now(),
            Tamper::default(),
        ),
    );
    let root = sigstore.trusted_root_str();

    let cosign = |bundle: &str| {
        clients.output(
            Client::Cosign,
            &[
                "verify-blob",
                &dir.join("chart.tgz").display().to_string(),
                "--bundle",
                &dir.join(bundle).display().to_string(),
                "--new-bundle-format",
                "--trusted-root",
                &root,
                "--certificate-identity",
                ALICE,
                "--certificate-oidc-issuer",
                ISSUER,
            ],
            &[],
        )
    };
    let haul_blob = |file: &str, bundle: &str, extra: &[&str]| {
        let mut args = vec![
            "verify-blob",
            file,
            "--bundle",
            bundle,
            "--trusted-root",
            &root,
            "--certificate-identity",
            ALICE,
            "--certificate-oidc-issuer",
            ISSUER,
        ];
        args.extend_from_slice(extra);
        haul.run(&args)
    };
    let accepted = cosign("good.sigstore.json");
    assert!(
        accepted.status.success(),
        "cosign refused the harness's bundle:\n{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let run = offline_traced(
        &haul,
        &[
            "verify-blob",
            "chart.tgz",
            "--bundle",
            "good.sigstore.json",
            "--trusted-root",
            &root,
            "--certificate-identity",
            ALICE,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    )
    .success();
    assert!(
        String::from_utf8_lossy(&run.stdout).contains(
            "ok: chart.tgz is signed by alice@haul.test (issuer https://issuer.haul.test)"
        )
    );
    // The file not at hand: its digest.
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&chart))
    );
    haul_blob(&digest, "good.sigstore.json", &[]).success();

    for (bundle, reason) in [
        (
            "proof.sigstore.json",
            "inclusion proof does not lead to the checkpoint's root",
        ),
        (
            "checkpoint.sigstore.json",
            "checkpoint signature does not verify",
        ),
        ("other.sigstore.json", "signs another artifact"),
    ] {
        assert!(!cosign(bundle).status.success(), "cosign accepted {bundle}");
        haul_blob("chart.tgz", bundle, &[]).failure(&["chart.tgz does not pass", reason]);
    }

    // Rekor v2 (cosign 2.5 cannot read it): no time in the log, a timestamp instead.
    write(
        "v2.sigstore.json",
        sigstore.blob_bundle_v2(&chart, &sigstore.issue(&alice), None),
    );
    haul_blob("chart.tgz", "v2.sigstore.json", &[]).success();
    write(
        "v2-stamp.sigstore.json",
        sigstore.blob_bundle_v2(&chart, &sigstore.issue(&alice), Some(b"other bytes")),
    );
    haul_blob("chart.tgz", "v2-stamp.sigstore.json", &[])
        .failure(&["timestamp is of another signature"]);

    // An attestation of the file (DSSE), demanded by its type.
    let subject = digest.trim_start_matches("sha256:");
    write(
        "slsa.sigstore.json",
        sigstore.attestation_bundle(
            subject,
            "https://slsa.dev/provenance/v1",
            &sigstore.issue(&alice),
        ),
    );
    assert!(cosign("slsa.sigstore.json").status.success());
    haul_blob(
        "chart.tgz",
        "slsa.sigstore.json",
        &["--predicate-type", "https://slsa.dev/provenance/v1"],
    )
    .success();
    haul_blob(
        "chart.tgz",
        "slsa.sigstore.json",
        &["--predicate-type", "https://spdx.dev/Document"],
    )
    .failure(&["attestation of another kind"]);

    // Signed with a key, logged: --key, as cosign verify-blob --key.
    let (keyed, public) = sigstore.keyed_blob_bundle(&chart);
    write("keyed.sigstore.json", keyed);
    std::fs::write(dir.join("release.pub"), public).unwrap();
    let accepted = clients.output(
        Client::Cosign,
        &[
            "verify-blob",
            &dir.join("chart.tgz").display().to_string(),
            "--bundle",
            &dir.join("keyed.sigstore.json").display().to_string(),
            "--new-bundle-format",
            "--trusted-root",
            &root,
            "--key",
            &dir.join("release.pub").display().to_string(),
        ],
        &[],
    );
    assert!(
        accepted.status.success(),
        "cosign refused the keyed bundle:\n{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let run = haul
        .run(&[
            "verify-blob",
            "chart.tgz",
            "--bundle",
            "keyed.sigstore.json",
            "--trusted-root",
            &root,
            "--key",
            "release.pub",
        ])
        .success();
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains("ok: chart.tgz is signed by the key release.pub, logged")
    );
    haul.run(&[
        "verify-blob",
        "chart.tgz",
        "--bundle",
        "good.sigstore.json",
        "--trusted-root",
        &root,
        "--key",
        "release.pub",
    ])
    .failure(&["its signature is not by this key"]);

    // Usage: who signed must be said.
    haul.run(&["verify-blob", "chart.tgz", "--bundle", "good.sigstore.json"])
        .failure(&["--certificate-identity with --certificate-oidc-issuer"]);
    haul.run(&[
        "verify-blob",
        "chart.tgz",
        "--bundle",
        "good.sigstore.json",
        "--certificate-identity",
        ALICE,
    ])
    .failure(&["needs --certificate-oidc-issuer"]);
}

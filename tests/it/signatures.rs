//! `--verify-key`: images must carry a cosign signature by the key. The signatures are made
//! here as cosign makes them (a simple-signing payload, its base64 signature in the layer
//! annotation, the manifest tagged `sha256-<hex>.sig`) and pushed to the real registry.

use crate::harness::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A key pair of either kind cosign makes.
enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    fn ecdsa() -> Signer {
        Signer::Ecdsa(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }

    fn ed25519() -> Signer {
        Signer::Ed25519(Ed25519KeyPair::generate().unwrap())
    }

    /// The public key as cosign.pub holds it (PEM SubjectPublicKeyInfo), written to `path`.
    fn write_public_key(&self, path: &std::path::Path) {
        let der = match self {
            Signer::Ecdsa(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        };
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<String> = body
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        std::fs::write(
            path,
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
    }

    fn sign(&self, message: &[u8]) -> String {
        let signature = match self {
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(signature)
    }
}

/// Signs, as cosign does, `signed_digest` and attaches the signature to the manifest
/// `manifest_digest` of `repository` (tag `sha256-<hex>.sig`).
fn attach_signature(
    registry: &Registry,
    repository: &str,
    manifest_digest: &str,
    signed_digest: &str,
    signer: &Signer,
) {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{repository}", registry.host())},
            "image": {"docker-manifest-digest": signed_digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap();
    let payload_digest = registry.push_blob(repository, &payload);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]}
    }))
    .unwrap();
    let config_digest = registry.push_blob(repository, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": signer.sign(&payload)}
        }]
    }))
    .unwrap();
    let tag = format!("sha256-{}.sig", hex_of(manifest_digest));
    registry.push_manifest(repository, &tag, OCI_MANIFEST, &manifest);
}

fn app(registry: &Registry, repository: &str, message: &str) -> Pushed {
    registry.push_app(repository, "v1", message)
}

#[test]
fn only_images_signed_by_the_key_for_their_digest_pass() {
    let registry = Registry::start();
    let haul = Haul::new();
    let signer = Signer::ecdsa();
    let other = Signer::ecdsa();
    let key = haul.workdir.path().join("cosign.pub");
    signer.write_public_key(&key);
    let key = key.to_str().unwrap();

    // Signed by the key: exported, pulled, copied.
    let signed_repository = unique("test/signed");
    let signed = app(&registry, &signed_repository, "signed");
    attach_signature(
        &registry,
        &signed_repository,
        &signed.manifest_digest,
        &signed.manifest_digest,
        &signer,
    );
    haul.run(&[
        "export",
        &signed.reference,
        "--verify-key",
        key,
        "-o",
        "signed.tar",
    ])
    .success();
    haul.run(&["pull", &signed.reference, "--verify-key", key])
        .success();
    let dest = Registry::start();
    haul.run(&[
        "copy",
        &signed.reference,
        &format!("{}/copied/app", dest.host()),
        "--verify-key",
        key,
    ])
    .success();

    // Signed by another key.
    let other_repository = unique("test/other-key");
    let by_other = app(&registry, &other_repository, "other key");
    attach_signature(
        &registry,
        &other_repository,
        &by_other.manifest_digest,
        &by_other.manifest_digest,
        &other,
    );
    haul.run(&[
        "export",
        &by_other.reference,
        "--verify-key",
        key,
        "-o",
        "other.tar",
    ])
    .failure(&[
        &by_other.reference,
        "not signed by",
        "cosign.pub",
        "not by this key",
    ]);

    // A good signature of another manifest, attached to this one.
    let moved_repository = unique("test/moved");
    let moved = app(&registry, &moved_repository, "moved");
    attach_signature(
        &registry,
        &moved_repository,
        &moved.manifest_digest,
        &signed.manifest_digest,
        &signer,
    );
    haul.run(&[
        "export",
        &moved.reference,
        "--verify-key",
        key,
        "-o",
        "moved.tar",
    ])
    .failure(&["signs another manifest", &signed.manifest_digest]);

    // Not signed at all.
    let unsigned = app(&registry, &unique("test/unsigned"), "unsigned");
    haul.run(&[
        "export",
        &unsigned.reference,
        "--verify-key",
        key,
        "-o",
        "unsigned.tar",
    ])
    .failure(&["no cosign signature", ".sig"]);

    // Several at once: each failure named; nothing written.
    let run = haul
        .run(&[
            "export",
            &signed.reference,
            &unsigned.reference,
            &by_other.reference,
            "--verify-key",
            key,
            "-o",
            "all.tar",
        ])
        .failure(&[
            "2 images are not signed",
            &unsigned.reference,
            &by_other.reference,
        ]);
    assert!(
        !run.stderr.contains(&format!("{}: ", signed.reference)),
        "{}",
        run.stderr
    );
    for name in ["other.tar", "moved.tar", "unsigned.tar", "all.tar"] {
        assert!(!haul.workdir.path().join(name).exists(), "{name}");
    }

    // Any one of several keys suffices; an Ed25519 key works as well.
    let ed = Signer::ed25519();
    let ed_key = haul.workdir.path().join("ed25519.pub");
    ed.write_public_key(&ed_key);
    let ed_repository = unique("test/ed25519");
    let ed_signed = app(&registry, &ed_repository, "ed25519");
    attach_signature(
        &registry,
        &ed_repository,
        &ed_signed.manifest_digest,
        &ed_signed.manifest_digest,
        &ed,
    );
    haul.run(&[
        "export",
        &ed_signed.reference,
        &signed.reference,
        "--verify-key",
        key,
        "--verify-key",
        ed_key.to_str().unwrap(),
        "-o",
        "both.tar",
    ])
    .success();

    // A file that is not a key is named before anything is fetched.
    std::fs::write(haul.workdir.path().join("bad.pub"), "not a key").unwrap();
    haul.run(&["pull", &signed.reference, "--verify-key", "bad.pub"])
        .failure(&["bad.pub", "not a public key in PEM"]);
}

/// Attaches an artifact (an SBOM or an attestation) as cosign does: a manifest with one layer
/// of `media_type`, tagged `sha256-<hex>.<suffix>`. Returns the artifact's manifest digest.
fn attach_artifact(
    registry: &Registry,
    repository: &str,
    subject: &str,
    suffix: &str,
    media_type: &str,
    content: &[u8],
) -> String {
    let layer_digest = registry.push_blob(repository, content);
    let config =
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = registry.push_blob(repository, config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": layer_digest, "size": content.len()}]
    }))
    .unwrap();
    let tag = format!("sha256-{}.{suffix}", hex_of(subject));
    registry.push_manifest(repository, &tag, OCI_MANIFEST, &manifest)
}

fn tar_file(tar: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    tar_entries(tar)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, bytes)| bytes)
}

#[test]
fn signatures_attestations_and_sboms_travel_and_are_checked_offline() {
    let registry = Registry::start();
    let repository = unique("test/referrers");
    let image = app(&registry, &repository, "with referrers");
    let signer = Signer::ecdsa();
    let haul = Haul::new();
    let key = haul.workdir.path().join("cosign.pub");
    signer.write_public_key(&key);
    let key = key.to_str().unwrap().to_string();
    attach_signature(
        &registry,
        &repository,
        &image.manifest_digest,
        &image.manifest_digest,
        &signer,
    );
    let sbom = attach_artifact(
        &registry,
        &repository,
        &image.manifest_digest,
        "sbom",
        "text/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    );
    attach_artifact(
        &registry,
        &repository,
        &image.manifest_digest,
        "att",
        "application/vnd.dsse.envelope.v1+json",
        br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#,
    );
    // A signature of the SBOM: followed too.
    attach_signature(&registry, &repository, &sbom, &sbom, &signer);
    let tags = |digest: &str, suffix: &str| format!("sha256-{}.{suffix}", hex_of(digest));
    let attached = [
        tags(&image.manifest_digest, "sig"),
        tags(&image.manifest_digest, "att"),
        tags(&image.manifest_digest, "sbom"),
        tags(&sbom, "sig"),
    ];

    // inspect shows them, by kind.
    let shown = haul.run(&["inspect", &image.reference]).success();
    let text = String::from_utf8_lossy(&shown.stdout);
    for kind in [
        "signature (cosign)",
        "attestation (cosign)",
        "SBOM (cosign)",
    ] {
        assert!(text.contains(kind), "{kind} not in {text}");
    }
    let json = haul.run(&["inspect", &image.reference, "--json"]).success();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["referrers"].as_array().unwrap().len(), 4, "{json}");

    // The docker format: the attachments ride in blobs/ and the record only.
    haul.run(&["export", &image.reference, "-o", "plain.tar"])
        .success();
    haul.run(&["export", &image.reference, "--referrers", "-o", "with.tar"])
        .success();
    let plain = haul.workdir.path().join("plain.tar");
    let with = haul.workdir.path().join("with.tar");
    for name in ["manifest.json", "index.json", "repositories"] {
        assert_eq!(
            tar_file(&plain, name),
            tar_file(&with, name),
            "{name} changed"
        );
    }
    let record: serde_json::Value =
        serde_json::from_slice(&tar_file(&with, "haul-referrers.json").unwrap()).unwrap();
    let recorded: Vec<&str> = record["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["tag"].as_str())
        .collect();
    for tag in &attached {
        assert!(
            recorded.contains(&tag.as_str()),
            "{tag} not in {recorded:?}"
        );
    }
    // Both Docker stores load it exactly as the tar without them.
    for engine in [Engine::Classic, Engine::ContainerdStore] {
        let _cleanup = engine.cleanup(&[&image.reference]);
        let loaded_plain = engine.load(&plain);
        engine.remove(&image.reference);
        let loaded_with = engine.load(&with);
        assert_eq!(loaded_plain, loaded_with, "{engine:?}");
        assert_eq!(engine.run(&image.reference, &[]).trim(), "with referrers");
    }

    // Checked offline: signed by the key; not by another; nothing carried, nothing to check.
    haul.run(&["verify", "with.tar", "--key", &key]).success();
    let other = Signer::ecdsa();
    let other_key = haul.workdir.path().join("other.pub");
    other.write_public_key(&other_key);
    haul.run(&["verify", "with.tar", "--key", other_key.to_str().unwrap()])
        .failure(&["not signed by", "other.pub", "not by this key"]);
    let unsigned = haul
        .run(&["verify", "plain.tar", "--key", &key])
        .failure(&["carries no cosign signature", "--referrers"]);
    // A tar that fails the key check is not called "ok".
    assert!(
        !String::from_utf8_lossy(&unsigned.stdout).contains("ok:"),
        "{}",
        String::from_utf8_lossy(&unsigned.stdout)
    );

    // The OCI layout lists them in index.json, named by their tags.
    haul.run(&[
        "export",
        &image.reference,
        "--referrers",
        "--format",
        "oci",
        "-o",
        "oci.tar",
    ])
    .success();
    let index = tar_json(&haul.workdir.path().join("oci.tar"), "index.json");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    for tag in &attached {
        assert!(names.contains(&tag.as_str()), "{tag} not in {names:?}");
    }
    haul.run(&["verify", "oci.tar", "--key", &key]).success();

    // Pushed and copied, every attachment keeps its digest and its tag.
    let digest_at = |reference: &str| {
        sha256(&skopeo_raw(reference, None).unwrap_or_else(|| panic!("{reference} is missing")))
    };
    let pushed_to = Registry::start();
    haul.run(&["push", "with.tar", &pushed_to.host()]).success();
    let copied_to = Registry::start();
    haul.run(&[
        "copy",
        &image.reference,
        &format!("{}/{repository}", copied_to.host()),
        "--referrers",
    ])
    .success();
    for site in [&pushed_to, &copied_to] {
        assert_eq!(
            digest_at(&format!("{}/{repository}:v1", site.host())),
            image.manifest_digest
        );
        for tag in &attached {
            assert_eq!(
                digest_at(&format!("{}/{repository}:{tag}", site.host())),
                digest_at(&format!("{}/{repository}:{tag}", registry.host())),
                "{tag}"
            );
        }
    }
    // The copy checks the signature at the destination's source: --verify-key and
    // --referrers together.
    haul.run(&[
        "pull",
        &image.reference,
        "--referrers",
        "--verify-key",
        &key,
    ])
    .success();
}

#[test]
fn referrers_the_api_lists_travel_and_a_destination_without_it_gets_the_fallback_tag() {
    // distribution 2.8 has no referrers API: a proxy in front of it answers
    // `GET /v2/<name>/referrers/<digest>` as the OCI distribution spec 1.1 documents (200, an
    // OCI index of the artifacts' descriptors, each with its artifactType).
    let registry = Registry::start();
    let repository = unique("test/api-referrers");
    let image = app(&registry, &repository, "listed");
    let empty_config = b"{}";
    let config_digest = registry.push_blob(&repository, empty_config);
    let sbom = br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#;
    let sbom_digest = registry.push_blob(&repository, sbom);
    let artifact_type = "application/vnd.cyclonedx+json";
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": sbom_digest, "size": sbom.len()}],
        "subject": {"mediaType": DOCKER_MANIFEST, "digest": image.manifest_digest, "size": image_manifest_size(&registry, &repository)},
    }))
    .unwrap();
    let artifact_digest = sha256(&artifact);
    registry.push_manifest(&repository, &artifact_digest, OCI_MANIFEST, &artifact);
    let proxy = crate::fault_proxy::FaultProxy::start(&registry.host());
    let listing = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": artifact_digest,
            "size": artifact.len(),
            "artifactType": artifact_type
        }]
    }))
    .unwrap();
    proxy.inject(
        &format!("/referrers/{}", image.manifest_digest),
        crate::fault_proxy::Fault::Respond {
            status: 200,
            content_type: OCI_INDEX.to_string(),
            body: listing,
        },
        u32::MAX,
    );
    let reference = image.reference.replace(&registry.host(), &proxy.host());
    let haul = Haul::new();
    haul.run(&["export", &reference, "--referrers", "-o", "listed.tar"])
        .success();
    let record: serde_json::Value = serde_json::from_slice(
        &tar_entries(&haul.workdir.path().join("listed.tar"))
            .into_iter()
            .find(|(n, _)| n == "haul-referrers.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let attachment = &record["attachments"][0];
    assert!(attachment["tag"].is_null(), "{record}");
    assert_eq!(
        attachment["manifests"][0]["digest"],
        artifact_digest.as_str()
    );

    // Pushed to a registry without the API: by digest, and listed under the fallback tag.
    let dest = Registry::start();
    haul.run(&["push", "listed.tar", &dest.host()]).success();
    let fallback = format!(
        "{}/{repository}:sha256-{}",
        dest.host(),
        hex_of(&image.manifest_digest)
    );
    let listed = skopeo_raw(&fallback, None).expect("the fallback tag is there");
    let index: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        artifact_digest.as_str(),
        "{index}"
    );
    assert_eq!(
        index["manifests"][0]["artifactType"], artifact_type,
        "{index}"
    );
}

/// The size of the manifest tagged v1 (as the registry serves it).
fn image_manifest_size(registry: &Registry, repository: &str) -> usize {
    skopeo_raw(&format!("{}/{repository}:v1", registry.host()), None)
        .map_or(0, |manifest| manifest.len())
}

//! Real sigstore material, checked offline: bundles and trusted roots from
//! sigstore-conformance (`test/assets/bundle-verify/`) and sigstore-go
//! (`pkg/testing/data/`), both Apache-2.0 (see `testdata/README.md`). Each is verified as it
//! was made, then changed one way and refused for that reason.

use super::material::{self, Material};
use super::trust::TrustedRoot;
use super::verify::{Artifact, Matcher, Policy, verify};

fn root(name: &str) -> TrustedRoot {
    let bytes = std::fs::read(format!(
        "{}/src/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    TrustedRoot::parse(&bytes, name).unwrap()
}

fn bundle_json(name: &str) -> serde_json::Value {
    let bytes = std::fs::read(format!(
        "{}/src/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn material(json: &serde_json::Value) -> Material {
    material::from_bundle(&serde_json::to_vec(json).unwrap()).unwrap()
}

fn anyone() -> Policy {
    Policy {
        identity: Matcher::Pattern(regex::Regex::new("").unwrap()),
        issuer: Matcher::Pattern(regex::Regex::new("").unwrap()),
    }
}

/// 2026-12-01, after every vector was made.
const NOW: i64 = 1_796_083_200;

#[test]
fn rekor_v1_dsse_bundle_of_public_good_verifies() {
    let json = bundle_json("dsse_v3.json");
    let signer = verify(
        &material(&json),
        None,
        &root("public-good.json"),
        &anyone(),
        NOW,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signer.time, 1_734_374_576);
    assert!(
        !signer.identity.is_empty() && !signer.issuer.is_empty(),
        "{signer:?}"
    );
}

#[test]
fn rekor_v1_intoto_bundle_v0_1_with_a_promise_only_verifies() {
    let json = bundle_json("intoto.json");
    let signer = verify(
        &material(&json),
        None,
        &root("public-good.json"),
        &anyone(),
        NOW,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signer.time, 1_668_034_836);
}

#[test]
fn rekor_v2_message_signature_with_a_timestamp_verifies() {
    let json = bundle_json("r2.json");
    let signer = verify(
        &material(&json),
        None,
        &root("r2dsse_tr.json"),
        &anyone(),
        NOW,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(signer.issuer.starts_with("https://"), "{signer:?}");
}

#[test]
fn rekor_v2_dsse_bundle_verifies() {
    let json = bundle_json("r2dsse.json");
    verify(
        &material(&json),
        None,
        &root("r2dsse_tr.json"),
        &anyone(),
        NOW,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn refused(
    material: &Material,
    artifact: Option<&Artifact<'_>>,
    root: &TrustedRoot,
    policy: &Policy,
    now: i64,
) -> String {
    match verify(material, artifact, root, policy, now) {
        Ok(signer) => panic!("accepted: {signer:?}"),
        Err(reason) => reason,
    }
}

fn exact(identity: &str, issuer: &str) -> Policy {
    Policy {
        identity: Matcher::Exact(identity.to_string()),
        issuer: Matcher::Exact(issuer.to_string()),
    }
}

#[test]
fn each_change_to_a_real_bundle_is_refused_with_its_reason() {
    let json = bundle_json("dsse_v3.json");
    let good = material(&json);
    let public_good = root("public-good.json");
    let signer = verify(&good, None, &public_good, &anyone(), NOW).unwrap();

    // The identity policy, exact and by pattern.
    verify(
        &good,
        None,
        &public_good,
        &exact(&signer.identity, &signer.issuer),
        NOW,
    )
    .unwrap();
    let reason = refused(
        &good,
        None,
        &public_good,
        &exact("someone@example.com", &signer.issuer),
        NOW,
    );
    assert!(
        reason.contains(&format!(
            "signed by {}, not someone@example.com",
            signer.identity
        )),
        "{reason}"
    );
    let reason = refused(
        &good,
        None,
        &public_good,
        &exact(&signer.identity, "https://accounts.example.com"),
        NOW,
    );
    assert!(
        reason.contains("vouched for by") && reason.contains("not https://accounts.example.com"),
        "{reason}"
    );
    let pattern = Policy {
        identity: Matcher::Pattern(regex::Regex::new("^https://github\\.com/").unwrap()),
        issuer: Matcher::Pattern(regex::Regex::new("githubusercontent").unwrap()),
    };
    assert_eq!(
        verify(&good, None, &public_good, &pattern, NOW).is_ok(),
        signer.identity.starts_with("https://github.com/")
    );

    // A log time after the clock.
    let reason = refused(&good, None, &public_good, &anyone(), 1_734_374_576 - 3600);
    assert!(reason.contains("is in the future"), "{reason}");

    // An inclusion proof with one hash changed.
    let mut changed = json.clone();
    let hash = changed["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, hash).unwrap();
    bytes[0] ^= 1;
    changed["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes).into();
    let reason = refused(&material(&changed), None, &public_good, &anyone(), NOW);
    assert!(
        reason.contains("inclusion proof does not lead to the checkpoint"),
        "{reason}"
    );

    // A checkpoint whose text changed after signing (its signature no longer verifies).
    let mut changed = json.clone();
    let note = changed["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
        .as_str()
        .unwrap()
        .replacen('\n', "\nextra\n", 3)
        .replacen("\nextra\n", "\n", 2);
    changed["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"] =
        note.into();
    let reason = refused(&material(&changed), None, &public_good, &anyone(), NOW);
    assert!(
        reason.contains("checkpoint signature does not verify"),
        "{reason}"
    );

    // A payload that is not the one logged.
    let mut changed = json.clone();
    changed["dsseEnvelope"]["payload"] = "e30=".into();
    let reason = refused(&material(&changed), None, &public_good, &anyone(), NOW);
    assert!(
        reason.contains("log entry records another payload"),
        "{reason}"
    );

    // A root without the certificate authority, or without the log.
    let mut without_ca = public_good.clone();
    without_ca.certificate_authorities.clear();
    let reason = refused(&good, None, &without_ca, &anyone(), NOW);
    assert!(
        reason.contains("not issued by a certificate authority of the trusted root"),
        "{reason}"
    );
    let mut without_log = public_good.clone();
    without_log.tlogs.clear();
    let reason = refused(&good, None, &without_log, &anyone(), NOW);
    assert!(
        reason.contains("by a log the trusted root does not hold"),
        "{reason}"
    );
    let mut without_ct = public_good.clone();
    without_ct.ctlogs.clear();
    let reason = refused(&good, None, &without_ct, &anyone(), NOW);
    assert!(reason.contains("SCT is by no CT log"), "{reason}");
}

#[test]
fn a_message_signature_is_of_its_artifact_and_needs_its_timestamp() {
    let json = bundle_json("r2.json");
    let good = material(&json);
    let staging = root("r2dsse_tr.json");
    let super::material::Content::Message {
        digest: Some(digest),
        ..
    } = good.content
    else {
        panic!("a message signature");
    };
    verify(
        &good,
        Some(&Artifact::Sha256(digest)),
        &staging,
        &anyone(),
        NOW,
    )
    .unwrap();
    let reason = refused(
        &good,
        Some(&Artifact::Sha256([7; 32])),
        &staging,
        &anyone(),
        NOW,
    );
    assert!(reason.contains("signs another artifact"), "{reason}");

    // Rekor v2 records no time: without its timestamp nothing places the signature in time.
    let mut untimed = good.clone();
    untimed.timestamps.clear();
    let reason = refused(&untimed, None, &staging, &anyone(), NOW);
    assert!(reason.contains("nothing places it in time"), "{reason}");
    // A timestamp authority the root does not hold.
    let mut no_tsa = staging.clone();
    no_tsa.timestamp_authorities.clear();
    let reason = refused(&good, None, &no_tsa, &anyone(), NOW);
    assert!(
        reason.contains("timestamp is by no timestamp authority"),
        "{reason}"
    );
    // The checkpoint of another log: the root's log under another host name.
    let mut other_host = staging.clone();
    for log in &mut other_host.tlogs {
        log.base_url = "https://log.example.com".to_string();
    }
    let reason = refused(&good, None, &other_host, &anyone(), NOW);
    assert!(reason.contains("checkpoint is of another log"), "{reason}");
}

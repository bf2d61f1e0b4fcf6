//! Real sigstore material, checked offline: bundles and trusted roots from
//! sigstore-conformance (`test/assets/bundle-verify/`) and sigstore-go
//! (`pkg/testing/data/`), both Apache-2.0 (see `testdata/README.md`). Each is verified as it
//! was made, then changed one way and refused for that reason.

use super::material::{self, Material};
use super::sct::SctError;
use super::tlog::{Recorded, TlogError};
use super::trust::{TrustedRoot, Window};
use super::tsa::TsaError;
use super::verify::{Artifact, Matcher, Policy, Refusal, verify};
use super::x509::{self, Purpose, X509Error};

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
) -> Refusal {
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
    assert_eq!(
        reason,
        Refusal::Identity {
            identities: vec![signer.identity.clone()],
            wanted: "someone@example.com".to_string(),
        }
    );
    assert_eq!(
        reason.to_string(),
        format!(
            "it is signed by {}, not someone@example.com",
            signer.identity
        )
    );
    let reason = refused(
        &good,
        None,
        &public_good,
        &exact(&signer.identity, "https://accounts.example.com"),
        NOW,
    );
    assert_eq!(
        reason,
        Refusal::Issuer {
            issuer: signer.issuer.clone(),
            wanted: "https://accounts.example.com".to_string(),
        }
    );
    assert_eq!(
        reason.to_string(),
        format!(
            "its identity was vouched for by {}, not https://accounts.example.com",
            signer.issuer
        )
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
    assert_eq!(
        reason,
        Refusal::InFuture {
            time: 1_734_374_576
        }
    );
    assert_eq!(
        reason.to_string(),
        "its log entry's time, 2024-12-16T18:42:56Z, is in the future"
    );

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
    assert_eq!(reason, Refusal::LogEntry(TlogError::ProofDoesNotLeadToRoot));
    assert!(
        reason
            .to_string()
            .contains("inclusion proof does not lead to the checkpoint"),
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
    assert_eq!(
        reason,
        Refusal::LogEntry(TlogError::CheckpointSignatureInvalid)
    );
    assert!(
        reason
            .to_string()
            .contains("checkpoint signature does not verify"),
        "{reason}"
    );

    // A payload that is not the one logged.
    let mut changed = json.clone();
    changed["dsseEnvelope"]["payload"] = "e30=".into();
    let reason = refused(&material(&changed), None, &public_good, &anyone(), NOW);
    assert_eq!(
        reason,
        Refusal::LogEntry(TlogError::RecordsAnother(Recorded::Payload))
    );
    assert_eq!(reason.to_string(), "its log entry records another payload");

    // A root without the certificate authority, or without the log.
    let mut without_ca = public_good.clone();
    without_ca.certificate_authorities.clear();
    let reason = refused(&good, None, &without_ca, &anyone(), NOW);
    assert!(matches!(reason, Refusal::NoAuthority { .. }), "{reason:?}");
    assert!(
        reason
            .to_string()
            .contains("not issued by a certificate authority of the trusted root"),
        "{reason}"
    );
    let mut without_log = public_good.clone();
    without_log.tlogs.clear();
    let reason = refused(&good, None, &without_log, &anyone(), NOW);
    assert!(
        matches!(reason, Refusal::LogEntry(TlogError::UnknownLog { .. })),
        "{reason:?}"
    );
    assert!(
        reason
            .to_string()
            .contains("by a log the trusted root does not hold"),
        "{reason}"
    );
    let mut without_ct = public_good.clone();
    without_ct.ctlogs.clear();
    let reason = refused(&good, None, &without_ct, &anyone(), NOW);
    assert_eq!(reason, Refusal::Transparency(SctError::NoCtLog));
    assert!(
        reason.to_string().contains("SCT is by no CT log"),
        "{reason}"
    );

    // No log entry; one without the inclusion proof a v0.3 bundle must carry.
    let mut unlogged = good.clone();
    unlogged.entries.clear();
    assert_eq!(
        refused(&unlogged, None, &public_good, &anyone(), NOW),
        Refusal::NoLogEntry
    );
    let mut changed = json.clone();
    changed["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    assert_eq!(
        refused(&material(&changed), None, &public_good, &anyone(), NOW),
        Refusal::NoInclusionProof
    );

    // No certificate: signed with a key.
    let mut keyed = good.clone();
    keyed.certificate = None;
    assert_eq!(
        refused(&keyed, None, &public_good, &anyone(), NOW),
        Refusal::SignedWithKey
    );

    // The log's key retired before it logged the signature.
    let mut retired = public_good.clone();
    for log in &mut retired.tlogs {
        log.valid = Window {
            start: 0,
            end: Some(1),
        };
    }
    assert_eq!(
        refused(&good, None, &retired, &anyone(), NOW),
        Refusal::LogEntry(TlogError::OutsideLogValidity)
    );
}

#[test]
fn a_certificate_used_outside_its_validity_is_refused_as_such() {
    let good = material(&bundle_json("dsse_v3.json"));
    let certificate = good.certificate.as_ref().unwrap();
    let public_good = root("public-good.json");
    let (from, to) = x509::validity(certificate);
    let late = to + 3600;
    let reason = public_good
        .certificate_authorities
        .iter()
        .find_map(|authority| {
            x509::chains_to(certificate, &authority.chain, late, Purpose::CodeSigning).err()
        })
        .unwrap();
    assert_eq!(
        reason,
        X509Error::NotValidThen {
            time: late,
            from,
            to
        }
    );
    let refusal = Refusal::Certificate { reason };
    assert!(
        refusal
            .to_string()
            .starts_with("its certificate was not valid when it was used ("),
        "{refusal}"
    );
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
    assert_eq!(reason, Refusal::OtherArtifact);
    assert!(
        reason.to_string().contains("signs another artifact"),
        "{reason}"
    );

    // Rekor v2 records no time: without its timestamp nothing places the signature in time.
    let mut untimed = good.clone();
    untimed.timestamps.clear();
    let reason = refused(&untimed, None, &staging, &anyone(), NOW);
    assert_eq!(reason, Refusal::NoTime);
    assert!(
        reason.to_string().contains("nothing places it in time"),
        "{reason}"
    );
    // A timestamp authority the root does not hold.
    let mut no_tsa = staging.clone();
    no_tsa.timestamp_authorities.clear();
    let reason = refused(&good, None, &no_tsa, &anyone(), NOW);
    assert_eq!(reason, Refusal::Timestamp(TsaError::NoAuthority));
    assert!(
        reason
            .to_string()
            .contains("timestamp is by no timestamp authority"),
        "{reason}"
    );
    // A timestamp of another signature, and one that cannot be read.
    let mut other_timestamp = good.clone();
    other_timestamp.timestamps = material(&bundle_json("r2dsse.json")).timestamps;
    assert!(!other_timestamp.timestamps.is_empty());
    assert_eq!(
        refused(&other_timestamp, None, &staging, &anyone(), NOW),
        Refusal::Timestamp(TsaError::OfAnotherSignature)
    );
    other_timestamp.timestamps = vec![b"\x30\x00".to_vec()];
    assert_eq!(
        refused(&other_timestamp, None, &staging, &anyone(), NOW),
        Refusal::Timestamp(TsaError::Malformed)
    );
    // A log whose key was not in use when the timestamp says it was signed.
    let mut retired = staging.clone();
    for log in &mut retired.tlogs {
        log.valid = Window {
            start: 0,
            end: Some(1),
        };
    }
    assert!(
        matches!(
            refused(&good, None, &retired, &anyone(), NOW),
            Refusal::LogKeyNotInUse { .. }
        ),
        "a retired log key"
    );
    // The checkpoint of another log: the root's log under another host name.
    let mut other_host = staging.clone();
    for log in &mut other_host.tlogs {
        log.base_url = "https://log.example.com".to_string();
    }
    let reason = refused(&good, None, &other_host, &anyone(), NOW);
    assert!(
        matches!(
            &reason,
            Refusal::LogEntry(TlogError::CheckpointOfAnotherLog { expected, .. })
                if expected == "log.example.com"
        ),
        "{reason:?}"
    );
    assert!(
        reason.to_string().contains("checkpoint is of another log"),
        "{reason}"
    );
}

#[test]
fn refusals_read_as_before() {
    let cases = [
        (
            Refusal::Identity {
                identities: vec![],
                wanted: "a@example.com".to_string(),
            },
            "it is signed by no identity, not a@example.com",
        ),
        (
            Refusal::Identity {
                identities: vec!["b@example.com".to_string(), "c@example.com".to_string()],
                wanted: "/^a@/".to_string(),
            },
            "it is signed by b@example.com, c@example.com, not /^a@/",
        ),
        (
            Refusal::Issuer {
                issuer: String::new(),
                wanted: "https://accounts.example.com".to_string(),
            },
            "its identity was vouched for by no OIDC issuer, not https://accounts.example.com",
        ),
        (
            Refusal::Certificate {
                reason: X509Error::NotFor {
                    purpose: Purpose::CodeSigning,
                },
            },
            "its certificate is not for code signing",
        ),
        (
            Refusal::LogEntry(TlogError::UnknownLog {
                log_id: vec![0xab, 0x01],
            }),
            "its log entry is by a log the trusted root does not hold (ab01)",
        ),
        (
            Refusal::LogEntry(TlogError::CheckpointOfAnotherLog {
                origin: "a.example".to_string(),
                expected: "b.example".to_string(),
            }),
            "its log entry's checkpoint is of another log (\"a.example\", not \"b.example\")",
        ),
        (
            Refusal::Timestamp(TsaError::Signer(X509Error::NotTimestampAuthority)),
            "its timestamp's signer: the certificate is not a timestamp authority's (its one \
             extended key usage must be timeStamping, critical)",
        ),
        (
            Refusal::LogKeyNotInUse { time: 0 },
            "its log entry's log key was not in use at 1970-01-01T00:00:00Z",
        ),
    ];
    for (refusal, text) in cases {
        assert_eq!(refusal.to_string(), text);
    }
}

//! haul against what the real clients write and read: cosign 2 (`.sig`, `.att`, `.sbom` tags,
//! `--registry-referrers-mode=oci-1-1` referrers, `--new-bundle-format` attestations), cosign 3
//! (sigstore bundles as OCI 1.1 referrers) and oras (`attach`, nested attach, `push` of an
//! artifact that is no image), all against distribution 2.8, which has no referrers API, so
//! every referrer is listed under the fallback tag `sha256-<hex>`. It checks that `push` and
//! `copy --referrers` merge with what a destination already holds (a site's countersignature,
//! attestation and report survive), that `--verify-key` and `verify --key` accept a signature
//! wherever cosign puts one (and one of an index alone), that `inspect` lists each artifact of
//! a tar, that an artifact keeps its digest through copy, pull, export and push, and that
//! cosign and oras read at the destination what haul pushed, and skopeo finds there the
//! cosign signature its `sigstoreSigned` policy would check. The clients run offline with
//! keys they made (see harness/clients.rs).
//!
//! Over 600 lines because each scenario is a sequence of client and haul commands whose every
//! step is checked, and they share the helpers at the top.

use crate::harness::*;

/// A SLSA provenance predicate (v0.2), as `cosign attest --type slsaprovenance` takes it.
const PROVENANCE: &[u8] = br#"{"builder":{"id":"https://example.invalid/builder"},"buildType":"https://example.invalid/buildtype","invocation":{"configSource":{}},"materials":[]}"#;

/// An SPDX SBOM, as `cosign attach sbom` takes it.
const SBOM: &[u8] = br#"{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"demo","documentNamespace":"https://example.invalid/demo","creationInfo":{"created":"2025-01-01T00:00:00Z","creators":["Tool: hand"]},"packages":[]}"#;

const REPORT: &str = "application/vnd.example.report";
const NOTE: &str = "application/vnd.example.note";
const SCAN: &str = "application/vnd.example.scan";
const CHART: &str = "application/vnd.example.chart";

/// A tiny linux/amd64 OCI image (one small text layer), pushed as `repository:v1`.
fn tiny(registry: &Registry, repository: &str, message: &str) -> Pushed {
    let image = Image::new(
        vec![Layer::text(
            "etc/message",
            &format!("{message}\n"),
            Compression::Gzip,
        )],
        true,
        "amd64",
        None,
        message,
    );
    registry.push(repository, "v1", &image)
}

/// A two-platform OCI index (linux/amd64, linux/arm64) of tiny images, pushed as
/// `repository:multi`; returns the index's digest and the platforms' manifest digests.
fn tiny_index(registry: &Registry, repository: &str) -> (String, Vec<String>) {
    let platform = |arch: &str| {
        Image::new(
            vec![Layer::text(
                "etc/arch",
                &format!("{arch}\n"),
                Compression::Gzip,
            )],
            true,
            arch,
            None,
            arch,
        )
    };
    let (amd64, arm64) = (platform("amd64"), platform("arm64"));
    let index = registry.push_index(
        repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", None),
        ],
        true,
    );
    (
        index,
        vec![sha256(&amd64.manifest()), sha256(&arm64.manifest())],
    )
}

/// `host/repository@digest`.
fn pinned(host: &str, repository: &str, digest: &str) -> String {
    format!("{host}/{repository}@{digest}")
}

/// The digest of the manifest `reference` names (read by skopeo), or `None` if it is missing.
fn digest_of(reference: &str) -> Option<String> {
    skopeo_raw(reference, None).map(|raw| sha256(&raw))
}

/// The manifest `reference` names, as the registry serves it.
#[track_caller]
fn manifest(reference: &str) -> serde_json::Value {
    let raw = skopeo_raw(reference, None).unwrap_or_else(|| panic!("{reference} is missing"));
    serde_json::from_slice(&raw).unwrap()
}

/// cosign's tag for the signatures of `digest`.
fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", hex_of(digest))
}

/// cosign's tag for the attestations of `digest`.
fn att_tag(digest: &str) -> String {
    format!("sha256-{}.att", hex_of(digest))
}

/// The OCI 1.1 fallback tag: an index of what refers to `digest`.
fn fallback_tag(digest: &str) -> String {
    format!("sha256-{}", hex_of(digest))
}

/// The layer descriptors of the manifest `reference` names.
#[track_caller]
fn layers(reference: &str) -> Vec<serde_json::Value> {
    manifest(reference)["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} has no layers"))
        .clone()
}

/// The digests an index (a fallback tag) lists.
#[track_caller]
fn listed(reference: &str) -> Vec<String> {
    manifest(reference)["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} is no index"))
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `after` begins with `before` (what the destination had stays, first) and holds no layer
/// twice (same digest and same annotations).
#[track_caller]
fn assert_kept_first(before: &[serde_json::Value], after: &[serde_json::Value], what: &str) {
    assert!(
        after.len() >= before.len() && after[..before.len()] == *before,
        "{what}: the destination's layers are not kept first.\nbefore: {before:#?}\nafter: {after:#?}"
    );
    for (i, layer) in after.iter().enumerate() {
        let twice = after[i + 1..]
            .iter()
            .any(|l| l["digest"] == layer["digest"] && l["annotations"] == layer["annotations"]);
        assert!(!twice, "{what}: a layer is there twice: {after:#?}");
    }
}

/// Debian bookworm's skopeo (1.9.3, containers/image): a second reader of what haul wrote.
const SKOPEO: &str = "/usr/bin/skopeo";

/// `skopeo ARGS` with the clients' home as its home and without the caller's proxies; its
/// output, whatever its exit.
fn skopeo(clients: &Clients, args: &[&str]) -> std::process::Output {
    let home = clients.home.path();
    let mut command = std::process::Command::new(SKOPEO);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_lowercase()
            .ends_with("_proxy")
        {
            command.env_remove(&name);
        }
    }
    command
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_RUNTIME_DIR", home);
    output_within(&mut command, None, CLIENT_TIMEOUT)
}

/// Each digest once in `digests`.
#[track_caller]
fn assert_once(digests: &[String], wanted: &[&str], what: &str) {
    for digest in wanted {
        let n = digests.iter().filter(|d| d == digest).count();
        assert_eq!(n, 1, "{what}: {digest} is listed {n} times in {digests:?}");
    }
}

#[test]
fn a_second_push_and_copy_keep_what_the_destination_added_and_bring_what_is_new() {
    let clients = Clients::new();
    let source = Registry::start();
    let dest = Registry::start();
    let repository = unique("test/merge");
    let image = tiny(&source, &repository, "merged");
    let digest = image.manifest_digest.as_str();
    let at_source = pinned(&source.host(), &repository, digest);
    let at_dest = pinned(&dest.host(), &repository, digest);
    let src = clients.key_pair("src");
    let site = clients.key_pair("site");
    let later = clients.key_pair("later");
    let predicate = clients.write("provenance.json", PROVENANCE);
    clients.write("scan.txt", b"no findings\n");
    clients.write("report.txt", b"admitted by the site\n");

    // At the source: a signature (.sig), an attestation (.att), an OCI 1.1 artifact.
    clients.cosign_sign(&src, &at_source, &[]);
    clients.cosign_attest(&src, "slsaprovenance", &predicate, &at_source, &[]);
    let scan = clients.oras_attach(&at_source, SCAN, &["scan.txt"], &[]);

    // Exported and pushed to the site.
    let haul = Haul::new();
    haul.run(&[
        "export",
        &image.reference,
        "--referrers",
        "-o",
        "bundle.tar",
    ])
    .success();
    haul.run(&["push", "bundle.tar", &dest.host()]).success();
    clients.cosign_verify(&src, &at_dest, &[]);

    // The site countersigns, attests and attaches a report, as cosign and oras do: merged
    // into the .sig and .att tags and the fallback index.
    clients.cosign_sign(&site, &at_dest, &[]);
    clients.cosign_attest(&site, "slsaprovenance", &predicate, &at_dest, &[]);
    let report = clients.oras_attach(&at_dest, REPORT, &["report.txt"], &[]);
    let sig = format!("{}/{repository}:{}", dest.host(), sig_tag(digest));
    let att = format!("{}/{repository}:{}", dest.host(), att_tag(digest));
    let fallback = format!("{}/{repository}:{}", dest.host(), fallback_tag(digest));
    let site_sig = layers(&sig);
    let site_att = layers(&att);
    assert_eq!(
        site_sig.len(),
        2,
        "cosign merged the site's signature: {site_sig:#?}"
    );
    assert_eq!(
        site_att.len(),
        2,
        "cosign merged the site's attestation: {site_att:#?}"
    );
    assert_once(&listed(&fallback), &[&scan, &report], "oras at the site");

    // The same bundle again: nothing the site added is dropped, nothing is doubled.
    haul.run(&["push", "bundle.tar", &dest.host()]).success();
    assert_eq!(layers(&sig), site_sig, "the .sig tag after the second push");
    assert_eq!(layers(&att), site_att, "the .att tag after the second push");
    assert_once(
        &listed(&fallback),
        &[&scan, &report],
        "after the second push",
    );
    clients.cosign_verify(&site, &at_dest, &[]);
    clients.cosign_verify(&src, &at_dest, &[]);

    // A later signature at the source; copied with its referrers onto the site's.
    clients.cosign_sign(&later, &at_source, &[]);
    haul.run(&[
        "copy",
        "--referrers",
        &image.reference,
        &format!("{}/{repository}", dest.host()),
    ])
    .success();
    let merged = layers(&sig);
    assert_kept_first(&site_sig, &merged, "the .sig tag after the copy");
    assert_eq!(
        merged.len(),
        3,
        "the source's new signature is added: {merged:#?}"
    );
    assert_eq!(layers(&att), site_att, "the .att tag after the copy");
    assert_once(&listed(&fallback), &[&scan, &report], "after the copy");
    assert_eq!(
        digest_of(&image.reference.replace(&source.host(), &dest.host())).as_deref(),
        Some(digest)
    );

    // cosign finds every signature and attestation; oras lists the site's report and the
    // source's artifact.
    for key in [&site, &src, &later] {
        clients.cosign_verify(key, &at_dest, &[]);
    }
    for key in [&site, &src] {
        clients.ok(
            Client::Cosign,
            &[
                "verify-attestation",
                "--key",
                key.public(),
                "--insecure-ignore-tlog=true",
                "--type",
                "slsaprovenance",
                &at_dest,
            ],
        );
    }
    let discovered = clients.oras_referrers(&at_dest);
    for (digest, kind) in [(&report, REPORT), (&scan, SCAN)] {
        assert!(
            discovered.contains(&(digest.clone(), kind.to_string())),
            "{digest} ({kind}) not discovered at the destination: {discovered:?}"
        );
    }
}

/// How a signature is made, and where cosign puts it.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// cosign 2's default: a layer of the `sha256-<hex>.sig` tag.
    SigTag,
    /// cosign 2 `--registry-referrers-mode=oci-1-1`: an OCI 1.1 referrer.
    Referrer,
    /// cosign 3 `sign --key` with a signing config: a sigstore bundle (DSSE in-toto
    /// statement, predicate type https://sigstore.dev/cosign/sign/v1) as a referrer.
    Bundle,
}

#[test]
fn verify_key_accepts_a_signature_wherever_cosign_puts_it_and_refuses_another_key() {
    let clients = Clients::new();
    let source = Registry::start();
    let dest = Registry::start();
    let key = clients.key_pair("release");
    let other = clients.key_pair("other");
    let haul = Haul::new();
    for place in [Place::SigTag, Place::Referrer, Place::Bundle] {
        let name = format!("{place:?}").to_lowercase();
        let repository = unique(&format!("test/{name}"));
        let image = tiny(&source, &repository, &name);
        let digest = &image.manifest_digest;
        let at_source = pinned(&source.host(), &repository, digest);
        match place {
            Place::SigTag => clients.cosign_sign(&key, &at_source, &[]),
            Place::Referrer => clients.cosign_sign_referrer(&key, &at_source),
            Place::Bundle => clients.cosign3_sign(&key, &at_source),
        }
        // Where the client put it.
        let tag = |tag: String| digest_of(&format!("{}/{repository}:{tag}", source.host()));
        let (sig, fallback) = (tag(sig_tag(digest)), tag(fallback_tag(digest)));
        match place {
            Place::SigTag => assert!(sig.is_some() && fallback.is_none(), "{place:?}"),
            Place::Referrer | Place::Bundle => {
                assert!(sig.is_none() && fallback.is_some(), "{place:?}");
            }
        }

        // Signed by the key: export, export with the referrers and check the tar offline,
        // copy.
        let tar = format!("{name}.tar");
        let with = format!("{name}-referrers.tar");
        haul.run(&[
            "export",
            &image.reference,
            "--verify-key",
            key.public(),
            "-o",
            &tar,
        ])
        .success();
        haul.run(&[
            "export",
            &image.reference,
            "--referrers",
            "--verify-key",
            key.public(),
            "-o",
            &with,
        ])
        .success();
        haul.run(&["verify", &with, "--key", key.public()])
            .success();
        haul.run(&[
            "copy",
            &image.reference,
            &format!("{}/{repository}", dest.host()),
            "--referrers",
            "--verify-key",
            key.public(),
        ])
        .success();
        assert_eq!(
            digest_of(&format!("{}/{repository}:v1", dest.host())).as_ref(),
            Some(digest),
            "{place:?}"
        );

        // Not by the other key: refused, the image named, nothing written.
        let refused = format!("{name}-other.tar");
        haul.run(&[
            "export",
            &image.reference,
            "--verify-key",
            other.public(),
            "-o",
            &refused,
        ])
        .failure(&[&image.reference]);
        assert!(!haul.workdir.path().join(&refused).exists(), "{place:?}");
        haul.run(&[
            "copy",
            &image.reference,
            &format!("{}/refused/{repository}", dest.host()),
            "--verify-key",
            other.public(),
        ])
        .failure(&[&image.reference]);
        assert!(
            digest_of(&format!("{}/refused/{repository}:v1", dest.host())).is_none(),
            "{place:?}: copied though refused"
        );
        haul.run(&["verify", &with, "--key", other.public()])
            .failure(&[&repository]);
    }
}

#[test]
fn an_index_signed_alone_vouches_for_the_platform_exported_and_its_signature_goes_along() {
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/index-signed");
    let (index, platforms) = tiny_index(&source, &repository);
    let key = clients.key_pair("index");
    // The index's digest only (no --recursive): its platforms carry no signature.
    clients.cosign_sign(&key, &pinned(&source.host(), &repository, &index), &[]);
    let at = |host: &str, tag: &str| digest_of(&format!("{host}/{repository}:{tag}"));
    let signature = at(&source.host(), &sig_tag(&index)).expect("cosign signed the index");
    for platform in &platforms {
        assert_eq!(at(&source.host(), &sig_tag(platform)), None, "{platform}");
    }

    let haul = Haul::new();
    let reference = format!("{}/{repository}:multi", source.host());
    haul.run(&[
        "export",
        "--platform",
        "linux/arm64",
        "--referrers",
        "--verify-key",
        key.public(),
        "-o",
        "arm64.tar",
        &reference,
    ])
    .success();
    haul.run(&["verify", "--key", key.public(), "arm64.tar"])
        .success();

    let dest = Registry::start();
    haul.run(&["push", "arm64.tar", &dest.host()]).success();
    assert_eq!(
        digest_of(&pinned(&dest.host(), &repository, &platforms[1])).as_ref(),
        Some(&platforms[1]),
        "the arm64 manifest is pushed"
    );
    assert_eq!(
        at(&dest.host(), &sig_tag(&index)),
        Some(signature),
        "the index's .sig tag is pushed"
    );
}

#[test]
fn inspect_lists_each_oras_artifact_of_a_tar_with_its_subject_not_the_fallback_index() {
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/artifacts");
    let image = tiny(&source, &repository, "with artifacts");
    let digest = image.manifest_digest.clone();
    let at_source = pinned(&source.host(), &repository, &digest);
    clients.write("report.txt", b"first report\n");
    clients.write("report2.txt", b"second report\n");
    clients.write("note.txt", b"a note on the first report\n");
    let report = clients.oras_attach(&at_source, REPORT, &["report.txt"], &[]);
    let second = clients.oras_attach(
        &at_source,
        REPORT,
        &["report2.txt"],
        &["--annotation", "org.example.k=v"],
    );
    let note = clients.oras_attach(
        &pinned(&source.host(), &repository, &report),
        NOTE,
        &["note.txt:text/plain"],
        &[],
    );
    // oras listed them under the fallback tags of the image and of the first report.
    let index_of = |subject: &str| {
        digest_of(&format!(
            "{}/{repository}:{}",
            source.host(),
            fallback_tag(subject)
        ))
        .unwrap_or_else(|| panic!("no fallback tag for {subject}"))
    };
    let indexes = [index_of(&digest), index_of(&report)];
    let size_of = |artifact: &str| {
        skopeo_raw(&pinned(&source.host(), &repository, artifact), None)
            .unwrap()
            .len()
    };

    let haul = Haul::new();
    haul.run(&[
        "export",
        &image.reference,
        "--referrers",
        "-o",
        "artifacts.tar",
    ])
    .success();
    let expected = [
        (&report, REPORT, &digest),
        (&second, REPORT, &digest),
        (&note, NOTE, &report),
    ];

    let run = haul.run(&["inspect", "--json", "artifacts.tar"]).success();
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let referrers = json[0]["images"][0]["referrers"]
        .as_array()
        .unwrap_or_else(|| panic!("no referrers in {json:#}"));
    for (artifact, kind, subject) in expected {
        let entry = referrers
            .iter()
            .find(|r| r["digest"] == artifact.as_str())
            .unwrap_or_else(|| panic!("{artifact} ({kind}) is not listed: {referrers:#?}"));
        assert_eq!(entry["kind"], kind, "{entry}");
        assert_eq!(entry["subject"], subject.as_str(), "{entry}");
        assert_eq!(entry["size"], size_of(artifact), "{entry}");
    }
    for index in &indexes {
        assert!(
            !referrers.iter().any(|r| r["digest"] == index.as_str()),
            "the fallback index {index} is listed as a referrer: {referrers:#?}"
        );
    }
    assert_eq!(referrers.len(), 3, "{referrers:#?}");

    // The text form: one line per artifact, with its kind and what it refers to.
    let run = haul.run(&["inspect", "artifacts.tar"]).success();
    let text = String::from_utf8_lossy(&run.stdout);
    let short = |d: &str| d[..7 + 12].to_string();
    for (artifact, kind, subject) in expected {
        let line = text
            .lines()
            .find(|l| l.contains(&short(artifact)))
            .unwrap_or_else(|| panic!("{artifact} is not listed:\n{text}"));
        assert!(line.contains(kind), "{line}");
        assert!(line.contains(&format!("(of {})", short(subject))), "{line}");
    }
    for index in &indexes {
        assert!(!text.contains(&short(index)), "{index} is listed:\n{text}");
    }
}

#[test]
fn an_artifact_that_is_no_image_keeps_its_digest_through_copy_pull_export_and_push() {
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/chart");
    let reference = format!("{}/{repository}:chart", source.host());
    let config = br#"{"name":"demo","version":"0.1.0"}"#;
    let content = b"a chart, not an image\n";
    clients.write("cfg.json", config);
    clients.write("file.txt", content);
    let pushed = clients.ok(
        Client::Oras,
        &[
            "push",
            "--plain-http",
            &reference,
            "--artifact-type",
            CHART,
            "--config",
            "cfg.json:application/vnd.example.config.v1+json",
            "file.txt",
        ],
    );
    let digest = printed_digest(&pushed);
    assert_eq!(digest_of(&reference).as_ref(), Some(&digest));
    let haul = Haul::new();

    // copy: the same manifest at the destination.
    let dest = Registry::start();
    haul.run(&["copy", &reference, &format!("{}/{repository}", dest.host())])
        .success();
    assert_eq!(
        digest_of(&format!("{}/{repository}:chart", dest.host())).as_ref(),
        Some(&digest),
        "copy"
    );

    // pull: into a cache of its own, manifest, config and file.
    let puller = Haul::new();
    puller.run(&["pull", &reference]).success();
    for blob in [digest.clone(), sha256(config), sha256(content)] {
        assert!(
            puller
                .cache
                .path()
                .join("blobs/sha256")
                .join(hex_of(&blob))
                .is_file(),
            "{blob} is not cached"
        );
    }

    // The docker layouts cannot hold it: refused, saying what to do.
    haul.run(&["export", &reference, "-o", "chart-docker.tar"])
        .failure(&["artifact", CHART, "--format oci"]);
    assert!(!haul.workdir.path().join("chart-docker.tar").exists());

    // The OCI layout carries it, and a push puts it back with its digest.
    haul.run(&["export", &reference, "--format", "oci", "-o", "chart.tar"])
        .success();
    let tar = haul.workdir.path().join("chart.tar");
    let index = tar_json(&tar, "index.json");
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["digest"] == digest.as_str()),
        "{index:#}"
    );
    haul.run(&["verify", "chart.tar"]).success();
    let site = Registry::start();
    haul.run(&["push", "chart.tar", &site.host()]).success();
    let at_site = format!("{}/{repository}:chart", site.host());
    assert_eq!(digest_of(&at_site).as_ref(), Some(&digest), "push");

    // oras gets the file back from there.
    let out = clients.path("pulled");
    std::fs::create_dir(&out).unwrap();
    clients.ok(
        Client::Oras,
        &[
            "pull",
            "--plain-http",
            "-o",
            out.to_str().unwrap(),
            &at_site,
        ],
    );
    assert_eq!(std::fs::read(out.join("file.txt")).unwrap(), content);
}

#[test]
fn cosign_and_oras_read_at_the_destination_what_haul_pushed_and_copied() {
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/interop");
    let image = tiny(&source, &repository, "interop");
    let digest = image.manifest_digest.clone();
    let key = clients.key_pair("key");
    let bundle_key = clients.key_pair("bundle");
    let cosign3_key = clients.key_pair("cosign3");
    let predicate = clients.write("provenance.json", PROVENANCE);
    let sbom = clients.write("sbom.spdx.json", SBOM);
    let root = clients.empty_trusted_root();
    clients.write("report.txt", b"report\n");

    // Everything cosign 2, cosign 3 and oras put at the source.
    let at_source = pinned(&source.host(), &repository, &digest);
    clients.cosign_sign(&key, &at_source, &[]);
    clients.cosign_attest(&key, "slsaprovenance", &predicate, &at_source, &[]);
    clients.ok(
        Client::Cosign,
        &[
            "attach",
            "sbom",
            "--sbom",
            sbom.to_str().unwrap(),
            "--type",
            "spdx",
            &at_source,
        ],
    );
    clients.cosign_sign(&key, &at_source, &["--attachment", "sbom"]);
    clients.cosign_attest(
        &bundle_key,
        "slsaprovenance",
        &predicate,
        &at_source,
        &["--new-bundle-format"],
    );
    clients.cosign3_sign(&cosign3_key, &at_source);
    clients.oras_attach(&at_source, REPORT, &["report.txt"], &[]);

    // What the clients read there; checked at the source first, so a failure at a
    // destination is haul's.
    let check = |at: &str| {
        clients.cosign_verify(&key, at, &[]);
        clients.ok(
            Client::Cosign,
            &[
                "verify-attestation",
                "--key",
                key.public(),
                "--insecure-ignore-tlog=true",
                "--type",
                "slsaprovenance",
                at,
            ],
        );
        let downloaded = clients.ok(Client::Cosign, &["download", "sbom", at]);
        assert_eq!(
            downloaded.trim().as_bytes(),
            SBOM,
            "cosign download sbom {at}"
        );
        clients.cosign_verify(&key, at, &["--attachment", "sbom"]);
        clients.ok(
            Client::Cosign3,
            &[
                "verify",
                "--key",
                cosign3_key.public(),
                "--insecure-ignore-tlog=true",
                at,
            ],
        );
        clients.ok(
            Client::Cosign,
            &[
                "verify-attestation",
                "--new-bundle-format",
                "--key",
                bundle_key.public(),
                "--insecure-ignore-tlog=true",
                "--trusted-root",
                root.to_str().unwrap(),
                "--type",
                "slsaprovenance",
                at,
            ],
        );
        clients.oras_referrers(at)
    };
    let at_source_listed = check(&at_source);
    assert_eq!(at_source_listed.len(), 3, "{at_source_listed:?}");

    let haul = Haul::new();
    haul.run(&["export", &image.reference, "--referrers", "-o", "all.tar"])
        .success();
    let pushed = Registry::start();
    haul.run(&["push", "all.tar", &pushed.host()]).success();
    let copied = Registry::start();
    haul.run(&[
        "copy",
        "--referrers",
        &image.reference,
        &format!("{}/{repository}", copied.host()),
    ])
    .success();
    // The same artifacts. ggcr (cosign) lists its bundles in the fallback index under their
    // config's media type (application/vnd.oci.empty.v1+json), not the manifest's
    // artifactType; a destination may list either.
    let digests = |listed: &[(String, String)]| -> Vec<String> {
        listed.iter().map(|(digest, _)| digest.clone()).collect()
    };
    for site in [&pushed, &copied] {
        let at = pinned(&site.host(), &repository, &digest);
        let at_site_listed = check(&at);
        assert_eq!(
            digests(&at_site_listed),
            digests(&at_source_listed),
            "oras discover {at}: {at_site_listed:?}"
        );
        for ((artifact, kind), (_, source_kind)) in at_site_listed.iter().zip(&at_source_listed) {
            let own =
                manifest(&pinned(&source.host(), &repository, artifact))["artifactType"].clone();
            assert!(
                kind == source_kind || own == kind.as_str(),
                "oras discover {at}: {artifact} listed as {kind}, at the source as \
                 {source_kind}, its artifactType {own}"
            );
        }
    }
}

/// What skopeo's `sigstoreSigned` policy checks at a site, for a cosign signature haul
/// carried there. The policy a site would write for an image haul copied to SITE/mirror:
///
/// ```json
/// {"default": [{"type": "reject"}],
///  "transports": {"docker": {"SITE:PORT/mirror": [{"type": "sigstoreSigned",
///    "keyPath": "src.pub",
///    "signedIdentity": {"type": "exactRepository", "dockerRepository": "SOURCE:PORT/repo"}}]}}}
/// ```
///
/// with `use-sigstore-attachments: true` for SITE:PORT in registries.d. `exactRepository`
/// names the source's repository because cosign's payload names the repository it signed at,
/// without tag or digest: `matchRepository` compares that with the site's name, and
/// `matchRepoDigestOrExact` and `remapIdentity` refuse an identity without tag or digest.
/// Tried by hand with trixie's skopeo 1.18: that policy accepts the copy, by tag and by
/// digest, and refuses it with another key; the other three refuse it for its identity.
///
/// Bookworm's skopeo (1.9.3) cannot run it: Debian built it with sigstore verification
/// patched out, so it refuses every `sigstoreSigned` requirement, whatever the key
/// ("Debian-local change: sigstore disabled"); trixie's needs glibc 2.38. Its lookup is
/// kept, though: it reads the signatures from the `.sig` tag as the policy does. So here
/// skopeo reads them at the source and at each site, and `cosign verify-blob` checks what it
/// read as the policy would: the source's key (not another), the digest, the identity.
#[test]
fn skopeo_finds_the_cosign_signature_haul_carried_where_its_policy_looks_and_it_holds() {
    require_tool(SKOPEO);
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/skopeo");
    let image = tiny(&source, &repository, "read by skopeo");
    let digest = image.manifest_digest.clone();
    let src = clients.key_pair("src");
    let other = clients.key_pair("other");
    clients.cosign_sign(&src, &pinned(&source.host(), &repository, &digest), &[]);

    // Pushed under its own name; copied under the site's.
    let haul = Haul::new();
    haul.run(&[
        "export",
        &image.reference,
        "--referrers",
        "-o",
        "signed.tar",
    ])
    .success();
    let pushed = Registry::start();
    haul.run(&["push", "signed.tar", &pushed.host()]).success();
    let copied = Registry::start();
    let mirror = unique("site/mirror");
    haul.run(&[
        "copy",
        "--referrers",
        &image.reference,
        &format!("{}/{mirror}", copied.host()),
    ])
    .success();

    // Where skopeo looks: the .sig tag (use-sigstore-attachments), and a lookaside folder
    // that is empty, so no signature of the machine's is read.
    let config = tempfile::tempdir().unwrap();
    let registries_d = config.path().join("registries.d");
    let lookaside = config.path().join("lookaside");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::create_dir_all(&lookaside).unwrap();
    let mut yaml = String::from("docker:\n");
    for host in [source.host(), pushed.host(), copied.host()] {
        yaml.push_str(&format!(
            "  {host}:\n    lookaside: file://{}\n    use-sigstore-attachments: true\n",
            lookaside.display()
        ));
    }
    std::fs::write(registries_d.join("haul-test.yaml"), yaml).unwrap();
    // The check is cosign's, below: this policy only lets skopeo read.
    let policy = config.path().join("policy.json");
    std::fs::write(
        &policy,
        br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();

    let mut at_source = None;
    let sites = [
        (&source, &repository),
        (&pushed, &repository),
        (&copied, &mirror),
    ];
    for (i, (site, name)) in sites.into_iter().enumerate() {
        let reference = format!("docker://{}/{name}:v1", site.host());
        let out = config.path().join(format!("out-{i}"));
        let output = skopeo(
            &clients,
            &[
                "copy",
                "--policy",
                policy.to_str().unwrap(),
                "--registries.d",
                registries_d.to_str().unwrap(),
                "--src-tls-verify=false",
                &reference,
                &format!("dir:{}", out.display()),
            ],
        );
        assert!(
            output.status.success(),
            "skopeo copy {reference} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            sha256(&std::fs::read(out.join("manifest.json")).unwrap()),
            digest,
            "{reference}"
        );
        assert!(
            !out.join("signature-2").exists(),
            "{reference}: skopeo read more than the one signature"
        );
        let read = std::fs::read(out.join("signature-1"))
            .unwrap_or_else(|e| panic!("{reference}: skopeo read no signature ({e})"));
        match &at_source {
            None => at_source = Some(read.clone()),
            Some(source_read) => assert!(
                read == *source_read,
                "{reference}: skopeo read another signature than at the source"
            ),
        }

        // containers/image's sigstore signature: a format byte string, then JSON.
        let json = read
            .strip_prefix(b"\0sigstore-json\n")
            .unwrap_or_else(|| panic!("{reference}: no sigstore signature"));
        let signature: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(
            signature["mimeType"], "application/vnd.dev.cosign.simplesigning.v1+json",
            "{signature:#}"
        );
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            signature["payload"].as_str().unwrap(),
        )
        .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let critical = &claims["critical"];
        assert_eq!(critical["type"], "cosign container image signature");
        assert_eq!(critical["image"]["docker-manifest-digest"], digest.as_str());
        assert_eq!(
            critical["identity"]["docker-reference"],
            format!("{}/{repository}", source.host()),
            "the identity is the source's repository, wherever the image is"
        );

        // The signature over the payload: the source's key, not another.
        let payload_file = clients.write("payload.json", &payload);
        let base64_signature = signature["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap_or_else(|| panic!("no signature annotation: {signature:#}"));
        let signature_file = clients.write("payload.sig", base64_signature.as_bytes());
        let (payload_path, signature_path) = (
            payload_file.to_str().unwrap(),
            signature_file.to_str().unwrap(),
        );
        for (key, holds) in [(&src, true), (&other, false)] {
            let args = [
                "verify-blob",
                "--key",
                key.public(),
                "--signature",
                signature_path,
                "--insecure-ignore-tlog=true",
                payload_path,
            ];
            if holds {
                clients.ok(Client::Cosign, &args);
            } else {
                clients.fails(Client::Cosign, &args);
            }
        }
    }
}

#[test]
fn a_recursively_signed_index_copied_with_all_platforms_verifies_for_every_manifest() {
    let clients = Clients::new();
    let source = Registry::start();
    let repository = unique("test/recursive");
    let (index, platforms) = tiny_index(&source, &repository);
    let key = clients.key_pair("recursive");
    clients.cosign_sign(
        &key,
        &pinned(&source.host(), &repository, &index),
        &["--recursive"],
    );
    let manifests: Vec<&String> = std::iter::once(&index).chain(&platforms).collect();
    for digest in &manifests {
        clients.cosign_verify(&key, &pinned(&source.host(), &repository, digest), &[]);
    }

    let dest = Registry::start();
    let haul = Haul::new();
    haul.run(&[
        "copy",
        "--all-platforms",
        "--referrers",
        "--verify-key",
        key.public(),
        &format!("{}/{repository}:multi", source.host()),
        &format!("{}/{repository}", dest.host()),
    ])
    .success();
    assert_eq!(
        digest_of(&format!("{}/{repository}:multi", dest.host())).as_ref(),
        Some(&index),
        "the index keeps its digest"
    );
    for digest in manifests {
        clients.cosign_verify(&key, &pinned(&dest.host(), &repository, digest), &[]);
    }
}

/// In a tar, a signature of one platform's manifest does not stand for the index around it
/// (the tar could have made that index up); a signature of the index does.
#[test]
fn a_platform_signature_does_not_sign_the_index_in_a_tar() {
    let clients = Clients::new();
    let registry = Registry::start();
    let repository = unique("test/child-signed");
    let (index, platforms) = tiny_index(&registry, &repository);
    let key = clients.key_pair("child");
    clients.cosign_sign(
        &key,
        &pinned(&registry.host(), &repository, &platforms[0]),
        &[],
    );
    let haul = Haul::new();
    let reference = format!("{}/{repository}:multi", registry.host());
    let export = |name: &str| {
        haul.run(&[
            "export",
            &reference,
            "--all-platforms",
            "--format",
            "oci",
            "--referrers",
            "-o",
            name,
        ])
        .success();
    };
    export("child.tar");
    haul.run(&["verify", "child.tar", "--key", key.public()])
        .failure(&["not signed by", "carries no cosign signature"]);
    clients.cosign_sign(&key, &pinned(&registry.host(), &repository, &index), &[]);
    export("index.tar");
    haul.run(&["verify", "index.tar", "--key", key.public()])
        .success();
}

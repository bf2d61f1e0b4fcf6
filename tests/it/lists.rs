//! Image lists (`-f FILE`) and lock files (`haul lock`): comments, blank lines, duplicates,
//! standard input, bad lines named by FILE:LINE, every failing reference reported, `pull
//! --keep-going`, and a lock that exports exactly what it pinned, with no request once cached.

use crate::harness::*;

fn app(registry: &Registry, repository: &str, tag: &str, message: &str) -> Pushed {
    registry.push_app(repository, tag, message)
}

fn repo_tags(tar: &std::path::Path) -> Vec<String> {
    tar_json(tar, "manifest.json")
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|entry| {
            entry["RepoTags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_list_with_comments_blank_lines_and_repeats_exports_each_image_once() {
    let registry = Registry::start();
    let alpha = app(&registry, &unique("test/list-a"), "v1", "alpha");
    let beta = app(&registry, &unique("test/list-b"), "v1", "beta");
    let gamma = app(&registry, &unique("test/list-c"), "v1", "gamma");
    let haul = Haul::new();
    let list = format!(
        "# release 1\n\n{}   # the first\n{}\n\n{}\n",
        alpha.reference, beta.reference, alpha.reference
    );
    std::fs::write(haul.workdir.path().join("images.txt"), &list).unwrap();

    // From the file, plus one more as an argument (and one the file has already).
    haul.run(&[
        "export",
        "-f",
        "images.txt",
        &gamma.reference,
        &beta.reference,
        "-o",
        "bundle.tar",
    ])
    .success();
    let tags = repo_tags(&haul.workdir.path().join("bundle.tar"));
    assert_eq!(tags.len(), 3, "{tags:?}");
    for pushed in [&alpha, &beta, &gamma] {
        assert!(tags.contains(&pushed.reference), "{tags:?}");
    }

    // From standard input.
    let run = haul.run_stdin(&["export", "-f", "-", "-o", "stdin.tar"], &list);
    run.success();
    assert_eq!(repo_tags(&haul.workdir.path().join("stdin.tar")).len(), 2);

    // A bad line is named by its file and number; nothing is written.
    std::fs::write(
        haul.workdir.path().join("bad.txt"),
        format!("{}\n\nNot A Reference!\n", alpha.reference),
    )
    .unwrap();
    haul.run(&["export", "-f", "bad.txt", "-o", "bad.tar"])
        .failure(&["bad.txt:3:"]);
    assert!(!haul.workdir.path().join("bad.tar").exists());
    // A list on standard input and a password there too cannot both be.
    haul.run_stdin(
        &["pull", "-f", "-", "--username", "u", "--password-stdin"],
        &list,
    )
    .failure(&["standard input can be read once"]);
}

#[test]
fn every_failing_reference_is_reported_and_keep_going_pulls_the_rest() {
    let registry = Registry::start();
    let good = app(&registry, &unique("test/list-good"), "v1", "good");
    let missing_tag = format!("{}/{}:nope", registry.host(), unique("test/list-good"));
    let missing_repo = format!("{}/{}:v1", registry.host(), unique("test/absent"));
    let haul = Haul::new();
    std::fs::write(
        haul.workdir.path().join("images.txt"),
        format!("{missing_tag}\n{}\n{missing_repo}\n", good.reference),
    )
    .unwrap();

    let run = haul
        .run(&["export", "-f", "images.txt", "-o", "all.tar"])
        .failure(&[
            "2 of the 3 images could not be used",
            &missing_tag,
            &missing_repo,
        ]);
    assert!(
        !run.stderr.contains(&format!("{}:", good.reference)),
        "{}",
        run.stderr
    );
    assert!(!haul.workdir.path().join("all.tar").exists());

    // --keep-going: the good one is pulled, the others listed, exit status 1.
    haul.run(&["pull", "-f", "images.txt", "--keep-going"])
        .failure(&[
            "2 of the 3 images could not be used",
            &missing_tag,
            &missing_repo,
        ]);
    haul.run(&["export", &good.reference, "--offline", "-o", "good.tar"])
        .success();
}

#[test]
fn a_lock_pins_what_the_tags_name_and_exports_it_later_unchanged_without_a_request() {
    let registry = Registry::start();
    let repository = unique("test/lock");
    let v1 = app(&registry, &repository, "stable", "first");
    let other = app(&registry, &unique("test/lock-other"), "v1", "other");
    let haul = Haul::new();
    let list = format!(
        "# the release\n{}\n\n{}  # pinned too\n",
        v1.reference, other.reference
    );
    std::fs::write(haul.workdir.path().join("images.txt"), &list).unwrap();

    haul.run(&["lock", "-f", "images.txt", "-o", "images.lock"])
        .success();
    let lock = std::fs::read_to_string(haul.workdir.path().join("images.lock")).unwrap();
    assert_eq!(
        lock,
        format!(
            "# the release\n{}@{}\n\n{}@{}  # pinned too\n",
            v1.reference, v1.manifest_digest, other.reference, other.manifest_digest
        )
    );
    haul.run(&["export", "-f", "images.lock", "-o", "locked-1.tar"])
        .success();

    // The tag moves: the list follows it, the lock does not.
    let v2 = app(&registry, &repository, "stable", "second");
    assert_ne!(v1.manifest_digest, v2.manifest_digest);
    haul.run(&["export", "-f", "images.lock", "-o", "locked-2.tar"])
        .success();
    let first = std::fs::read(haul.workdir.path().join("locked-1.tar")).unwrap();
    let second = std::fs::read(haul.workdir.path().join("locked-2.tar")).unwrap();
    assert!(first == second, "the export from the lock changed");
    haul.run(&["export", "-f", "images.txt", "-o", "list.tar"])
        .success();
    let tar = haul.workdir.path().join("list.tar");
    let index = tar_json(&tar, "index.json");
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert!(
        digests.contains(&v2.manifest_digest.as_str()),
        "{digests:?}"
    );

    // Locking the lock again moves its pins to what the tags name now.
    haul.run(&["lock", "-f", "images.lock", "-o", "images.lock"])
        .success();
    let relocked = std::fs::read_to_string(haul.workdir.path().join("images.lock")).unwrap();
    assert!(relocked.contains(&v2.manifest_digest), "{relocked}");
    assert!(relocked.starts_with("# the release\n"), "{relocked}");

    // A lock whose manifests are cached exports without a single request.
    let proxy = crate::fault_proxy::FaultProxy::start(&registry.host());
    let through_proxy = relocked.replace(&registry.host(), &proxy.host());
    std::fs::write(haul.workdir.path().join("proxied.lock"), &through_proxy).unwrap();
    haul.run(&["pull", "-f", "proxied.lock"]).success();
    proxy.clear();
    haul.run(&["export", "-f", "proxied.lock", "-o", "warm.tar"])
        .success();
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}

#[test]
fn a_plain_http_registry_is_probed_with_tls_once_then_remembered() {
    let registry = Registry::start();
    let references: Vec<Pushed> = (0..6)
        .map(|i| {
            app(
                &registry,
                &unique("test/probe"),
                "v1",
                &format!("probe {i}"),
            )
        })
        .collect();
    let proxy = crate::fault_proxy::FaultProxy::start(&registry.host());
    let list: String = references
        .iter()
        .map(|p| p.reference.replace(&registry.host(), &proxy.host()) + "\n")
        .collect();
    let haul = Haul::new();
    std::fs::write(haul.workdir.path().join("images.txt"), list).unwrap();
    // Six images resolved at once: one TLS attempt finds the host speaks plain HTTP, and the
    // others wait for it instead of each trying.
    haul.run(&["pull", "-f", "images.txt"]).success();
    assert_eq!(proxy.tls_attempts(), 1);
    // The next run remembers (in the cache): no TLS attempt at all.
    proxy.clear();
    haul.run(&["export", "-f", "images.txt", "-o", "all.tar"])
        .success();
    assert_eq!(proxy.tls_attempts(), 0);
    assert!(!proxy.requests().is_empty());
}

#[test]
fn copy_takes_a_list_into_a_prefix_keeping_each_name_and_digest() {
    let source = Registry::start();
    let alpha_repository = unique("test/copy-list-a");
    let beta_repository = unique("test/copy-list-b");
    let alpha = app(&source, &alpha_repository, "v1", "alpha");
    let beta = app(&source, &beta_repository, "v2", "beta");
    let haul = Haul::new();
    std::fs::write(
        haul.workdir.path().join("images.txt"),
        format!("{}\n# beta too\n{}\n", alpha.reference, beta.reference),
    )
    .unwrap();
    let dest = Registry::start();
    let prefix = format!("{}/mirror", dest.host());
    let run = haul.run(&["copy", "-f", "images.txt", &prefix]).success();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    for (repository, tag, pushed) in [
        (&alpha_repository, "v1", &alpha),
        (&beta_repository, "v2", &beta),
    ] {
        let line = format!("{prefix}/{repository}:{tag}@{}", pushed.manifest_digest);
        assert!(stdout.contains(&line), "{line} not in {stdout}");
    }
    // Several sources as arguments: the same rule, as cp does with a folder.
    let other = format!("{}/other", dest.host());
    haul.run(&["copy", &alpha.reference, &beta.reference, &other])
        .success();
    // There DEST is a prefix: a tag in it is refused at once, saying so.
    haul.run(&["copy", "-f", "images.txt", &format!("{prefix}:x")])
        .failure(&["names a tag or digest", "REGISTRY[/PREFIX]"]);
    // And DEST must be a registry there.
    haul.run(&["copy", &alpha.reference, &beta.reference, "not-a-registry"])
        .failure(&["must begin with a registry host"]);
}

#[test]
fn a_lock_of_all_platforms_pins_the_index() {
    let registry = Registry::start();
    let repository = unique("test/lock-index");
    let busybox = Layer::busybox(Compression::Gzip);
    let amd64 = Image::new(vec![busybox.clone()], true, "amd64", None, "amd64");
    let arm64 = Image::new(vec![busybox], true, "arm64", Some("v8"), "arm64");
    let index = registry.push_index(
        &repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        true,
    );
    let reference = format!("{}/{repository}:multi", registry.host());
    let haul = Haul::new();
    let all = haul.run(&["lock", &reference, "--all-platforms"]).success();
    assert_eq!(
        String::from_utf8_lossy(&all.stdout),
        format!("{reference}@{index}\n")
    );
    let one = haul
        .run(&["lock", &reference, "--platform", "linux/arm64/v8"])
        .success();
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        format!("{reference}@{}\n", sha256(&arm64.manifest()))
    );
}

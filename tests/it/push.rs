//! `haul push` and `haul copy` against real registries (open, htpasswd, token mode): digests
//! kept byte for byte, Docker pulls and runs what was pushed, nothing uploaded twice, deltas
//! only onto their base, cut uploads resumed, damaged tars refused.

use std::path::Path;

use crate::harness::*;

/// The manifest `reference` names, as the registry serves it.
#[track_caller]
fn raw_manifest(reference: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
    skopeo_raw(reference, creds).unwrap_or_else(|| panic!("{reference} is not in the registry"))
}

/// Whether `reference` exists (a tag or digest answers).
fn exists(reference: &str) -> bool {
    skopeo_raw(reference, None).is_some()
}

fn stdout(run: &Run) -> String {
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// A runnable image with a layer of its own, pushed as `repository:v1`.
fn source_image(registry: &Registry, repository: &str, message: &str) -> Pushed {
    registry.push_app(repository, "v1", message)
}

#[test]
fn a_tar_goes_into_a_registry_with_its_digests_and_docker_runs_it_from_there() {
    let source = Registry::start();
    let repository = unique("test/push");
    let pushed = source_image(&source, &repository, "pushed by haul");
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "app.tar");
    let dest = Registry::start();

    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &dest.host(),
            "--progress",
            "plain",
        ])
        .success();
    // The name maps as DEST/<repository>:<tag>, and stdout says it with the digest.
    let target = format!("{}/{repository}:v1", dest.host());
    assert!(
        stdout(&run).contains(&format!("{target}@{}", pushed.manifest_digest)),
        "{}",
        stdout(&run)
    );
    assert!(run.stderr.contains("3 uploaded"), "{}", run.stderr);
    // Byte for byte: the registry serves the source's manifest.
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);

    // Docker pulls it from there and runs it.
    let _cleanup = Engine::Classic.cleanup(&[&target]);
    Engine::Classic.pull(&target);
    assert_eq!(Engine::Classic.run(&target, &[]).trim(), "pushed by haul");

    // Again: every blob is there, nothing goes up.
    let again = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &dest.host(),
            "--progress",
            "plain",
        ])
        .success();
    assert!(
        again
            .stderr
            .contains("0 uploaded (0 B sent), 0 mounted, 3 already there"),
        "{}",
        again.stderr
    );

    // Into another repository of the registry the tar names (a fresh cache, so nothing is
    // remembered): its blobs are mounted from the image's own repository, not sent again.
    let elsewhere = Haul::new();
    let run = elsewhere
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &format!("{}/site", source.host()),
            "--progress",
            "plain",
        ])
        .success();
    assert!(
        run.stderr.contains("0 uploaded (0 B sent), 3 mounted"),
        "{}",
        run.stderr
    );
    let mirrored = format!("{}/site/{repository}:v1", source.host());
    assert_eq!(
        sha256(&raw_manifest(&mirrored, None)),
        pushed.manifest_digest
    );
}

#[test]
fn a_prefix_and_as_name_where_images_go() {
    let source = Registry::start();
    let repository = unique("test/push-as");
    let pushed = source_image(&source, &repository, "named");
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "app.tar");
    let dest = Registry::start();

    let prefixed = format!("{}/site/mirror", dest.host());
    haul.run(&["push", tar.to_str().unwrap(), &prefixed])
        .success();
    assert!(exists(&format!("{prefixed}/{repository}:v1")));

    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &dest.host(),
            "--as",
            "team/renamed:2.0",
        ])
        .success();
    let target = format!("{}/team/renamed:2.0", dest.host());
    assert!(stdout(&run).contains(&target), "{}", stdout(&run));
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);
    // The blobs were in the registry already (under the prefix): mounted, not sent.
    assert!(
        run.stderr.contains("0 uploaded (0 B sent), 3 mounted"),
        "{}",
        run.stderr
    );

    // --as with several images is refused.
    let other = source_image(&source, &unique("test/push-as2"), "other");
    let both = haul.export(&[&pushed.reference, &other.reference], "both.tar");
    haul.run(&["push", both.to_str().unwrap(), &dest.host(), "--as", "x/y"])
        .failure(&["--as names one image", "holds 2"]);
}

#[test]
fn a_tampered_tar_is_refused_and_nothing_is_tagged() {
    let source = Registry::start();
    let repository = unique("test/push-tampered");
    let pushed = source_image(&source, &repository, "tampered");
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "app.tar");
    // Flip one byte inside the message layer's blob.
    let entries = tar_entries(&tar);
    let layer = pushed.layer_digests.last().unwrap();
    let name = format!("blobs/sha256/{}", hex_of(layer));
    let (_, content) = entries.iter().find(|(n, _)| *n == name).unwrap();
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes
        .windows(content.len())
        .position(|w| w == content.as_slice())
        .unwrap();
    bytes[at + content.len() / 2] ^= 0xff;
    let tampered = haul.workdir.path().join("tampered.tar");
    std::fs::write(&tampered, &bytes).unwrap();

    let dest = Registry::start();
    haul.run(&["push", tampered.to_str().unwrap(), &dest.host()])
        .failure(&["does not hash to its name", "nothing was pushed"]);
    assert!(!exists(&format!("{}/{repository}:v1", dest.host())));
}

fn push_from_stdin(haul: &Haul, tar: &Path, dest: &str) -> Run {
    let bytes = std::fs::read(tar).unwrap();
    haul.run_stdin_bytes(&["push", "-", dest], &bytes)
}

#[test]
fn a_classic_tar_gets_a_new_manifest_and_standard_input_works() {
    let source = Registry::start();
    let repository = unique("test/push-v1");
    let pushed = source_image(&source, &repository, "classic layout");
    let haul = Haul::new();
    haul.run(&[
        "export",
        &pushed.reference,
        "--format",
        "docker-v1",
        "-o",
        "v1.tar",
    ])
    .success();
    let tar = haul.workdir.path().join("v1.tar");
    let dest = Registry::start();
    let run = push_from_stdin(&haul, &tar, &dest.host()).success();
    let target = format!("{}/{repository}:v1", dest.host());
    // A new manifest (the layers are compressed here), whose digest is printed.
    let manifest = raw_manifest(&target, None);
    let digest = sha256(&manifest);
    assert_ne!(digest, pushed.manifest_digest);
    assert!(
        stdout(&run).contains(&format!("{target}@{digest}")),
        "{}",
        stdout(&run)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(parsed["config"]["digest"], pushed.config_digest.as_str());
    // A FILE that is a pipe is kept in a file first too.
    let bytes = std::fs::read(&tar).unwrap();
    haul.run_stdin_bytes(
        &["push", "/dev/stdin", &dest.host(), "--as", "piped/app"],
        &bytes,
    )
    .success();
    assert!(exists(&format!("{}/piped/app:latest", dest.host())));
    // The standard input's copies are gone.
    let leftovers: Vec<_> = std::fs::read_dir(haul.cache.path().join("ingest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let _cleanup = Engine::Classic.cleanup(&[&target]);
    Engine::Classic.pull(&target);
    assert_eq!(Engine::Classic.run(&target, &[]).trim(), "classic layout");

    // Pushing it again compresses nothing new and uploads nothing: same digest.
    let again = push_from_stdin(&haul, &tar, &dest.host()).success();
    assert!(stdout(&again).contains(&digest), "{}", stdout(&again));
    assert!(again.stderr.contains("0 uploaded"), "{}", again.stderr);
}

/// A 40 MiB layer (three chunks: 16 + 16 + 8 MiB), pushed to a fresh registry.
fn large_image(registry: &Registry, repository: &str) -> Pushed {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let image = Image::runnable(
        "large",
        vec![Layer::random("data/large", 40 << 20, seed)],
        Compression::Gzip,
        false,
    );
    registry.push(repository, "v1", &image)
}

const CHUNK: u64 = 16 << 20;

/// Starts `haul push` slowed down, and kills it (SIGKILL) once `committed` says enough went up.
fn push_and_kill(haul: &Haul, tar: &Path, dest: &str, committed: impl Fn() -> bool) {
    let mut child = haul
        .command()
        .args(["push", tar.to_str().unwrap(), dest, "--limit-rate", "6M"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !committed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never got going"
        );
        assert!(child.try_wait().unwrap().is_none(), "haul push ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_push_killed_mid_blob_resumes_from_what_the_registry_holds() {
    let source = Registry::start();
    let repository = unique("test/push-kill");
    let pushed = large_image(&source, &repository);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "large.tar");
    let dest = Registry::start();
    // In front of the registry, a proxy that passes on only whole requests (as nginx does).
    let proxy = crate::fault_proxy::FaultProxy::start(&dest.host());
    let chunks_taken = || {
        proxy
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.status == 202)
            .count() as u64
    };
    // Killed while the second chunk goes up (it takes about 2.7 s at 6 MiB/s), not in the
    // instant between the registry's answer to the first and haul noting the new location:
    // distribution's locations carry the offset, and an older one would not resume.
    push_and_kill(&haul, &tar, &proxy.host(), || {
        let taken = chunks_taken() >= 1;
        if taken {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        taken
    });
    let taken = chunks_taken() * CHUNK;
    let layer_size = 40u64 << 20; // about: the gzip of random data is a little larger
    assert!(!exists(&format!("{}/{repository}:v1", dest.host())));

    proxy.clear();
    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &proxy.host(),
            "--progress",
            "plain",
        ])
        .success();
    let sent = proxy.request_bytes();
    eprintln!("the registry took {taken} bytes before the kill; the rerun sent {sent}");
    // At most what was missing, plus one chunk (the one cut), plus the small blobs.
    assert!(
        sent <= layer_size + (64 << 10) - taken + CHUNK,
        "sent {sent} bytes after the registry took {taken}\n{}",
        run.stderr
    );
    assert!(
        sent < layer_size,
        "nothing was resumed: sent {sent}\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("resumed at"), "{}", run.stderr);
    let target = format!("{}/{repository}:v1", dest.host());
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);
}

#[test]
fn a_push_cut_mid_chunk_straight_to_distribution_starts_that_blob_over_and_completes() {
    // distribution drops an upload whose last chunk was cut mid-way (the bytes it kept no
    // longer match the session's state): the rerun must notice and send the blob again.
    let source = Registry::start();
    let repository = unique("test/push-cut");
    let pushed = large_image(&source, &repository);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "large.tar");
    let dest = Registry::start();
    let uploads = dest.storage_dir();
    push_and_kill(&haul, &tar, &dest.host(), || {
        // Some bytes of the large blob are in the registry's upload folder.
        walk_sizes(&uploads).iter().any(|size| *size > 4 << 20)
    });
    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &dest.host(),
            "--progress",
            "plain",
        ])
        .success();
    let target = format!("{}/{repository}:v1", dest.host());
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);
    assert!(
        run.stderr.contains("starting it over") && run.stderr.contains("1 uploaded"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_push_interrupted_straight_to_distribution_ends_its_chunk_and_resumes_there() {
    // Ctrl-C or SIGTERM mid-chunk: the chunk in flight ends whole (distribution refuses a
    // session whose last request was cut) and no other starts, so the rerun resumes there.
    let source = Registry::start();
    let repository = unique("test/push-stop");
    let pushed = large_image(&source, &repository);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "large.tar");
    for signal in ["INT", "TERM"] {
        let dest = Registry::start();
        let uploads = dest.storage_dir();
        let push = [
            "push",
            tar.to_str().unwrap(),
            &dest.host(),
            "--limit-rate",
            "6M",
        ];
        let stopped = haul.interrupt_when(&push, signal, || {
            // The second chunk is going up.
            walk_sizes(&uploads)
                .iter()
                .any(|size| *size > CHUNK + (1 << 20))
        });
        assert!(
            stopped.stderr.contains("stopping: 1 upload request"),
            "{}",
            stopped.stderr
        );
        stopped.interrupted("resuming each upload from the last chunk it took");
        let run = haul
            .run(&[
                "push",
                tar.to_str().unwrap(),
                &dest.host(),
                "--progress",
                "plain",
            ])
            .success();
        assert!(
            run.stderr.contains("resumed at 32.0 MiB"),
            "{signal}: {}",
            run.stderr
        );
        let target = format!("{}/{repository}:v1", dest.host());
        assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);
    }
}

/// Sizes of the files under `dir`.
fn walk_sizes(dir: &Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return sizes;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sizes.extend(walk_sizes(&path));
        } else if let Ok(meta) = entry.metadata() {
            sizes.push(meta.len());
        }
    }
    sizes
}

#[test]
fn a_delta_goes_up_only_onto_its_base_and_mounts_the_base_layers() {
    let source = Registry::start();
    let base_repository = unique("test/push-base");
    let next_repository = unique("test/push-next");
    let shared = Layer::random("data/shared", 256 << 10, 7);
    let image = |message: &str| {
        Image::runnable(
            message,
            vec![
                shared.clone(),
                Layer::text("etc/message", &format!("{message}\n"), Compression::Gzip),
            ],
            Compression::Gzip,
            false,
        )
    };
    let v1 = source.push(&base_repository, "v1", &image("base"));
    let v2 = source.push(&next_repository, "v2", &image("next"));
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-delta.tar",
        "--since",
        "v1.tar",
    ])
    .success();
    let delta = haul.workdir.path().join("v2-delta.tar");
    let v1_tar = haul.workdir.path().join("v1.tar");
    let dest = Registry::start();
    let target = format!("{}/{next_repository}:v2", dest.host());

    // The base is not there: refused before anything is written, naming what to push first.
    haul.run(&["push", delta.to_str().unwrap(), &dest.host()])
        .failure(&[
            "left out of this delta",
            "missing at",
            &base_repository,
            "no manifest or tag was written",
        ]);
    assert!(!exists(&target));

    // A delta in the classic layout cannot go to a registry: said so, nothing written.
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "v1-classic.tar",
        "--format",
        "docker-v1",
    ])
    .success();
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-classic-delta.tar",
        "--format",
        "docker-v1",
        "--since",
        "v1-classic.tar",
    ])
    .success();
    haul.run(&["push", "v2-classic-delta.tar", &dest.host()])
        .failure(&["docker-v1 layout", "--format docker"]);
    assert!(!exists(&target));

    // Its base first, then the delta: the left-out layers are mounted from the base.
    haul.run(&["push", v1_tar.to_str().unwrap(), &dest.host()])
        .success();
    let run = haul
        .run(&[
            "push",
            delta.to_str().unwrap(),
            &dest.host(),
            "--progress",
            "plain",
        ])
        .success();
    assert!(
        run.stderr
            .contains(&format!("mounted from {base_repository}")),
        "{}",
        run.stderr
    );
    assert_eq!(sha256(&raw_manifest(&target, None)), v2.manifest_digest);
    let _cleanup = Engine::Classic.cleanup(&[&target]);
    Engine::Classic.pull(&target);
    assert_eq!(Engine::Classic.run(&target, &[]).trim(), "next");
}

/// `docker login` (into a configuration folder of its own), `docker pull` and run.
fn docker_pull_and_run(registry: &str, user: &str, password: &str, reference: &str) -> String {
    let config = tempfile::tempdir().unwrap();
    let docker = || {
        let mut command = Engine::Classic.docker();
        command.env("DOCKER_CONFIG", config.path());
        command
    };
    for args in [
        vec!["login", "-u", user, "--password-stdin", registry],
        vec!["pull", reference],
    ] {
        let input = format!("{password}\n");
        let output = output_within(
            docker().args(&args),
            (args[0] == "login").then_some(input.as_bytes()),
            COMMAND_TIMEOUT,
        );
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Engine::Classic.run(reference, &[])
}

#[test]
fn pushes_log_in_with_a_password_and_with_push_scoped_tokens() {
    use crate::harness::token::{Access, TokenServer};
    let source = Registry::start();
    let repository = unique("test/push-auth");
    let pushed = source_image(&source, &repository, "authenticated");
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "app.tar");
    let tar = tar.to_str().unwrap();
    let target = |registry: &Registry| format!("{}/{repository}:v1", registry.host());
    let push_as_pusher = |registry: &Registry| {
        haul.run_stdin(
            &[
                "push",
                tar,
                &registry.host(),
                "--username",
                "pusher",
                "--password-stdin",
                "--progress",
                "plain",
            ],
            "s3cret\n",
        )
        .success()
    };

    // htpasswd: without credentials, a clear refusal and no tag; with them, the push.
    let basic = Registry::start_with_basic_auth("pusher", "s3cret");
    haul.run(&["push", tar, &basic.host()])
        .failure(&["unauthorized", "credentials"]);
    // Token mode: the token service is asked for pull and push on the repository.
    let tokens = TokenServer::start("pusher", "s3cret");
    let token_registry = Registry::start_token_auth(&tokens);

    for registry in [&basic, &token_registry] {
        let first = push_as_pusher(registry);
        assert!(first.stderr.contains("3 uploaded"), "{}", first.stderr);
        assert_eq!(
            sha256(&raw_manifest(&target(registry), Some(("pusher", "s3cret")))),
            pushed.manifest_digest
        );
        // Again: nothing goes up.
        let again = push_as_pusher(registry);
        assert!(
            again.stderr.contains("0 uploaded (0 B sent)"),
            "{}",
            again.stderr
        );
        // Docker logs in, pulls it and runs it.
        let _cleanup = Engine::Classic.cleanup(&[&target(registry)]);
        assert_eq!(
            docker_pull_and_run(&registry.host(), "pusher", "s3cret", &target(registry)).trim(),
            "authenticated"
        );
    }
    assert!(
        tokens.requests().iter().any(|r| r
            .scopes
            .iter()
            .filter_map(|s| Access::parse(s))
            .any(|a| a.name == repository && a.actions.iter().any(|x| x == "push"))),
        "{:?}",
        tokens.requests()
    );

    // The tar on standard input: the password comes from a file; --password-stdin there is
    // a usage error that says so.
    std::fs::write(haul.workdir.path().join("password"), "s3cret\n").unwrap();
    let bytes = std::fs::read(tar).unwrap();
    let basic_host = basic.host();
    let from_stdin = |password: &[&str]| {
        let mut args = vec![
            "push",
            "-",
            &basic_host,
            "--as",
            "piped/app:v1",
            "-u",
            "pusher",
        ];
        args.extend_from_slice(password);
        haul.run_stdin_bytes(&args, &bytes)
    };
    let usage = from_stdin(&["--password-stdin"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    assert!(
        usage.stderr.contains("--password-file FILE"),
        "{}",
        usage.stderr
    );
    from_stdin(&["--password-file", "password"]).success();
    assert_eq!(
        sha256(&raw_manifest(
            &format!("{basic_host}/piped/app:v1"),
            Some(("pusher", "s3cret"))
        )),
        pushed.manifest_digest
    );

    // A copy within the token registry: a pull token first, then the scope grows to push.
    tokens.clear();
    haul.run_stdin(
        &[
            "copy",
            &target(&token_registry),
            &format!("{}/{repository}:copied", token_registry.host()),
            "--username",
            "pusher",
            "--password-stdin",
        ],
        "s3cret\n",
    )
    .success();
    let scopes: Vec<Vec<String>> = tokens.requests().into_iter().map(|r| r.scopes).collect();
    let pull_only = format!("repository:{repository}:pull");
    assert!(
        scopes.iter().any(|s| s == &vec![pull_only.clone()]),
        "{scopes:?}"
    );
    assert!(
        scopes.iter().any(|s| s
            .iter()
            .any(|x| x == &format!("repository:{repository}:pull,push"))),
        "{scopes:?}"
    );
    assert_eq!(
        sha256(&raw_manifest(
            &format!("{}/{repository}:copied", token_registry.host()),
            Some(("pusher", "s3cret"))
        )),
        pushed.manifest_digest
    );
}

#[test]
fn copy_keeps_the_index_digest_with_all_platforms_and_fills_the_cache() {
    let source = Registry::start();
    let repository = unique("test/copy");
    let busybox = Layer::busybox(Compression::Gzip);
    let amd64 = Image::new(vec![busybox.clone()], true, "amd64", None, "amd64 copy");
    let arm64 = Image::new(
        vec![
            busybox,
            Layer::text("etc/arch", "arm64\n", Compression::Gzip),
        ],
        true,
        "arm64",
        Some("v8"),
        "arm64 copy",
    );
    let index_digest = source.push_index(
        &repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        true,
    );
    let haul = Haul::new();
    let dest = Registry::start();
    let src = format!("{}/{repository}:multi", source.host());

    // Every platform and the index: the index keeps its digest, under the source's tag.
    let run = haul
        .run(&[
            "copy",
            &src,
            &format!("{}/mirror/app", dest.host()),
            "--all-platforms",
        ])
        .success();
    let target = format!("{}/mirror/app:multi", dest.host());
    assert!(
        stdout(&run).contains(&format!("{target}@{index_digest}")),
        "{}",
        stdout(&run)
    );
    assert_eq!(sha256(&raw_manifest(&target, None)), index_digest);
    // Each platform's manifest is there by digest too.
    let index: serde_json::Value = serde_json::from_slice(&raw_manifest(&target, None)).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        assert!(
            exists(&format!("{}/mirror/app@{digest}", dest.host())),
            "{digest}"
        );
    }

    // One platform under a tag of its own: that platform's manifest, digest kept.
    let run = haul
        .run(&[
            "copy",
            &src,
            &format!("{}/mirror/app:arm", dest.host()),
            "--platform",
            "linux/arm64/v8",
        ])
        .success();
    let arm_digest = sha256(&arm64.manifest());
    assert!(stdout(&run).contains(&arm_digest), "{}", stdout(&run));
    assert_eq!(
        sha256(&raw_manifest(
            &format!("{}/mirror/app:arm", dest.host()),
            None
        )),
        arm_digest
    );
    // Everything was there already: nothing uploaded.
    assert!(run.stderr.contains("0 uploaded"), "{}", run.stderr);

    // The copy went through the cache: it works offline now, and so does an export.
    drop(source);
    haul.run(&[
        "copy",
        &src,
        &format!("{}/offline/app", dest.host()),
        "--all-platforms",
        "--offline",
    ])
    .success();
    assert_eq!(
        sha256(&raw_manifest(
            &format!("{}/offline/app:multi", dest.host()),
            None
        )),
        index_digest
    );
    haul.run(&[
        "export",
        &src,
        "--offline",
        "--all-platforms",
        "--format",
        "oci",
        "-o",
        "all.tar",
    ])
    .success();

    // A digest in DEST is refused: the digest is the source's.
    haul.run(&[
        "copy",
        &src,
        &format!("{}/x@{index_digest}", dest.host()),
        "--offline",
    ])
    .failure(&["without a digest"]);
}

#[test]
fn a_pull_through_registry_is_the_shared_cache_of_many_machines() {
    // Upstream, seen through a counting proxy; a pull-through distribution in front of it.
    let upstream = Registry::start();
    let repository = unique("test/fleet");
    let pushed = source_image(&upstream, &repository, "fleet");
    let counter = crate::fault_proxy::FaultProxy::start(&upstream.host());
    let shared = Registry::start_pull_through(&format!("http://{}", counter.host()));
    let reference = format!("{}/{repository}:v1", counter.host());
    let mirror = format!("{}=http://{}", counter.host(), shared.host());

    // The first machine fills the shared tier.
    let first = Haul::new();
    first
        .run(&["pull", &reference, "--mirror", &mirror])
        .success();
    assert!(counter.blob_bytes() > 1 << 20, "{:?}", counter.requests());
    // distribution's proxy stores what it served beside serving it, and links it into the
    // repository last: under load that can end after the pull did.
    let stored = shared
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(&repository);
    let links: Vec<std::path::PathBuf> = pushed
        .layer_digests
        .iter()
        .chain([&pushed.config_digest])
        .map(|d| stored.join("_layers/sha256").join(hex_of(d)).join("link"))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !links.iter().all(|l| l.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull-through registry did not store what it served: {links:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The second downloads everything from it: no blob request reaches upstream (a tag is
    // still checked there by the pull-through, as distribution does), and by digest nothing
    // at all does.
    counter.clear();
    let second = Haul::new();
    second
        .run(&["pull", &reference, "--mirror", &mirror])
        .success();
    assert!(
        counter.blob_requests().is_empty(),
        "{:?}",
        counter.requests()
    );
    counter.clear();
    let third = Haul::new();
    let by_digest = format!("{}/{repository}@{}", counter.host(), pushed.manifest_digest);
    third
        .run(&["pull", &by_digest, "--mirror", &mirror])
        .success();
    assert!(counter.requests().is_empty(), "{:?}", counter.requests());
    third
        .run(&["export", &by_digest, "--offline", "-o", "fleet.tar"])
        .success();
}

#[test]
fn uploads_retry_a_failing_registry_and_report_as_json() {
    let source = Registry::start();
    let repository = unique("test/push-retry");
    let pushed = large_image(&source, &repository);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "large.tar");
    let dest = Registry::start();
    let proxy = crate::fault_proxy::FaultProxy::start(&dest.host());
    // The first chunk's PATCH is answered 503 (after its body came).
    proxy.inject("PATCH ", crate::fault_proxy::Fault::Status(503), 1);
    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &proxy.host(),
            "--progress",
            "json",
        ])
        .success();
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "upload_finished")
        .collect();
    assert_eq!(finished.len(), 3, "{}", run.stderr);
    // Each blob's `uploaded` events add up to its `sent`.
    for done in &finished {
        let sum: u64 = events
            .iter()
            .filter(|e| e["event"] == "uploaded" && e["digest"] == done["digest"])
            .map(|e| e["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, done["sent"].as_u64().unwrap(), "{done}");
    }
    assert!(
        events.iter().any(|e| e["event"] == "pushed"),
        "{}",
        run.stderr
    );
    let target = format!("{}/{repository}:v1", dest.host());
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);
}

#[test]
fn uploads_slower_than_the_stall_timeout_go_on_and_a_stalled_one_is_retried() {
    let source = Registry::start();
    let repository = unique("test/push-slow");
    let pushed = large_image(&source, &repository);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "large.tar");
    let dest = Registry::start();
    let proxy = crate::fault_proxy::FaultProxy::start(&dest.host());
    // The first chunk's PATCH stops being read after 1 MiB.
    proxy.inject(
        "PATCH ",
        crate::fault_proxy::Fault::StallRequestAfter(1 << 20),
        1,
    );
    // Each 16 MiB chunk takes about 4 s at 4 MiB/s: longer than the 2 s stall timeout, which
    // counts only time without progress.
    let run = haul
        .run(&[
            "push",
            tar.to_str().unwrap(),
            &proxy.host(),
            "--limit-rate",
            "4M",
            "--stall-timeout",
            "2",
            "--progress",
            "plain",
        ])
        .success();
    assert!(
        run.stderr.contains("made no progress for 2 s"),
        "{}",
        run.stderr
    );
    let target = format!("{}/{repository}:v1", dest.host());
    assert_eq!(sha256(&raw_manifest(&target, None)), pushed.manifest_digest);

    // DEST must name a registry; copy's DEST a repository.
    haul.run(&["push", tar.to_str().unwrap(), "myregistry"])
        .failure(&["must begin with a registry host"]);
    haul.run(&["copy", &pushed.reference, &dest.host()])
        .failure(&["names no repository"]);
    // A DEST without a registry host is not Docker Hub by default: refused before any
    // request, saying how to write Docker Hub.
    haul.run(&["copy", &pushed.reference, "team/x"])
        .failure(&["does not begin with a registry host", "docker.io/team/x"]);
}

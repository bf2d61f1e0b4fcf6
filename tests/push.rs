//! `haul push` and `haul copy` against real registries (open, htpasswd, token mode): digests
//! kept byte for byte, Docker pulls and runs what was pushed, nothing uploaded twice, deltas
//! only onto their base, cut uploads resumed, damaged tars refused.

mod fault_proxy;
mod harness;

use std::path::Path;
use std::process::Command;

use harness::*;

/// The manifest `reference` names, as the registry serves it (skopeo, outside haul).
fn raw_manifest(reference: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
    require_on_path("skopeo");
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some((user, password)) = creds {
        command.arg("--creds").arg(format!("{user}:{password}"));
    }
    command.arg(format!("docker://{reference}"));
    let output = output_within(&mut command, None, COMMAND_TIMEOUT);
    assert!(
        output.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Whether `reference` exists (a tag or digest answers).
fn exists(reference: &str) -> bool {
    let output = output_within(
        Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]),
        None,
        COMMAND_TIMEOUT,
    );
    output.status.success()
}

fn stdout(run: &Run) -> String {
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// A runnable image with a layer of its own, pushed to a fresh registry.
fn source_image(registry: &Registry, repository: &str, message: &str) -> Pushed {
    let image = Image::runnable(
        message,
        vec![Layer::text(
            "etc/message",
            &format!("{message}\n"),
            Compression::Gzip,
        )],
        Compression::Gzip,
        false,
    );
    registry.push(repository, "v1", &image)
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
    let output = output_within(
        Engine::Classic.docker().args(["pull", &target]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    // The standard input's copy is gone.
    let leftovers: Vec<_> = std::fs::read_dir(haul.cache.path().join("ingest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let _cleanup = Engine::Classic.cleanup(&[&target]);
    let output = output_within(
        Engine::Classic.docker().args(["pull", &target]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(Engine::Classic.run(&target, &[]).trim(), "classic layout");

    // Pushing it again compresses nothing new and uploads nothing: same digest.
    let again = push_from_stdin(&haul, &tar, &dest.host()).success();
    assert!(stdout(&again).contains(&digest), "{}", stdout(&again));
    assert!(again.stderr.contains("0 uploaded"), "{}", again.stderr);
}

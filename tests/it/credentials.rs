//! Credential helpers: `credHelpers` and `credsStore` in docker's config.json make haul run
//! `docker-credential-NAME get`, as docker does. The helper here is a script the test writes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::*;

/// Writes `docker-credential-NAME` into `bin`: it answers for `server` with the given
/// credentials, logs each call, and says "credentials not found" for any other server.
fn write_helper(bin: &Path, name: &str, server: &str, user: &str, secret: &str) {
    let log = bin.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r asked\necho \"$asked\" >> {log}\n\
         if [ \"$asked\" = \"{server}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$asked\"\n\
         else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        log = log.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn calls(bin: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(bin.join(format!("{name}.log")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cred_helpers_and_creds_store_supply_credentials() {
    let registry = Registry::start_with_basic_auth("robot", "from-helper");
    let repository = unique("private/helped");
    let image = Image::runnable(
        "helped",
        vec![Layer::text("etc/h", "h\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let bin = tempfile::tempdir().unwrap();
    write_helper(
        bin.path(),
        "perhost",
        &registry.host(),
        "robot",
        "from-helper",
    );
    write_helper(
        bin.path(),
        "store",
        &registry.host(),
        "robot",
        "from-helper",
    );
    write_helper(
        bin.path(),
        "wrong",
        &registry.host(),
        "robot",
        "not-the-password",
    );
    write_helper(bin.path(), "empty", "elsewhere.example", "robot", "x");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );

    let run = |config: serde_json::Value, out: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        let haul = Haul::new();
        let result = haul.run_with(&["export", &pushed.reference, "-o", out], |c| {
            c.env("DOCKER_CONFIG", dir.path()).env("PATH", &path);
        });
        (haul, result)
    };

    // credHelpers: the registry's own helper, asked once for the whole run.
    let (haul, result) = run(
        serde_json::json!({"credHelpers": {registry.host(): "perhost"}}),
        "a.tar",
    );
    result.success();
    assert_eq!(
        tar_json(&haul.workdir.path().join("a.tar"), "manifest.json")[0]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(calls(bin.path(), "perhost"), vec![registry.host()]);

    // credsStore: the helper for every registry.
    let (_, result) = run(serde_json::json!({"credsStore": "store"}), "b.tar");
    result.success();
    assert_eq!(calls(bin.path(), "store"), vec![registry.host()]);

    // credHelpers wins over credsStore; a helper with the wrong secret is refused.
    let (haul, result) = run(
        serde_json::json!({"credsStore": "store", "credHelpers": {registry.host(): "wrong"}}),
        "c.tar",
    );
    result.failure(&["unauthorized"]);
    assert!(haul.workdir_files().is_empty());

    // A helper that knows nothing of this registry: as if there were no credentials.
    let (_, result) = run(serde_json::json!({"credsStore": "empty"}), "d.tar");
    result.failure(&["unauthorized", "requires a user name and password"]);

    // A helper that is not installed: a warning naming it, then the same refusal.
    let (_, result) = run(serde_json::json!({"credsStore": "missing"}), "e.tar");
    let result = result.failure(&["unauthorized"]);
    assert!(
        result.stderr.contains("docker-credential-missing"),
        "{}",
        result.stderr
    );
}

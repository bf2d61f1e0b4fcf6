//! `make demo` (scripts/demo.sh) end to end with the haul binary built for the tests: it
//! exits 0, the first export downloads, the second is served by the cache, the exported image
//! runs in Docker (the classic engine on the default socket, as `make test` starts it), and
//! the registry, the temporary files and the loaded image are gone afterwards.

// This test uses little of the harness; its other re-exports are for the other tests.
#[allow(unused_imports)]
use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// The lines of `output` from the `==> ` heading that starts with `heading` to the next one.
#[track_caller]
fn section<'a>(output: &'a str, heading: &str) -> &'a str {
    let start = output
        .find(&format!("==> {heading}"))
        .unwrap_or_else(|| panic!("no `==> {heading}` step in the demo's output:\n{output}"));
    let body = &output[start + 4..];
    match body.find("\n==> ") {
        Some(end) => &body[..end],
        None => body,
    }
}

#[test]
fn the_demo_script_exports_from_the_cache_and_the_image_runs() {
    require_tool("/usr/bin/docker-registry");
    require_tool("/bin/busybox");
    require_on_path("curl");
    // The demo loads the tar only where an engine answers and says "skipped" elsewhere; here
    // the engine must answer (`make test` starts it), or the test fails: nothing is skipped.
    let engine = Engine::Classic;
    let info = output_within(
        engine
            .docker()
            .args(["info", "--format", "{{.ServerVersion}}"]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        info.status.success(),
        "no Docker engine answers on the default socket: run `make test`, which starts it \
         (scripts/start-dockerd.sh):\n{}",
        String::from_utf8_lossy(&info.stderr)
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
    let home = tempfile::tempdir().unwrap();
    // stdout and stderr in one pipe, so haul's progress lines stay under their step.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg("exec \"$0\" 2>&1")
        .arg(&script)
        .env("HAUL_BIN", env!("CARGO_BIN_EXE_haul"))
        // The engine checked above, and nothing of the machine's haul or docker configuration.
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", home.path().join("docker-config"))
        .env_remove("HAUL_CONFIG")
        .env_remove("HAUL_CACHE_DIR")
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("TMPDIR", home.path());
    let run = output_within(&mut command, None, COMMAND_TIMEOUT);
    let output = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{} failed ({}):\n{output}{}",
        script.display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let cold = section(&output, "exporting it (cold cache");
    assert!(
        cold.contains(": downloaded "),
        "the first export downloads:\n{output}"
    );
    let warm = section(&output, "exporting it again (warm cache");
    assert!(
        warm.contains(": cached (") && !warm.contains(": downloaded "),
        "the second export takes every blob from the cache:\n{output}"
    );
    assert!(
        warm.contains("wrote "),
        "the second export writes the tar:\n{output}"
    );
    assert!(
        section(&output, "haul cache ls").contains("/demo/hello:1"),
        "haul cache ls lists the image:\n{output}"
    );
    let docker = section(&output, "loading it into Docker");
    assert!(
        !docker.contains("skipped"),
        "the demo found no engine:\n{output}"
    );
    assert!(
        docker.contains("Loaded image: "),
        "docker load ran:\n{output}"
    );
    assert!(
        docker
            .lines()
            .any(|line| line.trim() == "hello from an image exported by haul"),
        "the image's message, from docker run, is missing:\n{output}"
    );

    // Cleaned up: the demo's temporary folder (under TMPDIR) and the image it loaded.
    let left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("haul-demo."))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
    let reference = output
        .lines()
        .find_map(|line| line.strip_prefix("pushed "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `pushed REFERENCE` line:\n{output}"));
    let inspect = output_within(
        engine.docker().args(["image", "inspect", reference]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        !inspect.status.success(),
        "the demo left {reference} loaded in the engine"
    );
}

//! haul where the site is: `make dist`'s binaries (x86_64 and aarch64 Linux against glibc
//! 2.17, x86_64 Windows) are small, checkable with coreutils, described by an SBOM, name their
//! commit, and do a site's work on the machines sites run: a Debian 11 root without
//! ca-certificates, an arm64 root under qemu-user, and wine. What they write is checked on the
//! host: verified, loaded into a real engine and run, pulled back from the registry.

use std::path::Path;
use std::process::Command;

use crate::harness::sites::{Machine, Site};
use crate::harness::*;

const MACHINES: [Machine; 3] = [Machine::Bullseye, Machine::Arm64, Machine::Windows];

fn output(command: &mut Command) -> String {
    let out = output_within(command, None, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The highest `GLIBC_2.N` an ELF binary needs, as N.
fn newest_glibc_needed(binary: &Path) -> u32 {
    let versions = output(Command::new("readelf").arg("--version-info").arg(binary));
    versions
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_2."))
        .filter_map(|minor| minor.split('.').next()?.parse().ok())
        .max()
        .expect("a dynamically linked binary names glibc versions")
}

#[test]
fn dist_binaries_are_small_checkable_described_and_portable() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let commit = output(
        Command::new("git")
            .args(["log", "-1", "--format=%h"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    for machine in MACHINES {
        let binary = machine.binary();
        let name = binary.file_name().unwrap().to_str().unwrap();
        let size = std::fs::metadata(&binary).unwrap().len();
        assert!(size <= 25 << 20, "{name} is {size} bytes");
        assert!(size >= 4 << 20, "{name} is {size} bytes: not haul");
        // Checkable with coreutils alone, beside the binary.
        let checked = output(
            Command::new("sha256sum")
                .args(["-c", &format!("{name}.sha256")])
                .current_dir(&dist),
        );
        assert_eq!(checked.trim(), format!("{name}: OK"));
        // The SBOM names the binary and the crates it holds, this platform's only.
        let sbom: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dist.join(format!("{name}.cdx.json"))).unwrap())
                .unwrap();
        assert_eq!(sbom["bomFormat"], "CycloneDX");
        assert_eq!(sbom["metadata"]["component"]["name"], "haul");
        let crates: Vec<&str> = sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        for needed in ["tokio", "reqwest", "sha2", "sled", "rustls", "aws-lc-sys"] {
            assert!(crates.contains(&needed), "{name}'s SBOM lacks {needed}");
        }
        assert!(
            !crates.contains(&"proptest"),
            "{name}'s SBOM names a test crate"
        );
        assert!(!crates.contains(&"cc"), "{name}'s SBOM names a build tool");
        let windows_crates = crates.contains(&"windows-sys");
        assert_eq!(
            windows_crates,
            machine == Machine::Windows,
            "{name}: {crates:?}"
        );
        match machine {
            Machine::Bullseye | Machine::Arm64 => {
                let newest = newest_glibc_needed(&binary);
                assert!(newest <= 17, "{name} needs GLIBC_2.{newest}");
                let sections = output(Command::new("readelf").arg("-S").arg(&binary));
                assert!(!sections.contains(".debug_"), "{name} is not stripped");
            }
            Machine::Windows => {
                // No DLL of mingw's (libgcc, winpthread): only what Windows has.
                let imports = output(
                    Command::new("x86_64-w64-mingw32-objdump")
                        .arg("-p")
                        .arg(&binary),
                );
                let dlls: Vec<&str> = imports
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("DLL Name: "))
                    .collect();
                assert!(
                    dlls.iter().any(|d| d.eq_ignore_ascii_case("kernel32.dll")),
                    "{dlls:?}"
                );
                for dll in &dlls {
                    let dll = dll.to_ascii_lowercase();
                    assert!(
                        !dll.starts_with("libgcc")
                            && !dll.starts_with("libwinpthread")
                            && !dll.starts_with("libstdc++"),
                        "{name} needs {dll}, which Windows does not have"
                    );
                }
            }
        }
        // It runs there and names its commit.
        let site = Site::new(machine);
        let run = site.run(&["--version"]).success();
        let version = String::from_utf8_lossy(&run.stdout);
        assert!(
            version.starts_with(&format!(
                "haul {} ({}",
                env!("CARGO_PKG_VERSION"),
                commit.trim()
            )),
            "{machine:?}: {version}"
        );
    }
}

/// Exports `reference` there as a set of 256 KiB parts and a recovery part, loses one part,
/// repairs the set there, and checks the repaired parts on the host with coreutils.
fn split_lose_and_repair(site: &Site, reference: &str) {
    std::fs::create_dir(site.host_path("disc")).unwrap();
    site.run(&[
        "export",
        reference,
        "-o",
        &site.at("disc/app.tar"),
        "--split",
        "256K",
        "--parity",
        "1",
    ])
    .success();
    let disc = site.host_path("disc");
    let lost = disc.join("app.tar.002");
    let original = std::fs::read(&lost).unwrap();
    std::fs::remove_file(&lost).unwrap();
    site.run(&["verify", &site.at("disc/app.tar.parts")])
        .failure(&["app.tar.002"]);
    let run = site
        .run(&["repair", &site.at("disc/app.tar.parts")])
        .success();
    assert!(run.stderr.contains("1 part rebuilt"), "{}", run.stderr);
    assert_eq!(std::fs::read(&lost).unwrap(), original);
    let checked = output(
        Command::new("sha256sum")
            .args(["-c", "app.tar.sha256"])
            .current_dir(&disc),
    );
    assert!(checked.lines().all(|l| l.ends_with(": OK")), "{checked}");
    site.run(&["verify", &site.at("disc/app.tar.parts")])
        .success();
}

/// v1 exported there from the registry and verified; v2's patch delta against that v1.tar
/// made where the registry is (the origin); v2 rebuilt there, verified, then loaded into an
/// engine on the host and run, its image ID v2's. Returns the images and the origin's haul.
fn rebuild_a_patch_delta_there(site: &Site, name: &str) -> (crate::patch::Rebuilt, Haul) {
    let rebuilt = crate::patch::rebuilt_base(name, true, false);
    let (v1, v2) = (&rebuilt.v1, &rebuilt.v2);
    site.run(&["export", &v1.reference, "-o", &site.at("v1.tar")])
        .success();
    site.run(&["verify", &site.at("v1.tar")]).success();
    let origin = Haul::new();
    origin
        .run(&[
            "export",
            &v2.reference,
            "-o",
            site.host_path("v2-patch.tar").to_str().unwrap(),
            "--since",
            site.host_path("v1.tar").to_str().unwrap(),
            "--patch",
        ])
        .success();
    site.run(&[
        "rebuild",
        &site.at("v2-patch.tar"),
        "--from",
        &site.at("v1.tar"),
        "-o",
        &site.at("v2.tar"),
    ])
    .success();
    site.run(&["verify", &site.at("v2.tar")]).success();
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v2.reference]);
    engine.load(&site.host_path("v2.tar"));
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);
    (rebuilt, origin)
}

#[test]
fn on_debian_11_without_ca_certificates_a_site_exports_repairs_rebuilds_and_pushes() {
    let root = Machine::Bullseye.root().unwrap();
    assert!(
        root.join("lib/x86_64-linux-gnu/libc-2.31.so").exists(),
        "the root is not Debian 11's glibc 2.31"
    );
    assert!(
        !root.join("etc/ssl/certs/ca-certificates.crt").exists(),
        "the root has a CA store"
    );
    let site = Site::new(Machine::Bullseye);
    let (rebuilt, origin) = rebuild_a_patch_delta_there(&site, "test/site-bullseye");
    let crate::patch::Rebuilt { v1, v2, _registry } = &rebuilt;

    // Pushed into the site's registry, every digest kept.
    let site_registry = Registry::start();
    site.run(&["push", &site.at("v2.tar"), &site_registry.host()])
        .success();
    let pushed = v2
        .reference
        .replacen(&_registry.host(), &site_registry.host(), 1);
    let inspect = origin.run(&["inspect", &pushed, "--json"]).success();
    assert!(
        String::from_utf8_lossy(&inspect.stdout).contains(&v2.manifest_digest),
        "{}",
        String::from_utf8_lossy(&inspect.stdout)
    );

    split_lose_and_repair(&site, &v1.reference);

    // HTTPS with no CA store there: refused, naming both ways out; its CA given, it works.
    let ca = TestCa::new("haul site test CA");
    let (cert, key) = ca.server_cert(&["127.0.0.1"]);
    let tls = TlsRegistry::serve(&_registry.storage_dir(), &cert, &key);
    let over_tls = v1.reference.replacen(&_registry.host(), &tls.host(), 1);
    site.run(&["inspect", &over_tls]).failure(&[
        "no CA certificates",
        "--ca-cert",
        "ca-certificates",
    ]);
    std::fs::copy(ca.ca_pem(), site.host_path("ca.pem")).unwrap();
    let inspect = site
        .run(&["inspect", &over_tls, "--ca-cert", &site.at("ca.pem")])
        .success();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains(&v1.manifest_digest));
}

#[test]
fn on_arm64_a_site_exports_verifies_and_repairs() {
    let root = Machine::Arm64.root().unwrap();
    assert!(root.join("lib/ld-linux-aarch64.so.1").exists());
    let registry = Registry::start();
    let app = registry.push_app(
        &unique("test/site-arm64"),
        "v1",
        "hello from arm64's export",
    );
    let site = Site::new(Machine::Arm64);
    let run = site.run(&["--version"]).success();
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("haul "));
    site.run(&["export", &app.reference, "-o", &site.at("app.tar")])
        .success();
    site.run(&["verify", &site.at("app.tar")]).success();
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&app.reference]);
    engine.load(&site.host_path("app.tar"));
    assert_eq!(
        engine.run(&app.reference, &[]).trim(),
        "hello from arm64's export"
    );
    split_lose_and_repair(&site, &app.reference);
}

#[test]
fn on_windows_a_site_exports_every_format_verifies_repairs_and_pushes() {
    let registry = Registry::start();
    let repository = unique("test/site-windows");
    let v1 = registry.push_app(&repository, "v1", "hello from a windows export");
    let v2 = registry.push_app(&repository, "v2", "v2 from a windows export");
    let site = Site::new(Machine::Windows);
    let default_cache = Site::windows_default_cache();
    let _ = std::fs::remove_dir_all(&default_cache);

    // Every format, written with Windows paths; tar paths stay `/`; each loads and runs.
    for (format, engine) in [
        ("docker", Engine::Classic),
        ("docker-v1", Engine::Classic),
        ("oci", Engine::ContainerdStore),
    ] {
        let name = format!("v1-{format}.tar");
        site.run(&[
            "export",
            &v1.reference,
            "--format",
            format,
            "-o",
            &site.at(&name),
        ])
        .success();
        site.run(&["verify", &site.at(&name)]).success();
        let tar = site.host_path(&name);
        for (path, _) in tar_entries(&tar) {
            assert!(!path.contains('\\'), "{format}: {path}");
        }
        let _cleanup = engine.cleanup(&[&v1.reference]);
        engine.load(&tar);
        assert_eq!(
            engine.run(&v1.reference, &[]).trim(),
            "hello from a windows export",
            "{format}"
        );
    }
    // The cache is where Windows keeps a user's local data.
    assert!(default_cache.join("blobs/sha256").is_dir());

    // A delta against the earlier bundle: only what v1 lacks.
    site.run(&[
        "export",
        &v2.reference,
        "--since",
        &site.at("v1-docker.tar"),
        "-o",
        &site.at("v2-delta.tar"),
    ])
    .success();
    site.run(&["verify", &site.at("v2-delta.tar")]).success();
    assert!(
        std::fs::metadata(site.host_path("v2-delta.tar"))
            .unwrap()
            .len()
            < std::fs::metadata(site.host_path("v1-docker.tar"))
                .unwrap()
                .len()
                / 2
    );

    // inspect, push and copy reach a registry from there.
    let inspect = site.run(&["inspect", &v1.reference]).success();
    assert!(
        String::from_utf8_lossy(&inspect.stdout).contains(&v1.manifest_digest),
        "{}",
        String::from_utf8_lossy(&inspect.stdout)
    );
    let site_registry = Registry::start();
    site.run(&["push", &site.at("v1-docker.tar"), &site_registry.host()])
        .success();
    let copied = format!("{}/{repository}:v2", site_registry.host());
    site.run(&["copy", &v2.reference, &copied]).success();
    let check = Haul::new();
    for (reference, digest) in [
        (
            v1.reference
                .replacen(&registry.host(), &site_registry.host(), 1),
            &v1.manifest_digest,
        ),
        (copied.clone(), &v2.manifest_digest),
    ] {
        let run = check.run(&["inspect", &reference]).success();
        assert!(String::from_utf8_lossy(&run.stdout).contains(digest.as_str()));
    }

    split_lose_and_repair(&site, &v1.reference);
    rebuild_a_patch_delta_there(&site, "test/site-windows-patch");

    // What cannot run on Windows says so.
    site.run(&["export", &v1.reference, "--to", "ssh://site-host"])
        .failure(&["not supported by haul on Windows", "haul load"]);
    // Refused before the bundle is read (this one does not even exist).
    site.run(&[
        "load",
        "-H",
        "unix:///var/run/docker.sock",
        &site.at("absent.tar"),
    ])
    .failure(&["Unix socket", "npipe:////./pipe/docker_engine"]);
}

//! Bundles in parts (`--split`, `--parity`): the parts join into the tar an unsplit export
//! writes, byte for byte; `sha256sum -c` checks them with coreutils alone; haul reads a set as
//! a tar (verify, load into a real engine, push, `--since`) without joining it; a lost and a
//! damaged part are named, and `haul repair` restores them; more losses than recovery parts
//! change nothing.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn app(registry: &Registry, tag: &str, seed: u64) -> Pushed {
    let image = Image::runnable(
        &format!("parts {tag}"),
        vec![
            Layer::random("data/a", 300 << 10, seed),
            Layer::random("data/b", 200 << 10, seed + 1),
        ],
        Compression::Gzip,
        false,
    );
    registry.push(&unique("test/parts"), tag, &image)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha256sum_check(dir: &Path, sums: &str) -> std::process::Output {
    output_within(
        Command::new("sha256sum")
            .args(["-c", sums])
            .current_dir(dir),
        None,
        std::time::Duration::from_secs(60),
    )
}

#[test]
fn parts_join_into_the_tar_check_with_coreutils_and_repair_themselves() {
    let registry = Registry::start();
    let v1 = app(&registry, "v1", unique_seed());
    let haul = Haul::new();
    let whole = haul.export(&[&v1.reference], "v1.tar");
    std::fs::create_dir(haul.workdir.path().join("disc")).unwrap();

    // --dry-run: the exact size, in how many parts, and nothing written.
    let size = std::fs::metadata(&whole).unwrap().len();
    let run = haul
        .run(&[
            "export",
            &v1.reference,
            "-o",
            "disc/v1.tar",
            "--split",
            "256K",
            "--parity",
            "2",
            "--dry-run",
        ])
        .success();
    let plan = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(plan.contains(&format!("({size} bytes)")), "{plan}");
    let parts = size.div_ceil(256 << 10);
    assert!(
        plan.contains(&format!(
            "in {parts} parts of at most 256.0 KiB, and 2 recovery parts"
        )),
        "{plan}"
    );
    assert!(plan.contains(&format!("{} media", parts + 2)), "{plan}");
    assert!(files(&haul.workdir.path().join("disc")).is_empty());
    let run = haul
        .run(&[
            "export",
            &v1.reference,
            "-o",
            "disc/v1.tar",
            "--split",
            "256K",
            "--parity",
            "2",
        ])
        .success();
    let disc = haul.workdir.path().join("disc");
    let names = files(&disc);
    let data: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.strip_prefix("v1.tar.")
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert!(data.len() >= 6, "{names:?}\n{}", run.stderr);
    assert!(
        run.stderr.contains("wrote disc/v1.tar.parts (")
            && run
                .stderr
                .contains(&format!(" in {} parts and 2 recovery parts)", data.len())),
        "{}",
        run.stderr
    );
    assert!(names.contains(&"v1.tar.r01".to_string()) && names.contains(&"v1.tar.r02".to_string()));
    assert!(
        names.contains(&"v1.tar.sha256".to_string()) && names.contains(&"v1.tar.parts".to_string())
    );
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");

    // Joined in order, the data parts are the tar the unsplit export wrote.
    let mut joined = Vec::new();
    for name in &data {
        let bytes = std::fs::read(disc.join(name)).unwrap();
        assert!(
            bytes.len() <= 256 << 10,
            "{name} holds {} bytes",
            bytes.len()
        );
        joined.extend(bytes);
    }
    assert_eq!(
        joined,
        std::fs::read(&whole).unwrap(),
        "the parts differ from the tar"
    );
    let checked = sha256sum_check(&disc, "v1.tar.sha256");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    haul.run(&["verify", "disc/v1.tar.parts"]).success();

    // One part lost, a byte flipped in another: verify names both, and what to do.
    let originals: Vec<(String, Vec<u8>)> = names
        .iter()
        .filter(|n| !n.ends_with(".parts") && !n.ends_with(".sha256"))
        .map(|n| (n.clone(), std::fs::read(disc.join(n)).unwrap()))
        .collect();
    // The first part lost: the tar reader stops making sense at once, and the damaged part
    // lies well past it (every part is checked all the same).
    std::fs::remove_file(disc.join(data[0])).unwrap();
    let damaged = data[data.len() - 2];
    let mut flipped = std::fs::read(disc.join(damaged)).unwrap();
    flipped[100_000] ^= 0x20;
    std::fs::write(disc.join(damaged), flipped).unwrap();
    assert!(!sha256sum_check(&disc, "v1.tar.sha256").status.success());
    haul.run(&["verify", "disc/v1.tar.parts"]).failure(&[
        &format!("{} is missing", data[0]),
        &format!("{damaged} is damaged (its sha-256 is"),
        "2 recovery parts can rebuild them: `haul repair",
    ]);
    haul.run(&["load", "disc/v1.tar.001"])
        .failure(&[&format!("{} is missing", data[0]), "nothing was loaded"]);

    let run = haul.run(&["repair", "disc/v1.tar.parts"]).success();
    assert!(run.stderr.contains("2 parts rebuilt"), "{}", run.stderr);
    for (name, bytes) in &originals {
        assert_eq!(&std::fs::read(disc.join(name)).unwrap(), bytes, "{name}");
    }
    let checked = sha256sum_check(&disc, "v1.tar.sha256");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    // Three lost, two recovery parts: said so, and nothing changed.
    for name in [data[0], data[2], data[3]] {
        std::fs::remove_file(disc.join(name)).unwrap();
    }
    haul.run(&["repair", "disc/v1.tar.parts"]).failure(&[
        "3 parts are missing or damaged",
        "can rebuild at most 2",
        "nothing was changed",
    ]);
    assert_eq!(files(&disc).len(), names.len() - 3);
}

#[test]
fn a_set_loads_pushes_and_bases_a_delta_without_being_joined() {
    let registry = Registry::start();
    let seed = unique_seed();
    let v1 = app(&registry, "v1", seed);
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar", "--split", "128K"])
        .success();
    assert!(!haul.workdir.path().join("v1.tar").exists());

    // Into a real engine, from the first part's name.
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&v1.reference]);
    let run = haul.run(&["load", "v1.tar.001"]).success();
    assert!(
        run.stderr.contains("loaded v1.tar.parts into"),
        "{}",
        run.stderr
    );
    assert_eq!(classic.run(&v1.reference, &[]).trim(), "parts v1");

    // Into a registry, every digest kept.
    let dest = Registry::start();
    haul.run(&["push", "v1.tar.parts", &dest.host()]).success();
    let repository = v1
        .reference
        .split_once('/')
        .unwrap()
        .1
        .split(':')
        .next()
        .unwrap();
    let raw = skopeo_raw(&format!("{}/{repository}:v1", dest.host()), None).unwrap();
    assert_eq!(sha256(&raw), v1.manifest_digest);

    // A delta against the set: only what is new.
    let v2 = {
        let image = Image::runnable(
            "parts v2",
            vec![
                Layer::random("data/a", 300 << 10, seed),
                Layer::random("data/b", 200 << 10, seed + 1),
                Layer::random("data/c", 100 << 10, seed + 2),
            ],
            Compression::Gzip,
            false,
        );
        registry.push(repository, "v2", &image)
    };
    let run = haul
        .run(&[
            "export",
            &v2.reference,
            "-o",
            "v2.tar",
            "--since",
            "v1.tar.parts",
            "--split",
            "64K",
        ])
        .success();
    assert!(
        run.stderr.contains("3 layer blobs left out"),
        "{}",
        run.stderr
    );
    let run = haul
        .run(&[
            "export",
            &v2.reference,
            "-o",
            "v2.tar",
            "--since",
            "v1.tar.parts",
            "--dry-run",
        ])
        .success();
    let plan = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(plan.contains("3 layers left out"), "{plan}");
    assert!(
        plan.contains("a delta: what it leaves out is held where"),
        "{plan}"
    );
    haul.run(&["verify", "v2.tar.parts"]).success();

    // A part of another set under a set's name is refused as such.
    std::fs::copy(
        haul.workdir.path().join("v2.tar.001"),
        haul.workdir.path().join("v1.tar.001"),
    )
    .unwrap();
    haul.run(&["verify", "v1.tar.parts"])
        .failure(&["v1.tar.001 is not a part of this set"]);
}

#[test]
fn several_images_every_format_signatures_and_receipts_go_into_parts() {
    let registry = Registry::start();
    let seed = unique_seed();
    let a = app(&registry, "v1", seed);
    let b = app(&registry, "v1", seed + 10);
    let clients = Clients::new();
    let key = clients.key_pair("site");
    let repository_of_a = a.reference.rsplit_once(':').unwrap().0;
    clients.cosign_sign(
        &key,
        &format!("{repository_of_a}@{}", a.manifest_digest),
        &[],
    );
    let haul = Haul::new();

    // Two images, the OCI layout, what refers to them, and a receipt: in parts, checked
    // offline with the key, listed by inspect.
    let run = haul.run(&[
        "export",
        &a.reference,
        &b.reference,
        "-o",
        "two.tar",
        "--format",
        "oci",
        "--referrers",
        "--split",
        "64K",
        "--parity",
        "1",
        "--receipt",
        "two.receipt",
    ]);
    let run = run.success();
    assert!(
        haul.workdir.path().join("two.tar.parts").is_file(),
        "{}",
        run.stderr
    );
    haul.run(&["verify", "two.tar.parts", "--key", key.public()])
        .failure(&["1 image in it is", "not signed", &b.reference]);
    let listing = haul.run(&["inspect", "--json", "two.tar.parts"]).success();
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(
        listing[0]["images"].as_array().unwrap().len(),
        2,
        "{listing}"
    );
    let signed = listing[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["names"][0] == a.reference.as_str())
        .unwrap();
    assert_eq!(
        signed["referrers"][0]["kind"], "signature (cosign)",
        "{signed}"
    );

    // A delta against the receipt, in parts too.
    haul.run(&[
        "export",
        &a.reference,
        "-o",
        "again.tar",
        "--since",
        "two.receipt",
        "--split",
        "64K",
    ])
    .success();
    haul.run(&["verify", "again.tar.parts"]).success();

    // The classic layout in parts loads into a real engine.
    haul.run(&[
        "export",
        &b.reference,
        "-o",
        "classic.tar",
        "--format",
        "docker-v1",
        "--split",
        "256K",
    ])
    .success();
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&b.reference]);
    haul.run(&["load", "classic.tar.parts"]).success();
    assert_eq!(classic.image_id(&b.reference), b.config_digest);
}

#[test]
fn split_says_what_it_cannot_do() {
    let haul = Haul::new();
    let usage = haul.run(&["export", "127.0.0.1:1/x:1", "--split", "1G", "-o", "-"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    assert!(usage.stderr.contains("--split"), "{}", usage.stderr);
    let usage = haul.run(&["export", "127.0.0.1:1/x:1", "--split", "1G", "--load"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    let usage = haul.run(&["export", "127.0.0.1:1/x:1", "--parity", "2"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    let usage = haul.run(&["export", "127.0.0.1:1/x:1", "--split", "floppy"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    assert!(usage.stderr.contains("dvd"), "{}", usage.stderr);
    haul.run(&["repair", "nothing.tar"])
        .failure(&["is not a parts set"]);
}

/// Whether `dir` holds a temporary file (`.NAME.PID.partial`).
fn holds_partial(dir: &Path) -> bool {
    files(dir).iter().any(|f| f.ends_with(".partial"))
}

/// Ctrl-C or SIGTERM while an export writes its parts, or while repair rebuilds one, leaves
/// nothing in the folder (the USB stick): the parts' temporary files go with the run, though
/// the threads writing them are not waited for.
#[test]
fn an_interrupted_split_export_or_repair_leaves_nothing_behind() {
    let registry = Registry::start();
    let seed = unique_seed();
    let image = Image::runnable(
        "parts interrupted",
        (0..4)
            .map(|i| Layer::random(&format!("data/{i}"), 4 << 20, seed + i))
            .collect(),
        Compression::Gzip,
        false,
    );
    let v1 = registry.push(&unique("test/parts"), "v1", &image);
    let haul = Haul::new();
    let disc = haul.workdir.path().join("disc");
    std::fs::create_dir(&disc).unwrap();
    let export = [
        "--limit-rate",
        "4M",
        "export",
        &v1.reference,
        "-o",
        "disc/v1.tar",
        "--split",
        "1M",
        "--parity",
        "2",
        "--jobs",
        "1",
    ];
    for signal in ["INT", "TERM"] {
        haul.interrupt_when(&export, signal, || holds_partial(&disc))
            .interrupted("no tar was written (nor any part)");
        assert_eq!(files(&disc), Vec::<String>::new(), "{signal}: left behind");
    }

    // A whole set, two parts lost: repair interrupted leaves the folder as it found it.
    haul.run(&export[2..]).success();
    std::fs::remove_file(disc.join("v1.tar.002")).unwrap();
    std::fs::remove_file(disc.join("v1.tar.005")).unwrap();
    let before = files(&disc);
    for signal in ["INT", "TERM"] {
        haul.interrupt_when(&["repair", "disc/v1.tar.parts"], signal, || {
            holds_partial(&disc)
        })
        .interrupted("run haul repair again");
        assert_eq!(files(&disc), before, "{signal}: left behind");
    }
    haul.run(&["repair", "disc/v1.tar.parts"]).success();
    assert!(disc.join("v1.tar.002").exists() && disc.join("v1.tar.005").exists());
}

fn unique_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

//! Patch deltas: `export --since PREV --patch` carries a rebuilt layer as what changed inside
//! it; `haul load` rebuilds it from the engine's own copy of the earlier image (or from
//! `--from PREV`) and loads it in both Docker stores; `haul rebuild` writes a whole bundle that
//! loads into an empty engine; a damaged patch or a missing source loads nothing.

use std::path::Path;

use crate::harness::*;

/// An app on a base that was rebuilt: v1 and v2 share busybox; v2's base layer has one
/// library changed in three places, a document moved, a new file; the app layer on top is the
/// same content on a new parent.
pub(crate) struct Rebuilt {
    pub _registry: Registry,
    pub v1: Pushed,
    pub v2: Pushed,
}

/// `layer` as another gzip writer would have made it: the same deflate stream under a header
/// with a modification time, which haul's encoder (mtime 0) does not reproduce.
fn foreign_gzip(mut layer: Layer) -> Layer {
    layer.compressed[4] = 0x2a;
    layer.digest = sha256(&layer.compressed);
    layer
}

/// `layer` gzipped as haul's own encoder does (what `haul push` makes of an uncompressed
/// layer): a patch rebuilds this blob exactly.
fn haul_gzip(layer: Layer) -> Layer {
    use std::io::Read;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer.compressed[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut compressed = Vec::new();
    haul::patch::recompress::compress(
        haul::patch::recompress::Recipe::Gzip { level: 6 },
        &mut &tar[..],
        tar.len() as u64,
        &mut compressed,
    )
    .unwrap();
    Layer {
        digest: sha256(&compressed),
        compressed,
        ..layer
    }
}

pub(crate) fn rebuilt_base(name: &str, reproducible: bool, oci: bool) -> Rebuilt {
    let compression = Compression::Gzip;
    let as_made = |layer: Layer| {
        if reproducible {
            haul_gzip(layer)
        } else {
            foreign_gzip(layer)
        }
    };
    let registry = Registry::start();
    let repository = unique(name);
    let seed = std::process::id() as u64 ^ 0x5eed;
    // Larger than the few MiB a pipe to `docker load` holds (so a loader that stops early is
    // seen stopping).
    let library = noise(6 << 20, seed);
    let tool = noise(200 << 10, seed + 1);
    let doc = "a document about the base, line after line\n".repeat(1000);
    let mut changed = library.clone();
    for at in [1000, 2_400_000, 5_800_000] {
        changed[at..at + 64].copy_from_slice(&noise(64, seed + at as u64));
    }
    let base_v1 = as_made(Layer::from_entries(
        &[
            Entry::Dir("usr/"),
            Entry::File("usr/lib/libbig.so", &library, 0o644),
            Entry::File("usr/bin/tool", &tool, 0o755),
            Entry::File("usr/share/doc/base/README", doc.as_bytes(), 0o644),
        ],
        compression,
    ));
    let base_v2 = as_made(Layer::from_entries(
        &[
            Entry::Dir("usr/"),
            Entry::File("usr/lib/libbig.so", &changed, 0o644),
            Entry::File("usr/bin/tool", &tool, 0o755),
            Entry::File("usr/share/doc/base-2/README", doc.as_bytes(), 0o644),
            Entry::File("etc/base-release", b"2\n", 0o644),
        ],
        compression,
    ));
    let app_bytes = noise(100 << 10, seed + 7);
    let app = as_made(Layer::from_entries(
        &[Entry::File("opt/app/app.bin", &app_bytes, 0o755)],
        compression,
    ));
    let push = |tag: &str, base: &Layer| {
        let image = Image::runnable(
            &format!("app {tag}"),
            vec![base.clone(), app.clone()],
            compression,
            oci,
        );
        registry.push(&repository, tag, &image)
    };
    let v1 = push("v1", &base_v1);
    let v2 = push("v2", &base_v2);
    Rebuilt {
        _registry: registry,
        v1,
        v2,
    }
}

/// `v1.tar`, then `v2-patch.tar`: v2's patch delta against it (with `extra` options); returns
/// the patch export's run.
fn export_v1_and_patch(haul: &Haul, v1: &Pushed, v2: &Pushed, extra: &[&str]) -> Run {
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    let mut args = vec![
        "export",
        &v2.reference,
        "-o",
        "v2-patch.tar",
        "--since",
        "v1.tar",
        "--patch",
    ];
    args.extend_from_slice(extra);
    haul.run(&args).success()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn delta_record(tar: &Path) -> serde_json::Value {
    tar_json(tar, "haul-delta.json")
}

#[test]
fn a_patch_delta_of_a_rebuilt_base_is_small_and_loads_exact_in_both_stores() {
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/patch-exact", true, false);
    let haul = Haul::new();
    let dir = haul.workdir.path().to_path_buf();
    let run = export_v1_and_patch(&haul, &v1, &v2, &[]);
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-delta.tar",
        "--since",
        "v1.tar",
    ])
    .success();
    assert!(run.stderr.contains("travels as a patch"), "{}", run.stderr);
    assert!(
        run.stderr.contains("a patch delta, 2 layers as patches")
            && run.stderr.contains("plain `docker load` does not take it")
            && !run.stderr.contains("--new-digests"),
        "{}",
        run.stderr
    );
    // inspect says what it is, each patched layer, and what takes it.
    let inspected = haul.run(&["inspect", "v2-patch.tar"]).success();
    let text = String::from_utf8_lossy(&inspected.stdout);
    assert!(
        text.contains("patch delta: 2 layers carried as patches")
            && text.contains("Plain `docker load` does not take it")
            && !text.contains("0 layer blobs (0 B) left out"),
        "{text}"
    );
    assert_eq!(
        text.matches("rebuilds exact (every digest kept)").count(),
        2,
        "{text}"
    );
    let json = haul.run(&["inspect", "v2-patch.tar", "--json"]).success();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let listed = json[0]["delta"]["patched"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{json}");
    assert!(listed.iter().all(|p| p["rebuild"] == "exact"), "{json}");
    // The base's 1.1 MiB of noise crosses as a few KiB; the app layer as almost nothing.
    let (patch, plain) = (
        size(&dir.join("v2-patch.tar")),
        size(&dir.join("v2-delta.tar")),
    );
    assert!(
        patch * 10 < plain,
        "patch delta {patch} bytes, delta {plain}"
    );
    let record = delta_record(&dir.join("v2-patch.tar"));
    let patched = record["patched"].as_array().unwrap();
    assert_eq!(patched.len(), 2, "{record}");
    // Against v1's receipt instead of its tar (the README's walkthrough): the same patches,
    // made from the layers the cache kept.
    haul.run(&["verify", "v1.tar", "--receipt", "v1.receipt"])
        .success();
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-patch-r.tar",
        "--since",
        "v1.receipt",
        "--patch",
    ])
    .success();
    assert_eq!(
        delta_record(&dir.join("v2-patch-r.tar"))["patched"],
        record["patched"]
    );
    for layer in patched {
        // The harness compresses as flate2 does: the very blob is rebuilt.
        assert_eq!(layer["rebuild"], "exact", "{layer}");
        assert_eq!(layer["sources"].as_array().unwrap().len(), 1);
    }
    // verify lists each patched layer, what it is rebuilt from and how.
    let verified = haul.run(&["verify", "v2-patch.tar"]).success();
    let out = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(out.matches("patched: ").count(), 2, "{out}");
    assert!(out.contains("its blob, exactly"), "{out}");

    // The engine holding v1 rebuilds from its own copy (docker save), in both stores, in
    // Docker 20.10 and 26.1.
    for engine in [Engine::Classic, Engine::Classic26, Engine::ContainerdStore] {
        let host = engine.host();
        let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
        engine.load(&dir.join("v1.tar"));
        let run = haul
            .run_with(&["load", "v2-patch.tar"], |c| {
                if let Some(host) = host {
                    c.env("DOCKER_HOST", host);
                }
            })
            .success();
        assert!(run.stderr.contains("rebuilt layer"), "{}", run.stderr);
        assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
        // Exact: every digest kept, the classic store's image ID and the containerd
        // store's manifest digest alike.
        let expected = match engine {
            Engine::Classic | Engine::Classic26 => &v2.config_digest,
            Engine::ContainerdStore => &v2.manifest_digest,
        };
        assert_eq!(&engine.image_id(&v2.reference), expected, "{engine:?}");
    }

    // `haul rebuild` writes an ordinary whole bundle: it verifies and loads into an empty
    // engine, and holds the very blobs the registry serves.
    haul.run(&[
        "rebuild",
        "v2-patch.tar",
        "--from",
        "v1.tar",
        "-o",
        "v2-full.tar",
    ])
    .success();
    haul.run(&["verify", "v2-full.tar"]).success();
    let files: Vec<String> = tar_entries(&dir.join("v2-full.tar"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(!files.iter().any(|f| f == "haul-delta.json"), "{files:?}");
    for layer in &v2.layer_digests {
        assert!(
            files.contains(&format!("blobs/sha256/{}", hex_of(layer))),
            "{layer} missing: {files:?}"
        );
    }
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    engine.load(&dir.join("v2-full.tar"));
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);

    // Pushed where v1 went before: rebuilt first from the layers that registry holds (or from
    // the earlier bundle), the registry's manifest digest kept. A cache without v1's layers
    // fetches them from there.
    let delta = dir.join("v2-patch.tar").display().to_string();
    let dest = Registry::start();
    let fresh = Haul::new();
    let run = fresh.run(&["push", &delta, &dest.host()]).failure(&[
        "lacks layer sha256:",
        &format!("push {} there first", v1.reference),
    ]);
    assert!(
        !run.stderr.contains("check the repository name"),
        "{}",
        run.stderr
    );
    haul.run(&["push", &delta, &dest.host()])
        .failure(&["missing at", &v1.reference, "first"]);
    haul.run(&["push", "v1.tar", &dest.host()]).success();
    fresh.run(&["push", &delta, &dest.host()]).success();
    let target = pushed_as(&dest, &v2);
    assert_eq!(
        sha256(&skopeo_raw(&target, None).unwrap()),
        v2.manifest_digest
    );
    // Pushed with --from into a fresh haul: the digest kept, whatever the registry held. Into
    // one that took v1, and into one that never did (--from then also gives the layers the
    // delta left out).
    let push_from = |dest: &Registry| {
        let from = dir.join("v1.tar").display().to_string();
        Haul::new()
            .run(&["push", &delta, &dest.host(), "--from", &from])
            .success();
        let target = pushed_as(dest, &v2);
        assert_eq!(
            sha256(&skopeo_raw(&target, None).unwrap()),
            v2.manifest_digest
        );
        target
    };
    let elsewhere = Registry::start();
    haul.run(&["push", "v1.tar", &elsewhere.host()]).success();
    push_from(&elsewhere);
    let empty = Registry::start();
    let target = push_from(&empty);
    // Every blob is there: the engine pulls it and runs it.
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&target]);
    engine.pull(&target);
    assert_eq!(engine.run(&target, &[]).trim(), "app v2");
}

/// Where `haul push … DEST` puts `image`: DEST/<repository>:<tag>.
/// With only v1's receipt (the bundle went to the site, the cache was pruned), the layers a
/// patch is made against are fetched by digest from the registry the receipt names; where
/// they cannot be had, the export says so before it writes, with what to run.
#[test]
fn a_patch_against_a_receipt_fetches_what_it_is_made_against_or_says_so_first() {
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/patch-fetch", true, false);
    let haul = Haul::new();
    let dir = haul.workdir.path().to_path_buf();
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "v1.tar",
        "--receipt",
        "v1.receipt",
    ])
    .success();
    std::fs::remove_file(dir.join("v1.tar")).unwrap();
    haul.run(&["cache", "prune", "--all"]).success();
    let patch = [
        "export",
        &v2.reference,
        "-o",
        "v2-patch.tar",
        "--since",
        "v1.receipt",
        "--patch",
    ];
    let run = haul.run(&patch).success();
    assert!(!run.stderr.contains("travels whole"), "{}", run.stderr);
    let patched = delta_record(&dir.join("v2-patch.tar"))["patched"].clone();
    assert_eq!(patched.as_array().unwrap().len(), 2, "{patched}");

    // Offline, with v2 cached but v1's layers gone: said before the tar is written.
    haul.run(&["cache", "prune", "--all"]).success();
    haul.run(&["pull", &v2.reference]).success();
    let mut offline = patch.to_vec();
    offline.push("--offline");
    let run = haul.run(&offline).success();
    let warned = run
        .stderr
        .find("travels whole")
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stderr));
    let wrote = run.stderr.find("wrote").expect("a closing line");
    assert!(warned < wrote, "said after writing:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("run `haul pull {}`", v1.reference)),
        "{}",
        run.stderr
    );
}

fn pushed_as(dest: &Registry, image: &Pushed) -> String {
    let (_, path) = image.reference.split_once('/').unwrap();
    format!("{}/{path}", dest.host())
}

#[test]
fn a_layer_rebuilt_by_content_keeps_the_image_id_under_a_new_manifest() {
    // A gzip haul's encoder does not reproduce (as Go's, which made most public layers):
    // "content".
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/patch-content", false, true);
    let haul = Haul::new();
    let dir = haul.workdir.path().to_path_buf();
    let run = export_v1_and_patch(&haul, &v1, &v2, &["--receipt", "v2.receipt"]);
    assert!(
        run.stderr
            .contains("rebuild by content, so haul push needs --new-digests"),
        "{}",
        run.stderr
    );
    let record = delta_record(&dir.join("v2-patch.tar"));
    let patched = record["patched"].as_array().unwrap();
    assert!(!patched.is_empty());
    assert!(
        patched.iter().all(|l| l["rebuild"] == "content"),
        "{record}"
    );
    // What the site holds after it: the content layers as their uncompressed tars. The tar
    // read again says the same, byte for byte.
    haul.run(&["verify", "v2-patch.tar", "--receipt", "v2.again"])
        .success();
    let receipt = std::fs::read(dir.join("v2.receipt")).unwrap();
    assert_eq!(receipt, std::fs::read(dir.join("v2.again")).unwrap());
    let receipt = String::from_utf8(receipt).unwrap();
    for layer in patched {
        assert!(
            receipt.contains(layer["diffId"].as_str().unwrap()),
            "{receipt}"
        );
        assert!(
            !receipt.contains(layer["digest"].as_str().unwrap()),
            "{receipt}"
        );
    }
    let verified = haul.run(&["verify", "v2-patch.tar"]).success();
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("its content"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // Rebuilt from the earlier bundle, into the classic store: the image ID is the
    // registry's config digest.
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    engine.load(&dir.join("v1.tar"));
    let run = haul
        .run(&["load", "v2-patch.tar", "--from", "v1.tar"])
        .success();
    assert!(run.stderr.contains("by content"), "{}", run.stderr);
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);

    // The whole bundle: verifies, loads into an empty containerd store and runs there, under
    // a manifest that is not the registry's (the layers are uncompressed in it).
    haul.run(&[
        "rebuild",
        "v2-patch.tar",
        "--from",
        "v1.tar",
        "-o",
        "v2-full.tar",
    ])
    .success()
    .stderr
    .contains("by content")
    .then_some(())
    .expect("the closing line says how layers were rebuilt");
    haul.run(&["verify", "v2-full.tar"]).success();
    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&v1.reference, &v2.reference]);
    containerd.load(&dir.join("v2-full.tar"));
    assert_eq!(containerd.run(&v2.reference, &[]).trim(), "app v2");
    assert_ne!(containerd.image_id(&v2.reference), v2.manifest_digest);

    // A push would change the manifest digest: refused unless told, naming the digest.
    let dest = Registry::start();
    haul.run(&["push", "v1.tar", &dest.host()]).success();
    haul.run(&["push", "v2-patch.tar", &dest.host(), "--from", "v1.tar"])
        .failure(&[
            "rebuild by content only",
            &v2.manifest_digest,
            "--new-digests",
            "Nothing was pushed",
        ]);
    let target = pushed_as(&dest, &v2);
    assert!(skopeo_raw(&target, None).is_none(), "nothing was pushed");
    haul.run(&[
        "push",
        "v2-patch.tar",
        &dest.host(),
        "--from",
        "v1.tar",
        "--new-digests",
    ])
    .success();
    // Another manifest, the same config: the same image ID.
    let manifest: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&target, None).unwrap()).unwrap();
    assert_eq!(manifest["config"]["digest"], v2.config_digest.as_str());
}

#[test]
fn a_damaged_patch_or_a_missing_source_loads_nothing() {
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/patch-damage", true, false);
    let haul = Haul::new();
    let dir = haul.workdir.path().to_path_buf();
    export_v1_and_patch(&haul, &v1, &v2, &[]);
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);

    // An engine without the base: the error names what to load first; nothing is loaded.
    haul.run(&["load", "v2-patch.tar"]).failure(&[
        "load",
        &v1.reference,
        "first",
        "nothing was loaded",
    ]);
    assert_absent(engine, &v2.reference);

    // An engine that cannot be reached: `docker load` fails, and haul says so and ends
    // (the rebuilt tar's writer is stopped, not left waiting).
    haul.run_with(&["load", "v2-patch.tar", "--from", "v1.tar"], |c| {
        c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    })
    .failure(&["v2-patch.tar was not loaded", "`docker load` failed"]);

    // A bundle that is not the one it was made against: the image it needs is named.
    haul.run(&["export", &v2.reference, "-o", "v2.tar"])
        .success();
    haul.run(&[
        "rebuild",
        "v2-patch.tar",
        "--from",
        "v2.tar",
        "-o",
        "out.tar",
    ])
    .failure(&[
        &format!("patched against {} (its layer sha256:", v1.reference),
        "none of v2.tar holds",
        &format!(
            "give the bundle that delivered {} with --from",
            v1.reference
        ),
    ]);
    assert!(!dir.join("out.tar").exists());

    // A patch whose bytes were flipped: stopped before the engine sees anything.
    let record = delta_record(&dir.join("v2-patch.tar"));
    let patch_path = record["patched"][0]["patch"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let mut entries = tar_entries(&dir.join("v2-patch.tar"));
    let (_, bytes) = entries
        .iter_mut()
        .find(|(name, _)| *name == patch_path)
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    write_tar(&dir.join("flipped.tar"), &entries);
    engine.load(&dir.join("v1.tar"));
    haul.run(&["load", "flipped.tar"])
        .failure(&["flipped.tar", "nothing was loaded"]);
    assert_absent(engine, &v2.reference);
    // Flipped near its end and its name fixed to match (a forged patch): the rebuild is what
    // stops it.
    for (name, bytes) in &mut entries {
        if *name == patch_path {
            bytes[middle] ^= 0x55;
            let end = bytes.len() - 12;
            bytes[end] ^= 0x55;
        }
    }
    let forged_digest = sha256(&entries.iter().find(|(n, _)| *n == patch_path).unwrap().1);
    let forged_path = format!("blobs/sha256/{}", hex_of(&forged_digest));
    let mut record = record;
    record["patched"][0]["patch"]["path"] = forged_path.clone().into();
    record["patched"][0]["patch"]["digest"] = forged_digest.clone().into();
    for (name, bytes) in &mut entries {
        if *name == patch_path {
            *name = forged_path.clone();
        } else if name == "haul-delta.json" {
            *bytes = serde_json::to_vec(&record).unwrap();
        }
    }
    write_tar(&dir.join("forged.tar"), &entries);
    haul.run(&["load", "forged.tar"])
        .failure(&["nothing was loaded"]);
    assert_absent(engine, &v2.reference);
}

pub(crate) fn assert_absent(engine: Engine, reference: &str) {
    let inspect = engine
        .docker()
        .args(["image", "inspect", reference])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "{reference} was loaded");
}

fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        builder.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    std::fs::write(path, builder.into_inner().unwrap()).unwrap();
}

#[test]
fn every_format_and_a_parts_set_carry_patches() {
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/patch-formats", true, true);
    let haul = Haul::new();
    let dir = haul.workdir.path().to_path_buf();

    // The classic layout: layer.tar files are uncompressed, so every rebuild is exact.
    haul.run(&[
        "export",
        &v1.reference,
        "--format",
        "docker-v1",
        "-o",
        "v1-classic.tar",
    ])
    .success();
    haul.run(&[
        "export",
        &v2.reference,
        "--format",
        "docker-v1",
        "-o",
        "v2-classic-patch.tar",
        "--since",
        "v1-classic.tar",
        "--patch",
    ])
    .success();
    let record = delta_record(&dir.join("v2-classic-patch.tar"));
    assert!(
        record["patched"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|l| l["rebuild"] == "exact")),
        "{record}"
    );
    haul.run(&[
        "rebuild",
        "v2-classic-patch.tar",
        "--from",
        "v1-classic.tar",
        "-o",
        "v2-classic.tar",
    ])
    .success();
    haul.run(&["verify", "v2-classic.tar"]).success();
    // Both gzipped after export (as docker load would take them): the same bundle rebuilt.
    let gzipped = std::process::Command::new("gzip")
        .args(["-k", "v1-classic.tar", "v2-classic-patch.tar"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(gzipped.success());
    haul.run(&[
        "rebuild",
        "v2-classic-patch.tar.gz",
        "--from",
        "v1-classic.tar.gz",
        "-o",
        "v2-classic-again.tar",
    ])
    .success();
    assert!(
        std::fs::read(dir.join("v2-classic-again.tar")).unwrap()
            == std::fs::read(dir.join("v2-classic.tar")).unwrap(),
        "rebuilt from the gzipped bundles, another tar"
    );
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    engine.load(&dir.join("v2-classic.tar"));
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);

    // The OCI layout, the delta in parts: verified as a set, rebuilt from it, loaded into the
    // containerd store with the registry's manifest digest.
    haul.run(&[
        "export",
        &v1.reference,
        "--format",
        "oci",
        "-o",
        "v1-oci.tar",
    ])
    .success();
    haul.run(&[
        "export",
        &v2.reference,
        "--format",
        "oci",
        "-o",
        "v2-oci-patch.tar",
        "--since",
        "v1-oci.tar",
        "--patch",
        "--split",
        "64K",
    ])
    .success();
    assert!(
        dir.join("v2-oci-patch.tar.001").exists(),
        "{:?}",
        haul.workdir_files()
    );
    let verified = haul.run(&["verify", "v2-oci-patch.tar.parts"]).success();
    assert!(String::from_utf8_lossy(&verified.stdout).contains("patched: "));
    haul.run(&[
        "rebuild",
        "v2-oci-patch.tar.parts",
        "--from",
        "v1-oci.tar",
        "-o",
        "v2-oci.tar",
    ])
    .success();
    haul.run(&["verify", "v2-oci.tar"]).success();
    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&v1.reference, &v2.reference]);
    containerd.load(&dir.join("v2-oci.tar"));
    assert_eq!(containerd.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(containerd.image_id(&v2.reference), v2.manifest_digest);
}

//! `haul verify`: a tar exported from a real registry verifies, from a file and from standard
//! input; damaged copies of it (a changed byte in a layer, a missing layer, a cut, a
//! manifest.json naming a layer that is not there, a config with another number of diff_ids)
//! each fail with exit status 1 and a message naming the problem and the file. A tar with a
//! layer over 8 GiB streams through with bounded memory.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::harness::*;

/// An image of four layers, one of them 2 MiB of incompressible data, exported to out.tar.
fn exported(haul: &Haul) -> (Pushed, Vec<u8>) {
    let registry = Registry::start();
    let repository = unique("test/verify");
    let image = Image::runnable(
        "verified",
        vec![
            Layer::text("etc/motd", "hello\n", Compression::Gzip),
            Layer::random("data/blob", 2 << 20, 7),
            Layer::empty(Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let tar = haul.export(&[&pushed.reference], "out.tar");
    (pushed, std::fs::read(tar).unwrap())
}

/// Writes `bytes` as `name` in the work folder; returns the name.
fn write(haul: &Haul, name: &str, bytes: &[u8]) -> String {
    std::fs::write(haul.workdir.path().join(name), bytes).unwrap();
    name.to_string()
}

/// The tar with its entries changed by `edit` (ustar headers, as haul writes them).
fn rewrite(tar: &[u8], edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut entries = tar_entries_of(tar);
    edit(&mut entries);
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(if name.ends_with('/') { 0o755 } else { 0o644 });
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
        }
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn blob(digest: &str) -> String {
    format!("blobs/sha256/{}", hex_of(digest))
}

#[test]
fn an_exported_tar_verifies_from_a_file_and_from_standard_input() {
    let haul = Haul::new();
    let (_, tar) = exported(&haul);
    let run = haul.run(&["verify", "out.tar"]).success();
    let stdout = String::from_utf8_lossy(&run.stdout);
    // Four layers (one empty), the config and the registry's manifest.
    assert!(
        stdout.starts_with("ok: 1 image, 6 blobs, "),
        "unexpected summary: {stdout}"
    );
    assert!(stdout.contains("MiB verified"), "{stdout}");

    let run = haul.run_stdin_bytes(&["verify", "-"], &tar).success();
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("ok: 1 image, 6 blobs, "));

    let run = haul.run(&["verify", "--json", "out.tar"]).success();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["images"], 1);
    assert_eq!(report["blobs"], 6);
    assert!(report["bytes"].as_u64().unwrap() > 2 << 20, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]));
}

#[test]
fn damaged_copies_fail_naming_the_problem_and_the_file() {
    let haul = Haul::new();
    let (pushed, tar) = exported(&haul);
    let big_layer = blob(&pushed.layer_digests[2]);

    // A changed byte inside the big layer's data, found at its offset in the tar.
    let (offset, size) = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy() == big_layer)
        .map(|e| (e.raw_file_position(), e.size()))
        .expect("the layer is in the tar");
    let mut flipped = tar.clone();
    flipped[(offset + size / 2) as usize] ^= 0x01;
    let name = write(&haul, "flipped.tar", &flipped);
    let run = haul.run(&["verify", &name]).failure(&[
        &big_layer,
        "does not hash to its name",
        &format!("expected {}", pushed.layer_digests[2]),
        "flipped.tar is not whole",
    ]);
    assert_eq!(run.stderr.matches("problem:").count(), 1, "{}", run.stderr);
    // The same through standard input.
    haul.run_stdin_bytes(&["verify", "-"], &flipped)
        .failure(&[&big_layer, "does not hash to its name"]);

    // A layer's entry removed.
    let first_layer = blob(&pushed.layer_digests[1]);
    let without = rewrite(&tar, |entries| entries.retain(|(n, _)| *n != first_layer));
    let name = write(&haul, "without-layer.tar", &without);
    haul.run(&["verify", &name]).failure(&[
        &first_layer,
        "is missing",
        "manifest.json",
        "layer 2 of 4",
    ]);

    // Cut: inside a layer, and just before the end-of-archive marker.
    let name = write(&haul, "cut.tar", &tar[..(offset + size / 2) as usize]);
    haul.run(&["verify", &name])
        .failure(&["truncated", "inside the entry", &big_layer]);
    let name = write(&haul, "cut-end.tar", &tar[..tar.len() - 1024]);
    haul.run(&["verify", &name])
        .failure(&["truncated", "end-of-archive marker"]);

    // manifest.json naming a layer that is not in the tar.
    let ghost = blob(&sha256(b"a layer nobody wrote"));
    let ghostly = rewrite(&tar, |entries| {
        let (_, data) = entries
            .iter_mut()
            .find(|(n, _)| n == "manifest.json")
            .unwrap();
        let mut manifest: serde_json::Value = serde_json::from_slice(data).unwrap();
        manifest[0]["Layers"]
            .as_array_mut()
            .unwrap()
            .push(ghost.clone().into());
        *data = serde_json::to_vec(&manifest).unwrap();
    });
    let name = write(&haul, "ghost.tar", &ghostly);
    haul.run(&["verify", &name])
        .failure(&[&ghost, "is missing", "manifest.json", "layer 5 of 5"]);

    // A config listing one diff_id fewer (stored under its own digest, so only the count is
    // wrong), named by manifest.json.
    let config_path = blob(&pushed.config_digest);
    let mut short_config_path = String::new();
    let short = rewrite(&tar, |entries| {
        let config = &entries.iter().find(|(n, _)| *n == config_path).unwrap().1;
        let mut config: serde_json::Value = serde_json::from_slice(config).unwrap();
        config["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
        let config = serde_json::to_vec(&config).unwrap();
        short_config_path = blob(&sha256(&config));
        let (_, data) = entries
            .iter_mut()
            .find(|(n, _)| n == "manifest.json")
            .unwrap();
        let mut manifest: serde_json::Value = serde_json::from_slice(data).unwrap();
        manifest[0]["Config"] = short_config_path.clone().into();
        *data = serde_json::to_vec(&manifest).unwrap();
        entries.insert(0, (short_config_path.clone(), config));
    });
    let name = write(&haul, "short-config.tar", &short);
    let run =
        haul.run(&["verify", &name])
            .failure(&["4 layers", "lists 3 diff_ids", &short_config_path]);
    assert_eq!(run.stderr.matches("problem:").count(), 1, "{}", run.stderr);

    // Not a tar at all; no such file.
    let name = write(
        &haul,
        "notes.txt",
        b"these are not the layers you are looking for\n",
    );
    haul.run(&["verify", &name])
        .failure(&["not a readable tar at byte 0"]);
    haul.run(&["verify", "no-such.tar"])
        .failure(&["cannot open no-such.tar"]);
    // Garbage where manifest.json and index.json should be.
    let garbled = rewrite(&tar, |entries| {
        for (name, data) in entries.iter_mut() {
            if name == "manifest.json" || name == "index.json" {
                *data = b"{\"Config\": [".to_vec();
            }
        }
    });
    let name = write(&haul, "garbled.tar", &garbled);
    haul.run(&["verify", &name]).failure(&[
        "manifest.json is not a valid manifest.json",
        "index.json is not a valid OCI index",
    ]);

    // The original is still whole: each failure above came from its damage.
    haul.run(&["verify", "out.tar"]).success();
}

/// 8 GiB + 512 bytes of zeros: past ustar's size field, so the header is GNU (base-256).
const HUGE: u64 = (8 << 30) + 512;
/// `head -c 8589935104 /dev/zero | sha256sum` (an all-zero block count as an uncompressed
/// tar, so it is also the layer's diff_id).
const HUGE_DIGEST: &str = "sha256:fcfd445571e131d9b2620df1c7c1fea88cb12d705caf9df2fb3a818296f1267a";

#[test]
fn a_layer_over_8_gib_streams_through_standard_input_in_bounded_memory() {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [HUGE_DIGEST]},
    }))
    .unwrap();
    let config_path = blob(&sha256(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_path, "RepoTags": ["huge:1"], "Layers": [blob(HUGE_DIGEST)]}
    ]))
    .unwrap();

    let haul = Haul::new();
    let mut child = haul
        .command()
        .args(["verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_path(blob(HUGE_DIGEST)).unwrap();
        header.set_size(HUGE);
        header.set_mode(0o644);
        header.set_cksum();
        assert!(header.as_ustar().is_none(), "a GNU header");
        stdin.write_all(header.as_bytes())?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = HUGE;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            stdin.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        let mut small = tar::Builder::new(Vec::new());
        for (name, data) in [
            (config_path.as_str(), &config),
            ("manifest.json", &manifest),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            small.append_data(&mut header, name, &data[..])?;
        }
        stdin.write_all(&small.into_inner()?)
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    // Watch the peak resident memory (VmHWM) while it runs.
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak_kib = peak_kib.max(line.split_whitespace().nth(1).unwrap().parse().unwrap());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("haul verify did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    writer.join().unwrap().expect("haul read the whole tar");
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "haul verify failed: {stderr}");
    assert!(
        stdout.starts_with(
            "ok: 1 image, 2 blobs, 8.0 GiB verified; diff_ids match for 1 uncompressed layer"
        ),
        "{stdout}"
    );
    eprintln!("haul's peak RSS verifying an 8 GiB layer: {peak_kib} KiB");
    assert!(peak_kib > 0);
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for an 8 GiB layer: memory must stay bounded"
    );
}

#[test]
fn a_failing_check_still_reads_standard_input_to_the_end() {
    // Not a tar: the check stops at the first header, but `tee` upstream must still get
    // to write all of its input (no broken pipe cutting the copy short).
    let haul = Haul::new();
    let input = haul.workdir.path().join("input.bin");
    let copy = haul.workdir.path().join("copy.bin");
    let noise: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&input, &noise).unwrap();
    let script = format!(
        "tee {} < {} | {} verify -",
        copy.display(),
        input.display(),
        env!("CARGO_BIN_EXE_haul")
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), noise.len() as u64);
}

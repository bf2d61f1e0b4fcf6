//! Tests of the checks, on tars built here: whole ones in both layouts, and damaged,
//! truncated and hostile ones.
//!
//! Over 600 lines because every problem the reader can name has its tar built and checked
//! here, beside the others, so that each message is tested once.

use std::io::Write;

use super::*;
use crate::export::tar::TarWriter;
use crate::manifest::OCI_CONFIG;
use crate::verify::{Report, verify_tar};

/// A layer: an uncompressed tar holding one file.
fn layer_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut writer = TarWriter::new(Vec::new());
    writer.append_bytes(name, data).unwrap();
    writer.finish().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn config(diff_ids: &[Digest]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Files of a tar, in order.
type Files = Vec<(String, Vec<u8>)>;

fn set(files: &mut Files, name: &str, data: Vec<u8>) {
    match files.iter_mut().find(|(n, _)| n == name) {
        Some((_, old)) => *old = data,
        None => files.push((name.to_string(), data)),
    }
}

fn remove(files: &mut Files, name: &str) {
    files.retain(|(n, _)| n != name);
}

fn tar_of(files: &Files) -> Vec<u8> {
    let mut writer = TarWriter::new(Vec::new());
    for (name, data) in files {
        writer.append_bytes(name, data).unwrap();
    }
    writer.finish().unwrap()
}

fn blob(digest: &Digest) -> String {
    blob_path(digest)
}

/// The two layer tars every test image has.
fn layer_tars() -> [Vec<u8>; 2] {
    [
        layer_tar("bin/tool", b"#!/bin/sh\necho hi\n"),
        layer_tar("etc/data", b"precious\n"),
    ]
}

/// haul's default layout: gzip layers, a config and a manifest under blobs/, manifest.json
/// and index.json. Returns the files and the layer blob digests.
fn docker_layout() -> (Files, Vec<Digest>) {
    let tars = layer_tars();
    let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
    let blobs: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
    let config = config(&diff_ids);
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": blobs.iter().zip(&digests).map(|(b, d)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": b.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = Digest::of(&manifest);
    let mut files: Files = Vec::new();
    for (data, digest) in blobs.iter().zip(&digests) {
        files.push((blob(digest), data.clone()));
    }
    files.push((blob(&config_digest), config));
    files.push((blob(&manifest_digest), manifest.clone()));
    files.push((
        "index.json".to_string(),
        index_json(
            &manifest_digest,
            manifest.len(),
            crate::manifest::OCI_MANIFEST,
        ),
    ));
    files.push((
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    files.push((
        "manifest.json".to_string(),
        serde_json::to_vec(&serde_json::json!([{
            "Config": blob(&config_digest),
            "RepoTags": ["app:1"],
            "Layers": digests.iter().map(blob).collect::<Vec<_>>(),
        }]))
        .unwrap(),
    ));
    (files, digests)
}

fn index_json(digest: &Digest, size: usize, media_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": [{
            "mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"io.containerd.image.name": "example.com/app:1"},
        }],
    }))
    .unwrap()
}

/// The classic layout (`docker save` before Docker 25): `<id>/layer.tar` uncompressed,
/// `<config-hex>.json`, and only manifest.json.
fn v1_layout() -> Files {
    let tars = layer_tars();
    let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
    let config = config(&diff_ids);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut files: Files = Vec::new();
    let mut layers = Vec::new();
    for (i, tar) in tars.iter().enumerate() {
        let id = format!("{i:064x}");
        files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
        files.push((
            format!("{id}/json"),
            format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        ));
        files.push((format!("{id}/layer.tar"), tar.clone()));
        layers.push(format!("{id}/layer.tar"));
    }
    files.push((config_name.clone(), config));
    files.push((
        "manifest.json".to_string(),
        serde_json::to_vec(&serde_json::json!([
            {"Config": config_name, "RepoTags": ["app:1"], "Layers": layers}
        ]))
        .unwrap(),
    ));
    files.push(("repositories".to_string(), br#"{"app":{"1":"x"}}"#.to_vec()));
    files
}

async fn verify(bytes: &[u8]) -> Report {
    verify_tar(bytes).await
}

#[track_caller]
fn assert_problem(report: &Report, needles: &[&str]) {
    let messages: Vec<String> = report
        .problems
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| needles.iter().all(|n| m.contains(n))),
        "no problem containing {needles:?} in {messages:#?}"
    );
}

#[tokio::test]
async fn a_whole_tar_in_the_default_layout() {
    let (files, _) = docker_layout();
    let tar = tar_of(&files);
    let report = verify(&tar).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.images, 1);
    assert_eq!(report.blobs, 4, "two layers, the config, the manifest");
    assert_eq!(report.files, files.len());
    let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(report.bytes, bytes as u64);
    assert_eq!(report.layers_unchecked, 0);
}

/// `docker save IMAGE-ID` (Docker 25): Go writes the empty `manifests` and `RepoTags` as
/// `null`. Docker 20.10 and 26.1 load such a tar; it is whole.
#[tokio::test]
async fn docker_saves_nulls_for_an_image_saved_by_its_id() {
    let (mut files, layers) = docker_layout();
    let config_path = {
        let manifest: serde_json::Value =
            serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
                .unwrap();
        manifest[0]["Config"].as_str().unwrap().to_string()
    };
    set(
        &mut files,
        "index.json",
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_INDEX,
            "manifests": null,
        }))
        .unwrap(),
    );
    set(
        &mut files,
        "manifest.json",
        serde_json::to_vec(&serde_json::json!([{
            "Config": config_path,
            "RepoTags": null,
            "Layers": layers.iter().map(blob).collect::<Vec<_>>(),
        }]))
        .unwrap(),
    );
    let report = verify(&tar_of(&files)).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.images, 1);
}

#[tokio::test]
async fn a_changed_byte_in_a_blob() {
    let (mut files, layers) = docker_layout();
    let path = blob(&layers[1]);
    let (_, data) = files.iter_mut().find(|(n, _)| *n == path).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 1;
    let actual = Digest::of(data);
    let report = verify(&tar_of(&files)).await;
    assert_problem(
        &report,
        &[
            &path,
            "does not hash to its name",
            &layers[1].to_string(),
            &actual.to_string(),
        ],
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[tokio::test]
async fn a_missing_layer_is_named_with_who_names_it() {
    let (mut files, layers) = docker_layout();
    let path = blob(&layers[0]);
    remove(&mut files, &path);
    let report = verify(&tar_of(&files)).await;
    assert_problem(
        &report,
        &[
            &path,
            "is missing",
            "manifest.json (image app:1, layer 1 of 2)",
        ],
    );
    // Reported once, though index.json's manifest names it too.
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[tokio::test]
async fn only_index_json_names_a_missing_layer() {
    let (mut files, layers) = docker_layout();
    let path = blob(&layers[1]);
    remove(&mut files, &path);
    remove(&mut files, "manifest.json");
    let report = verify(&tar_of(&files)).await;
    assert_problem(
        &report,
        &[
            &path,
            "is missing",
            "the manifest blobs/sha256/",
            "example.com/app:1",
            "layer 2 of 2",
        ],
    );
}

#[tokio::test]
async fn manifest_json_naming_a_file_that_is_not_there() {
    let (mut files, layers) = docker_layout();
    let ghost = blob(&Digest::of(b"ghost"));
    let mut paths: Vec<String> = layers.iter().map(blob).collect();
    paths.push(ghost.clone());
    let config = files
        .iter()
        .find(|(_, d)| d.starts_with(b"{\"architecture\""))
        .map(|(n, _)| n.clone())
        .unwrap();
    set(
        &mut files,
        "manifest.json",
        serde_json::to_vec(
            &serde_json::json!([{"Config": config, "RepoTags": null, "Layers": paths}]),
        )
        .unwrap(),
    );
    let report = verify(&tar_of(&files)).await;
    assert_problem(
        &report,
        &[
            &ghost,
            "is missing",
            "image 1 of manifest.json, layer 3 of 3",
        ],
    );
    assert_problem(&report, &["3 layers", "lists 2 diff_ids", &config]);
}

#[tokio::test]
async fn a_config_with_another_number_of_diff_ids() {
    let (mut files, _) = docker_layout();
    let tars = layer_tars();
    let config = config(&[Digest::of(&tars[0])]);
    let name = blob(&Digest::of(&config));
    files.push((name.clone(), config));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    manifest[0]["Config"] = name.clone().into();
    set(
        &mut files,
        "manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    let report = verify(&tar_of(&files)).await;
    assert_problem(
        &report,
        &["image app:1", "2 layers", &name, "lists 1 diff_ids"],
    );
}

#[tokio::test]
async fn index_descriptors_must_match_sizes() {
    let (mut files, _) = docker_layout();
    let manifest = files
        .iter()
        .find(|(n, d)| n.starts_with("blobs/") && d.windows(8).any(|w| w == b"\"layers\""))
        .cloned()
        .unwrap();
    let digest: Digest = format!("sha256:{}", manifest.0.rsplit('/').next().unwrap())
        .parse()
        .unwrap();
    set(
        &mut files,
        "index.json",
        index_json(&digest, manifest.1.len() + 1, crate::manifest::OCI_MANIFEST),
    );
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &[&manifest.0, "holds", "but index.json says"]);
}

#[tokio::test]
async fn nested_indexes_are_followed() {
    let (mut files, layers) = docker_layout();
    let index_bytes = files
        .iter()
        .find(|(n, _)| n == "index.json")
        .unwrap()
        .1
        .clone();
    // index.json → an index blob → the manifest.
    let inner_digest = Digest::of(&index_bytes);
    files.push((blob(&inner_digest), index_bytes.clone()));
    set(
        &mut files,
        "index.json",
        index_json(&inner_digest, index_bytes.len(), crate::manifest::OCI_INDEX),
    );
    let report = verify(&tar_of(&files)).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.images, 1);

    remove(&mut files, "manifest.json");
    remove(&mut files, &blob(&layers[0]));
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &[&blob(&layers[0]), "is missing", "layer 1 of 2"]);

    // A hostile index blob that names itself (so it cannot hash to its name): the walk
    // ends.
    let named = Digest::of(b"any name");
    let looping = index_json(&named, 0, crate::manifest::OCI_INDEX);
    let looping = index_json(&named, looping.len(), crate::manifest::OCI_INDEX);
    let files: Files = vec![
        (blob(&named), looping.clone()),
        ("index.json".to_string(), looping),
    ];
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &[&blob(&named), "does not hash to its name"]);

    // Indexes nested past the limit.
    let (mut files, _) = docker_layout();
    for _ in 0..=MAX_DEPTH {
        let inner = files
            .iter()
            .find(|(n, _)| n == "index.json")
            .unwrap()
            .1
            .clone();
        let digest = Digest::of(&inner);
        files.push((blob(&digest), inner.clone()));
        set(
            &mut files,
            "index.json",
            index_json(&digest, inner.len(), crate::manifest::OCI_INDEX),
        );
    }
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &["indexes nest deeper than 8"]);
}

#[tokio::test]
async fn the_classic_layout_checks_layers_against_diff_ids() {
    let files = v1_layout();
    let report = verify(&tar_of(&files)).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.images, 1);
    assert_eq!(report.blobs, 0);
    assert_eq!(report.layers_matching_diff_ids, 2);

    // A changed byte in the file's data: the tar is still a tar, its digest is not the
    // diff_id any more.
    let mut damaged = files.clone();
    let (name, data) = damaged
        .iter_mut()
        .find(|(n, _)| n.ends_with("layer.tar"))
        .unwrap();
    data[512] ^= 1;
    let name = name.clone();
    let report = verify(&tar_of(&damaged)).await;
    assert_problem(
        &report,
        &[
            "image app:1",
            "layer 1",
            &name,
            "uncompressed tar",
            "diff_id",
        ],
    );

    let mut missing = files.clone();
    remove(&mut missing, &name);
    let report = verify(&tar_of(&missing)).await;
    assert_problem(&report, &[&name, "is missing", "layer 1 of 2"]);

    // docker load takes gzip layer.tar files too: present, not checkable.
    let mut compressed = files.clone();
    let (_, data) = compressed.iter_mut().find(|(n, _)| *n == name).unwrap();
    *data = gzip(data);
    let report = verify(&tar_of(&compressed)).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.layers_unchecked, 1);
    assert_eq!(report.layers_matching_diff_ids, 1);
}

#[tokio::test]
async fn decompressed_layers_under_blobs_are_checked_against_diff_ids() {
    // A blob can hash to its name and still not be the layer the config wants.
    let tars = layer_tars();
    let other = layer_tar("etc/other", b"not this one\n");
    let config = config(&[Digest::of(&tars[0]), Digest::of(&tars[1])]);
    let config_path = blob(&Digest::of(&config));
    let layer_paths = [blob(&Digest::of(&tars[0])), blob(&Digest::of(&other))];
    let files: Files = vec![
        (layer_paths[0].clone(), tars[0].clone()),
        (layer_paths[1].clone(), other.clone()),
        (config_path.clone(), config),
        (
            "manifest.json".to_string(),
            serde_json::to_vec(&serde_json::json!([
                {"Config": config_path, "RepoTags": ["app:1"], "Layers": layer_paths}
            ]))
            .unwrap(),
        ),
    ];
    let report = verify(&tar_of(&files)).await;
    assert_eq!(report.blobs, 3);
    assert_eq!(report.layers_matching_diff_ids, 1);
    assert_problem(
        &report,
        &[
            "layer 2",
            &layer_paths[1],
            &Digest::of(&tars[1]).to_string(),
        ],
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[tokio::test]
async fn links_are_followed_and_must_stay_inside() {
    let files = v1_layout();
    let layer = files
        .iter()
        .find(|(n, _)| n.ends_with("layer.tar"))
        .unwrap()
        .0
        .clone();
    let id = layer.split('/').next().unwrap();
    // docker save (classic) stores a repeated layer once and links to it.
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        if *name != layer {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
    }
    let tars = layer_tars();
    let mut header = tar::Header::new_ustar();
    header.set_size(tars[0].len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "shared/layer.tar", &tars[0][..])
        .unwrap();
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, &layer, "../shared/layer.tar")
        .unwrap();
    let mut escape = tar::Header::new_ustar();
    escape.set_entry_type(tar::EntryType::Symlink);
    escape.set_size(0);
    builder
        .append_link(&mut escape, format!("{id}/evil"), "../../etc/passwd")
        .unwrap();
    let report = verify(&builder.into_inner().unwrap()).await;
    assert_eq!(report.layers_matching_diff_ids, 2, "{:#?}", report.problems);
    assert_problem(&report, &["unsafe path", "evil -> ../../etc/passwd"]);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[tokio::test]
async fn hostile_names_are_problems_and_never_paths() {
    let (mut files, _) = docker_layout();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    manifest[0]["Layers"][0] = "../../etc/passwd".into();
    manifest[0]["Layers"][1] = "/etc/shadow".into();
    // A second image whose Config is unsafe: its layers are still looked at.
    manifest.as_array_mut().unwrap().push(serde_json::json!(
        {"Config": "../config.json", "Layers": ["../layer.tar"]}
    ));
    set(
        &mut files,
        "manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    let mut tar = tar_of(&files);
    // An entry named ../x: written by hand, as tar writers refuse it.
    let mut header = tar::Header::new_ustar();
    header.as_ustar_mut().unwrap().name[..4].copy_from_slice(b"../x");
    header.set_size(1);
    header.set_mode(0o644);
    header.set_cksum();
    let end = tar.len() - 1024;
    let mut entry = header.as_bytes().to_vec();
    entry.extend_from_slice(&[b'x'; 1]);
    entry.resize(1024, 0);
    tar.splice(end..end, entry);
    let report = verify(&tar).await;
    assert_problem(
        &report,
        &["unsafe path \"../../etc/passwd\"", "layer 1 of 2"],
    );
    assert_problem(&report, &["unsafe path \"/etc/shadow\"", "layer 2 of 2"]);
    assert_problem(&report, &["unsafe path \"../x\""]);
    assert_problem(
        &report,
        &[
            "unsafe path \"../config.json\"",
            "image 2 of manifest.json, Config",
        ],
    );
    assert_problem(
        &report,
        &[
            "unsafe path \"../layer.tar\"",
            "image 2 of manifest.json, layer 1 of 1",
        ],
    );
}

#[tokio::test]
async fn garbage_metadata() {
    let (mut files, _) = docker_layout();
    set(&mut files, "manifest.json", b"{ not json".to_vec());
    set(&mut files, "index.json", b"\x00\x01binary".to_vec());
    let config = files
        .iter()
        .find(|(_, d)| d.starts_with(b"{\"architecture\""))
        .map(|(n, _)| n.clone())
        .unwrap();
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &["manifest.json is not a valid manifest.json"]);
    assert_problem(&report, &["index.json is not a valid OCI index"]);
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.to_string().contains(&config))
    );

    // A config that is JSON but not a config; one that is not JSON at all.
    let files = v1_layout();
    let config_name = files
        .iter()
        .find(|(n, _)| n.ends_with(".json") && !n.contains('/') && n != "manifest.json")
        .unwrap()
        .0
        .clone();
    for bad in [br#"{"rootfs": 7}"#.to_vec(), b"\x1f\x8b gzip?".to_vec()] {
        let mut files = files.clone();
        set(&mut files, &config_name, bad);
        let report = verify(&tar_of(&files)).await;
        assert_problem(&report, &[&config_name, "is not a valid image config"]);
    }
}

#[tokio::test]
async fn not_an_image_tar() {
    let report = verify(&tar_of(&vec![("hello.txt".to_string(), b"hi".to_vec())])).await;
    assert_eq!(report.problems, vec![Problem::NoIndex]);

    let report = verify(b"").await;
    assert_problem(&report, &["not a readable tar", "empty"]);
    let report = verify(b"a short note\n").await;
    assert_problem(&report, &["not a readable tar at byte 0", "only 13 bytes"]);

    let report = verify(&[0x1f, 0x8b, 8, 0, 1, 2, 3].repeat(200)).await;
    assert_problem(&report, &["not a readable tar at byte 0"]);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[tokio::test]
async fn truncated_tars() {
    let (files, layers) = docker_layout();
    let tar = tar_of(&files);
    // Inside the data of the first layer (the first entry).
    let report = verify(&tar[..512 + files[0].1.len() / 2]).await;
    assert_problem(
        &report,
        &["truncated", "inside the entry", &blob(&layers[0])],
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    // At an entry boundary: the end-of-archive marker is missing.
    let report = verify(&tar[..tar.len() - 1024]).await;
    assert_problem(
        &report,
        &[
            "truncated",
            "after the entry \"manifest.json\"",
            "end-of-archive",
        ],
    );
    // In a header.
    let report = verify(&tar[..tar.len() - 1024 - 512 - 100]).await;
    assert_problem(&report, &["truncated"]);
    // One end block is enough for Go's reader (docker, containerd); half a second is not.
    assert!(verify(&tar[..tar.len() - 512]).await.is_whole());
    assert_problem(&verify(&tar[..tar.len() - 100]).await, &["truncated"]);
    // A single zero block followed by data: Go's reader fails there.
    let mut odd = tar[..tar.len() - 512].to_vec();
    odd.extend_from_slice(&[7u8; 512]);
    assert_problem(
        &verify(&odd).await,
        &["data follows a single end-of-archive block"],
    );
    // Padding after the marker (tar's 10 KiB records) is fine.
    let mut padded = tar.clone();
    padded.resize(tar.len() + 8192, 0);
    assert!(verify(&padded).await.is_whole());
}

#[tokio::test]
async fn long_names_and_large_sizes() {
    // A classic layout whose layer folder name needs a GNU long name, and a config whose
    // header carries its size in base-256 (how sizes past 8 GiB are written) and PAX.
    let files = v1_layout();
    let long_dir = "d".repeat(150);
    let mut builder = tar::Builder::new(Vec::new());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    for (name, data) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if name.ends_with("layer.tar") && manifest[0]["Layers"][0] == name.as_str() {
            let long = format!("{long_dir}/layer.tar");
            manifest[0]["Layers"][0] = long.clone().into();
            builder.append_data(&mut header, &long, &data[..]).unwrap();
        } else if name.ends_with(".json") && name != "manifest.json" {
            // Base-256: the high bit of the first byte, then the value big-endian.
            let field = &mut header.as_gnu_mut().unwrap().size;
            field.fill(0);
            field[0] = 0x80;
            field[8..].copy_from_slice(&(data.len() as u32).to_be_bytes());
            header.set_path(name).unwrap();
            header.set_cksum();
            builder.append(&header, &data[..]).unwrap();
        } else if name == "repositories" {
            // PAX size overrides the header's (how Go writes sizes past 8 GiB).
            builder
                .append_pax_extensions([("size", data.len().to_string().as_bytes())])
                .unwrap();
            let mut header = tar::Header::new_ustar();
            header.set_path(name).unwrap();
            header.set_size(0);
            header.set_mode(0o644);
            header.set_cksum();
            let mut padded = data.clone();
            padded.resize(data.len().div_ceil(512) * 512, 0);
            builder.get_mut().extend_from_slice(header.as_bytes());
            builder.get_mut().extend_from_slice(&padded);
        } else if name != "manifest.json" {
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", &manifest[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let report = verify(&tar).await;
    assert!(report.is_whole(), "{:#?}", report.problems);
    assert_eq!(report.layers_matching_diff_ids, 2);
    assert_eq!(report.files, files.len());
}

#[tokio::test]
async fn huge_headers_are_refused_not_buffered() {
    // A GNU long name of 2 MiB: tokio-tar would hold it in memory whole.
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_size(2 << 20);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.resize(512 + (2 << 20) + 2048, b'a');
    let report = verify(&tar).await;
    assert_problem(&report, &["not a readable tar", "more than 1048576 bytes"]);
}

/// Property tests: changed, cut and arbitrary bytes never panic.
mod fuzz {
    use proptest::prelude::*;

    use super::super::*;
    use crate::export::tar::TarWriter;
    use crate::verify::{Report, verify_tar};

    fn sample_tar() -> Vec<u8> {
        let layer = {
            let mut writer = TarWriter::new(Vec::new());
            writer.append_bytes("etc/data", b"precious").unwrap();
            writer.finish().unwrap()
        };
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer)]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": blob_path(&Digest::of(&config)),
            "Layers": [blob_path(&Digest::of(&layer))],
        }]))
        .unwrap();
        let mut writer = TarWriter::new(Vec::new());
        writer.append_dir("blobs/").unwrap();
        writer
            .append_bytes(&blob_path(&Digest::of(&layer)), &layer)
            .unwrap();
        writer
            .append_bytes(&blob_path(&Digest::of(&config)), &config)
            .unwrap();
        writer.append_bytes("manifest.json", &manifest).unwrap();
        writer.finish().unwrap()
    }

    fn verify(bytes: &[u8]) -> Report {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(verify_tar(bytes))
    }

    #[test]
    fn the_sample_is_whole() {
        let report = verify(&sample_tar());
        assert!(report.is_whole(), "{:#?}", report.problems);
        assert_eq!(report.layers_matching_diff_ids, 1);
    }

    proptest! {
        /// Changed bytes anywhere (headers, names, sizes, JSON): never a panic.
        #[test]
        fn changed_bytes_never_panic(changes in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..8)) {
            let mut tar = sample_tar();
            for (at, xor) in changes {
                let at = at.index(tar.len());
                tar[at] ^= xor;
            }
            let _ = verify(&tar);
        }

        /// Cut anywhere: a problem, except where Go's reader would also stop cleanly (after
        /// the first end-of-archive block).
        #[test]
        fn a_cut_tar_is_never_whole(cut in any::<prop::sample::Index>()) {
            let tar = sample_tar();
            let cut = cut.index(tar.len());
            let report = verify(&tar[..cut]);
            prop_assert_eq!(report.is_whole(), cut == tar.len() - 512, "{:?}", report.problems);
        }

        /// Arbitrary bytes, not even a tar.
        #[test]
        fn bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let report = verify(&bytes);
            prop_assert!(!report.is_whole());
        }
    }
}

/// An index over `platforms` (digest, size, "os/arch") as `docker save` from the containerd
/// store writes it: every platform listed, whether the tar holds it or not.
fn platform_index(platforms: &[(Digest, usize, &str)]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": platforms.iter().map(|(digest, size, platform)| {
            let (os, arch) = platform.split_once('/').unwrap();
            serde_json::json!({
                "mediaType": crate::manifest::OCI_MANIFEST, "digest": digest, "size": size,
                "platform": {"os": os, "architecture": arch},
            })
        }).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[tokio::test]
async fn a_platform_whose_manifest_is_not_in_the_tar_is_absent_not_damage() {
    let (mut files, layers) = docker_layout();
    let index = files
        .iter()
        .find(|(n, _)| n == "index.json")
        .unwrap()
        .1
        .clone();
    let entry: crate::manifest::Index = serde_json::from_slice(&index).unwrap();
    let held = &entry.manifests[0];
    let elsewhere = Digest::of(b"the arm64 manifest, not saved");
    let platforms = platform_index(&[
        (held.digest.clone(), held.size as usize, "linux/amd64"),
        (elsewhere.clone(), 1234, "linux/arm64"),
    ]);
    let platforms_digest = Digest::of(&platforms);
    files.push((blob(&platforms_digest), platforms.clone()));
    set(
        &mut files,
        "index.json",
        index_json(
            &platforms_digest,
            platforms.len(),
            crate::manifest::OCI_INDEX,
        ),
    );
    let bundle = Bundle::read(&tar_of(&files)[..]).await;
    assert!(bundle.is_whole(), "{:#?}", bundle.problems);
    assert_eq!(
        bundle.images.len(),
        1,
        "manifest.json's entry is the same image"
    );
    let image = &bundle.images[0];
    assert_eq!(image.names, vec!["example.com/app:1".to_string()]);
    assert_eq!(image.repo_tags, vec!["app:1".to_string()]);
    assert_eq!(image.absent_platforms(), vec!["linux/arm64".to_string()]);
    assert_eq!(image.platforms.len(), 1);
    assert_eq!(image.platforms[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(image.platforms[0].layers.len(), 2);
    assert_eq!(image.manifests.len(), 2, "the manifest, then the index");
    assert!(image.manifests[1].is_index);
    assert!(
        image.digests().contains(&&elsewhere),
        "a signature may name it"
    );
    let summary = summary::Summary::of(&bundle);
    assert_eq!(summary.images[0].absent_platforms, vec!["linux/arm64"]);
    assert!(
        summary.render().contains("linux/arm64"),
        "{}",
        summary.render()
    );

    // Its manifest is there but a layer is not: damage.
    let mut damaged = files.clone();
    remove(&mut damaged, &blob(&layers[1]));
    let bundle = Bundle::read(&tar_of(&damaged)[..]).await;
    assert!(
        bundle
            .problems
            .iter()
            .any(|p| p.to_string().contains("is missing")),
        "{:#?}",
        bundle.problems
    );

    // No platform at all: the tar holds nothing of the image.
    let mut empty = files.clone();
    remove(&mut empty, &blob(&held.digest));
    remove(&mut empty, "manifest.json");
    let bundle = Bundle::read(&tar_of(&empty)[..]).await;
    assert!(
        bundle
            .problems
            .iter()
            .any(|p| matches!(p, Problem::NoPlatformHeld { count: 2, .. })),
        "{:#?}",
        bundle.problems
    );
}

#[tokio::test]
async fn one_image_under_several_names_is_one_image() {
    let (mut files, layers) = docker_layout();
    let index = files
        .iter()
        .find(|(n, _)| n == "index.json")
        .unwrap()
        .1
        .clone();
    let mut value: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let mut second = value["manifests"][0].clone();
    second["annotations"]["io.containerd.image.name"] = "example.com/app:latest".into();
    value["manifests"].as_array_mut().unwrap().push(second);
    set(
        &mut files,
        "index.json",
        serde_json::to_vec(&value).unwrap(),
    );
    let bundle = Bundle::read(&tar_of(&files)[..]).await;
    assert!(bundle.is_whole(), "{:#?}", bundle.problems);
    assert_eq!(bundle.images.len(), 1);
    assert_eq!(bundle.images[0].names.len(), 2);
    let receipt = bundle.receipt_images();
    assert_eq!(receipt.len(), 1);
    assert_eq!(receipt[0].names.len(), 3, "both full names and the RepoTag");
    let blobs: Vec<&Digest> = receipt[0].layers.iter().map(|l| &l.digest).collect();
    assert_eq!(blobs, layers.iter().collect::<Vec<_>>());
    // Each layer lies where the pass saw it.
    for layer in &bundle.images[0].platforms[0].layers {
        let Place::Tar { offset, .. } = layer.place else {
            panic!("in the tar")
        };
        assert_eq!(offset, bundle.contents.files[&layer.path].offset);
    }
}

#[tokio::test]
async fn a_patch_delta_names_its_patches_and_what_they_are_rebuilt_from() {
    use names::{DeltaRecord, LeftOutBlob, PatchSource, PatchedLayer, Rebuild};
    let (mut files, digests) = docker_layout();
    let tars = layer_tars();
    // Layer 2 travels as a patch (any bytes will do: the reader checks the record and that
    // the patch is in the tar, whole; the rebuild checks the rest).
    let patch = b"HAULPATCH1\n...".to_vec();
    let patch_digest = Digest::of(&patch);
    let layer = files
        .iter()
        .find(|(n, _)| *n == blob(&digests[1]))
        .map(|(_, b)| b.len() as u64)
        .unwrap();
    remove(&mut files, &blob(&digests[1]));
    set(&mut files, &blob(&patch_digest), patch.clone());
    let mut record = DeltaRecord::new(Vec::<LeftOutBlob>::new(), ["app:0".to_string()]);
    record.patched.push(PatchedLayer {
        path: blob(&digests[1]),
        digest: digests[1].clone(),
        size: layer,
        diff_id: Digest::of(&tars[1]),
        tar_size: 4096,
        patch: LeftOutBlob {
            path: blob(&patch_digest),
            digest: patch_digest.clone(),
            size: patch.len() as u64,
        },
        sources: vec![PatchSource {
            diff_id: Digest::of(b"an older layer"),
            digest: Digest::of(b"its blob"),
            size: 7,
        }],
        rebuild: Rebuild::Content,
        recompress: None,
    });
    set(&mut files, names::DELTA_RECORD, record.to_bytes());
    let bytes = tar_of(&files);
    let report = verify(&bytes).await;
    assert!(report.is_whole(), "{:?}", report.problems);
    assert_eq!(report.patched.len(), 1);
    assert_eq!(report.patched[0].rebuild, Rebuild::Content);
    let bundle = Bundle::read(&bytes[..]).await;
    let layers = &bundle.images[0].platforms[0].layers;
    assert_eq!(layers[1].place, Place::Patched);
    assert_eq!(layers[1].digest, digests[1]);
    assert!(matches!(layers[0].place, Place::Tar { .. }));

    // The patch not in the tar: named, with what names it.
    remove(&mut files, &blob(&patch_digest));
    let report = verify(&tar_of(&files)).await;
    assert_problem(&report, &[&blob(&patch_digest), "the patch of"]);
}

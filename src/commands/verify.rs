//! `haul verify FILE | -`: reads an image tar once and says whether it is whole. The checks
//! are in `crate::verify`; this prints the report and turns it into an exit status.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};

use crate::bundle::{Bundle, BundleFile};
use crate::cli::VerifyArgs;
use crate::delta::Receipt;
use crate::progress::human_bytes;
use crate::signature::{self, PublicKey, policy};
use crate::units::count;
use crate::verify::Report;

pub async fn run(args: &VerifyArgs, quiet: bool) -> anyhow::Result<()> {
    let keys = args
        .keys
        .iter()
        .map(|path| PublicKey::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    // The options are checked before the tar is read (the trust is made after: its root may
    // be the tar's own).
    let keyless = super::keyless_options(&args.keyless);
    policy::check_options(&keyless, !keys.is_empty())?;
    let (name, bundle) = if args.tar == "-" {
        if std::io::stdin().is_terminal() {
            bail!(
                "`haul verify -` reads the tar from standard input; pipe it in \
                 (e.g. haul export REF -o - | haul verify -) or give a FILE"
            );
        }
        let mut stdin = tokio::io::stdin();
        let bundle = Bundle::read(&mut stdin).await;
        // Read to the end even when the check stopped early, so that a writer upstream (`tee
        // app.tar`) is not cut off by a broken pipe.
        let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
        ("the tar on standard input".to_string(), bundle)
    } else {
        let file = BundleFile::at(Path::new(&args.tar))?;
        let bundle = file
            .read()
            .await
            .with_context(|| format!("cannot open {}", args.tar))?;
        (file.describe(), bundle)
    };
    let report = Report::of(&bundle);
    if args.json {
        println!("{}", json(&report));
    }
    if report.is_whole() {
        // The signatures first: "ok" is said of a tar that passes every check asked for.
        let carried = policy::carried_root(
            &name,
            bundle.trusted_root(),
            args.trusted_root_digest.as_ref(),
            &keyless,
        )?;
        let trust = policy::trust(keys, &keyless, carried, false)?;
        if !trust.is_empty() {
            let unsigned = signature::check_bundle(&bundle, &trust)
                .map_err(|why| anyhow::anyhow!("{name}: {why}"))?;
            if !unsigned.is_empty() {
                bail!(
                    "{name} is whole, but {} not {} by {}:{}",
                    if unsigned.len() == 1 {
                        "1 image in it is".to_string()
                    } else {
                        format!("{} images in it are", unsigned.len())
                    },
                    trust.what(),
                    trust.signers(),
                    unsigned
                        .iter()
                        .map(|(image, why)| format!("\n  {image}: {why}"))
                        .collect::<String>()
                );
            }
        }
        if !quiet && !args.json {
            println!("ok: {}", summary(&report));
            if report.left_out > 0 {
                let since = &bundle
                    .delta
                    .as_ref()
                    .map(|d| d.since.clone())
                    .unwrap_or_default();
                println!(
                    "delta: {} left out, expected at the destination{}",
                    count(report.left_out, "blob"),
                    if since.is_empty() {
                        String::new()
                    } else {
                        format!(" (it relies on {})", since.join(", "))
                    }
                );
            }
            for layer in &report.patched {
                let sources: Vec<String> = layer
                    .sources
                    .iter()
                    .map(|s| format!("layer {} (blob {})", s.diff_id, s.digest))
                    .collect();
                println!(
                    "patched: {} ({}) travels as a {} patch against {}; it rebuilds {}",
                    layer.digest,
                    human_bytes(layer.size),
                    human_bytes(layer.patch.size),
                    sources.join(", "),
                    match (layer.rebuild, layer.recompress) {
                        (crate::bundle::names::Rebuild::Exact, Some(recipe)) => {
                            format!("its blob, exactly ({recipe})")
                        }
                        _ => format!(
                            "its content (diff_id {}, {} uncompressed), under a new blob and \
                             manifest",
                            layer.diff_id,
                            human_bytes(layer.tar_size)
                        ),
                    }
                );
            }
            for image in bundle.images.iter().filter(|i| !i.absent.is_empty()) {
                let held: Vec<String> = image
                    .platforms
                    .iter()
                    .filter_map(|p| p.platform.clone())
                    .collect();
                println!(
                    "partial: {} holds {} of its index; not in the tar (by design, as docker \
                     save writes an image pulled for one platform): {}",
                    image.label,
                    held.join(", "),
                    image.absent_platforms().join(", ")
                );
            }
        }
        if !trust.is_empty() && !quiet && !args.json {
            println!("{}: every image, by {}", trust.what(), trust.signers());
        }
        if let Some(path) = &args.receipt {
            let receipt = Receipt::of_bundle(&bundle).map_err(anyhow::Error::msg)?;
            let target = path.clone();
            crate::blocking::run(move || receipt.write(&target))
                .await
                .with_context(|| format!("cannot write the receipt {}", path.display()))?;
        }
        return Ok(());
    }
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    // A set's lost parts: what to do is said with them (repair, or copy them again).
    let what_to_do = if bundle
        .problems
        .iter()
        .all(|p| matches!(p, crate::bundle::Problem::Part { .. }))
    {
        "Do as said above before carrying or loading it"
    } else {
        "Do not carry it; export or copy it again"
    };
    bail!(
        "{name} is not whole: {} (listed above). {what_to_do}",
        count(report.problems.len(), "problem")
    )
}

/// `1 image, 4 blobs, 211.3 MiB verified`, and what could only be checked for presence.
fn summary(report: &Report) -> String {
    let mut text = format!(
        "{}, {}, {} verified",
        count(report.images, "image"),
        count(report.blobs, "blob"),
        human_bytes(report.bytes)
    );
    if report.layers_matching_diff_ids > 0 {
        text += &format!(
            "; diff_ids match for {}",
            count(report.layers_matching_diff_ids, "uncompressed layer")
        );
    }
    if report.layers_unchecked > 0 {
        text += &format!(
            "; {} outside blobs/ (compressed) checked for presence only",
            count(report.layers_unchecked, "layer")
        );
    }
    text
}

/// The report with `ok` and each problem's message, for scripts.
fn json(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["ok"] = report.is_whole().into();
    if let Some(problems) = value["problems"].as_array_mut() {
        for (json, problem) in problems.iter_mut().zip(&report.problems) {
            json["message"] = problem.to_string().into();
        }
    }
    value
}

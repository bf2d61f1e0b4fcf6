//! `haul verify FILE | -`: reads an image tar once and says whether it is whole. The checks
//! are in `crate::verify`; this prints the report and turns it into an exit status.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};

use crate::bundle::{Bundle, BundleFile};
use crate::cli::VerifyArgs;
use crate::delta::Receipt;
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
        println!("{}", report.to_json());
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
            signature::bundle::require_signed(&bundle, &name, &trust)?;
        }
        if !quiet && !args.json {
            println!("ok: {}", report.summary());
            for line in report.notes(&bundle) {
                println!("{line}");
            }
        }
        if !trust.is_empty() && !quiet && !args.json {
            println!("{}: every image, by {}", trust.what(), trust.signers());
        }
        if let Some(path) = &args.receipt {
            let receipt = Receipt::of_bundle(&bundle)?;
            let target = path.clone();
            crate::blocking::run(move || receipt.write(&target))
                .await
                .with_context(|| format!("cannot write the receipt {}", path.display()))?;
        }
        return Ok(());
    }
    if let Some(not) = bundle.not_an_image_tar(&name, "there is nothing to carry") {
        return Err(not.into());
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

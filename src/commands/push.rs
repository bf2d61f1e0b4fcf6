//! `haul push FILE|- DEST`: the images of a tar into a registry. The tar is checked whole
//! first, as `haul verify` checks it (nothing is pushed from a damaged tar); its blobs are then
//! read from the file in place (a parts set's from its parts). Standard input is first kept in a file in the cache folder
//! (removed afterwards), since a push reads blobs in the registry's order, not the tar's.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::{Global, print_pushed};
use crate::bundle::BundleFile;
use crate::cli::PushArgs;
use crate::push::tar::tar_images;

pub async fn run(global: &Global, args: PushArgs) -> anyhow::Result<()> {
    let jobs = usize::from(args.transfers.jobs);
    let session = global.session_with(&args.login, jobs, false).await?;
    let store = session.store().clone();
    // Blobs are read where they lie in the file (or across a parts set's files): a pipe or
    // device is kept in a file first.
    let regular = args.tar != "-"
        && std::fs::metadata(&args.tar)
            .with_context(|| format!("cannot open {}", args.tar))?
            .is_file();
    let (name, path, _spool) = if !regular {
        if args.tar == "-" && std::io::stdin().is_terminal() {
            bail!(
                "`haul push -` reads the tar from standard input; pipe it in \
                 (e.g. haul export REF -o - | haul push - DEST) or give a FILE"
            );
        }
        let spool = Spool(store.spool_path());
        let mut file = tokio::fs::File::create(&spool.0)
            .await
            .with_context(|| format!("cannot create {}", spool.0.display()))?;
        let name = if args.tar == "-" {
            tokio::io::copy(&mut tokio::io::stdin(), &mut file).await
        } else {
            let mut input = tokio::fs::File::open(&args.tar)
                .await
                .with_context(|| format!("cannot open {}", args.tar))?;
            tokio::io::copy(&mut input, &mut file).await
        }
        .with_context(|| format!("cannot keep the tar in {}", spool.0.display()))
        .map(|_| {
            if args.tar == "-" {
                "the tar on standard input".to_string()
            } else {
                args.tar.clone()
            }
        })?;
        let path = spool.0.clone();
        (name, path, Some(spool))
    } else {
        (args.tar.clone(), PathBuf::from(&args.tar), None)
    };
    let tar = BundleFile::at(&path)?;
    let bundle = tar
        .read()
        .await
        .with_context(|| format!("cannot open {name}"))?;
    if !bundle.is_whole() {
        for problem in &bundle.problems {
            eprintln!("problem: {problem}");
        }
        bail!(
            "{name} is not whole ({} listed above; `haul verify` lists them too); nothing was pushed",
            if bundle.problems.len() == 1 {
                "the problem".to_string()
            } else {
                format!("{} problems", bundle.problems.len())
            }
        );
    }
    let images = tar_images(
        &store,
        &tar,
        &bundle,
        &args.dest,
        args.as_name.as_deref(),
        args.platform.as_ref(),
        jobs,
    )
    .await?;
    let summary = session
        .pusher(jobs)
        .push(&images.images, &images.holders, &images.first)
        .await?;
    session.remember_transports();
    print_pushed(global, &summary);
    Ok(())
}

/// Standard input kept in a file; removed when the push is over, however it ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

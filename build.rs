//! Names the commit a binary was built from in `haul --version` (`haul 0.1.0 (7d69772 2026-12-07)`),
//! so a binary carried to a site says which source it is. From `HAUL_COMMIT` when set (a
//! source tarball without .git), else from git; without either, the version alone.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HAUL_COMMIT");
    // A new commit or checkout moves HEAD or the ref it names.
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("HAUL_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit);
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=HAUL_VERSION={long}");
}

/// `7d69772 2026-12-07`, with `-dirty` when the work tree has changes.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let described = git(&["log", "-1", "--format=%h %cs"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        described.replacen(' ', "-dirty ", 1)
    } else {
        described
    })
}

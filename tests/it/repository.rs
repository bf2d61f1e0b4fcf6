//! The repository itself: no host name of a package registry or mirror appears in it. Scripts
//! take the mirror from the machine's own configuration (apt's sources), so the project works
//! wherever that points.

use std::process::Command;

/// Package registries and mirrors, spelled in parts so this file does not name them.
fn package_hosts() -> Vec<String> {
    [
        ["debian", "org"],
        ["ubuntu", "com"],
        ["crates", "io"],
        ["rust-lang", "org"],
        ["pypi", "org"],
        ["pythonhosted", "org"],
        ["npmjs", "org"],
        ["npmjs", "com"],
        ["yarnpkg", "com"],
    ]
    .iter()
    .map(|parts| parts.join("."))
    .collect()
}

/// Where `host` appears in `text` as a host name (`deb.HOST`, `://HOST/`), not as part of a
/// longer word (`…/HOST-index`, cargo's name for its registry in Cargo.lock).
fn host_mentions(text: &str, host: &str) -> usize {
    text.match_indices(host)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + host.len()..].chars().next();
            let boundary_before = before.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-');
            let boundary_after = after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-');
            boundary_before && boundary_after
        })
        .count()
}

#[test]
fn no_package_mirror_host_name_appears_in_the_repository() {
    let root = env!("CARGO_MANIFEST_DIR");
    let listed = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .expect("git lists the repository's files");
    assert!(listed.status.success(), "git ls-files failed");
    let files = String::from_utf8(listed.stdout).unwrap();
    let hosts = package_hosts();
    let mut found = Vec::new();
    for file in files.lines() {
        let Ok(text) = std::fs::read_to_string(std::path::Path::new(root).join(file)) else {
            continue; // binary, or deleted in the work tree
        };
        for host in &hosts {
            if host_mentions(&text, host) > 0 {
                found.push(format!("{file}: {host}"));
            }
        }
    }
    assert!(found.is_empty(), "package mirror host names: {found:#?}");
}

#[test]
fn the_check_finds_hosts_and_only_hosts() {
    let host = package_hosts()[0].clone();
    assert_eq!(
        host_mentions(&format!("http://deb.{host}/debian"), &host),
        1
    );
    assert_eq!(host_mentions(&format!("see {host}."), &host), 1);
    let crates = package_hosts()[2].clone();
    assert_eq!(
        host_mentions(
            &format!("https://github.com/rust-lang/{crates}-index"),
            &crates
        ),
        0
    );
}

//! The fuzzers' corpora (`fuzz/corpus/NAME`, seeded with real files and grown by `make fuzz`)
//! and every crash input they found (`fuzz/artifacts/NAME`), replayed through the same
//! functions on stable Rust: a parser that panics on one of them fails here, with no
//! libFuzzer and no nightly toolchain.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_crash_input_is_handled() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (name, target) in haul::fuzzing::TARGETS {
        let corpus = files(&fuzz.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} holds no seed: every target starts from real files"
        );
        let crashes = files(&fuzz.join("artifacts").join(name));
        for input in corpus.iter().chain(&crashes) {
            let data = std::fs::read(input).unwrap();
            let handled = std::panic::catch_unwind(|| target(&data));
            if handled.is_err() {
                failed.push(input.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {replayed} inputs panicked: {failed:?}",
        failed.len()
    );
}

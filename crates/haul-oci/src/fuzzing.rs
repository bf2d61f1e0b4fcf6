//! Entry points for the fuzzers (`fuzz/`) and the test that replays their corpora: each
//! takes any bytes, as they would cross from a registry or a file, and must return (an error
//! is fine), never panic, abort or run away.

/// A manifest or index as a registry serves it, with each Content-Type a registry may send.
pub fn manifest(data: &[u8]) {
    for content_type in [
        None,
        Some(crate::manifest::OCI_INDEX),
        Some(crate::manifest::DOCKER_MANIFEST),
        Some("application/json"),
    ] {
        let _ = crate::manifest::Manifest::parse("fuzz", content_type, data);
    }
}

/// An image config.
pub fn config(data: &[u8]) {
    let digest = crate::digest::Digest::of(data);
    let _ = crate::manifest::ImageConfig::parse("fuzz", &digest, data);
}

/// An image reference, as a list line or a command line gives it.
pub fn reference(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(reference) = text.parse::<crate::reference::Reference>() {
            let _ = reference.to_string();
            let _ = reference.full_name();
        }
        let _ = text.parse::<crate::digest::Digest>();
        let _ = text.parse::<crate::platform::Platform>();
    }
}

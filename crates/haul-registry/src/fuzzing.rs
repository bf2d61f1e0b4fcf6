//! Entry points for the fuzzers (`fuzz/`) and the test that replays their corpora: each
//! takes any bytes, as a registry or token service would send them, and must return, never
//! panic.

/// A `WWW-Authenticate` header.
pub fn www_authenticate(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::auth::Challenge::parse(text);
    }
}

/// A token service's answer.
pub fn token_response(data: &[u8]) {
    if let Ok(answer) = serde_json::from_slice::<crate::auth::TokenResponse>(data) {
        let _ = answer.into_token();
    }
}

/// A `Range` header of an upload's status.
pub fn upload_range(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::upload::range_end(text);
    }
}

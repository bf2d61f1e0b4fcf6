//! Errors on one line: a message, then each cause once.

use std::error::Error;

/// `error: cause: its cause …`, skipping a cause whose text is already there (hyper and
/// io errors often repeat what they wrap).
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write out.tar")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::from_raw_os_error(21);
        let error = Outer(io);
        assert_eq!(
            describe(&error),
            "cannot write out.tar: Is a directory (os error 21)"
        );
    }
}

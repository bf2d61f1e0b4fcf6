//! Sizes as people write them on the command line (`--limit-rate`, `--max-size`, `--split`),
//! and counts as messages say them.

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{text:?} is not a size: use a number with an optional K, M, G or T, e.g. 500M")]
    NotANumber { text: String },
    #[error("{text:?} has an unknown unit {unit:?}: use K, M, G or T, e.g. 500M")]
    UnknownUnit { text: String, unit: String },
    #[error("{text:?} is out of range")]
    OutOfRange { text: String },
}

/// `1536`, `500K`, `5M`, `1.5G`, `2T` (binary multiples; `KiB`, `MB` and `B` suffixes accepted).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| SizeError::NotANumber {
        text: text.to_string(),
    })?;
    let multiplier: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(SizeError::OutOfRange {
            text: text.to_string(),
        });
    }
    Ok(bytes as u64)
}

/// `1 layer`, `3 layers`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::{SizeError, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1536"), Ok(1536));
        assert_eq!(parse_size("500K"), Ok(500 * 1024));
        assert_eq!(parse_size("5M"), Ok(5 << 20));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(matches!(
            parse_size("5X"),
            Err(SizeError::UnknownUnit { unit, .. }) if unit == "X"
        ));
        assert!(matches!(
            parse_size("fast"),
            Err(SizeError::NotANumber { .. })
        ));
        assert!(matches!(parse_size(""), Err(SizeError::NotANumber { .. })));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeError::OutOfRange { .. })
        ));
    }
}

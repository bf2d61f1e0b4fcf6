//! Sizes as people write them on the command line (`--limit-rate`, `--max-size`, `--split`),
//! and counts as messages say them.

/// `1536`, `500K`, `5M`, `1.5G`, `2T` (binary multiples; `KiB`, `MB` and `B` suffixes accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size: use a number with an optional K, M, G or T, e.g. 500M")
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
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}: use K, M, G or T, e.g. 500M"
            ));
        }
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
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
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1536"), Ok(1536));
        assert_eq!(parse_size("500K"), Ok(500 * 1024));
        assert_eq!(parse_size("5M"), Ok(5 << 20));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("5X").is_err());
        assert!(parse_size("fast").is_err());
        assert!(parse_size("").is_err());
    }
}

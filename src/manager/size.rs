//! Human sizes as config.ini and the CLI write them: `512M`, `1G`, `1.5G`,
//! `20GiB`, or a bare number in a caller-chosen unit (config.ini's memory
//! size takes a bare number as MiB, as the 2016 tool did).

/// Binary multipliers by suffix letter.
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("'{0}' is not a size (use a number with K, M, G or T, e.g. 512M or 2G)")]
    Invalid(String),
    #[error("'{0}' is too large")]
    Overflow(String),
}

/// Parse `text` into bytes; a bare number is multiplied by `bare_unit`.
pub fn parse_size(text: &str, bare_unit: u64) -> Result<u64, SizeError> {
    let s = text.trim();
    let invalid = || SizeError::Invalid(text.to_string());
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let unit = match suffix.trim().to_ascii_uppercase().as_str() {
        "" => bare_unit,
        "B" => 1,
        "K" | "KB" | "KIB" => KIB,
        "M" | "MB" | "MIB" => MIB,
        "G" | "GB" | "GIB" => GIB,
        "T" | "TB" | "TIB" => TIB,
        _ => return Err(invalid()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(invalid());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') {
        return Err(invalid());
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    let mut bytes = whole
        .checked_mul(unit)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))?;
    if !frac.is_empty() {
        // Fractions count in whole bytes of the unit: 1.5G = 1G + G/2.
        let digits = frac.len().min(9) as u32;
        let frac_value: u64 = frac[..digits as usize].parse().map_err(|_| invalid())?;
        let part = u128::from(unit) * u128::from(frac_value) / 10u128.pow(digits);
        bytes = bytes
            .checked_add(part as u64)
            .ok_or_else(|| SizeError::Overflow(text.to_string()))?;
    }
    Ok(bytes)
}

/// Format bytes the way config.ini writes them: the largest unit that
/// divides exactly (`1G`, `1536M`, `4096`).
pub fn format_size(bytes: u64) -> String {
    for (unit, suffix) in [(TIB, "T"), (GIB, "G"), (MIB, "M"), (KIB, "K")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{}", bytes / unit, suffix);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_bare_numbers() {
        assert_eq!(parse_size("512M", MIB), Ok(512 * MIB));
        assert_eq!(parse_size("1G", MIB), Ok(GIB));
        assert_eq!(parse_size("1gib", MIB), Ok(GIB));
        assert_eq!(parse_size("1024", MIB), Ok(GIB));
        assert_eq!(parse_size("1.5G", MIB), Ok(GIB + GIB / 2));
        assert_eq!(parse_size(" 20G ", 1), Ok(20 * GIB));
        assert_eq!(parse_size("4096B", MIB), Ok(4096));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "G", "1X", "-1G", "1..5G", ".5G", "1.G", "1G2"] {
            assert!(
                matches!(parse_size(bad, MIB), Err(SizeError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("99999999999T", MIB),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_size(GIB), "1G");
        assert_eq!(format_size(1536 * MIB), "1536M");
        assert_eq!(format_size(4097), "4097B");
    }
}

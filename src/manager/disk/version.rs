//! Version ordering for kernel file names, close to `sort -V` and dpkg:
//! digit runs compare as numbers (`6.1.0-10` > `6.1.0-9`), other runs as
//! text, and `~` sorts before everything, even the end (`6.1~rc1` < `6.1`).
//! File modification times are never used.

use std::cmp::Ordering;

/// Compare two version strings piece by piece.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // Text runs first (possibly empty), then digit runs.
        let (ta, ra) = split_run(a, |c| !c.is_ascii_digit());
        let (tb, rb) = split_run(b, |c| !c.is_ascii_digit());
        match compare_text(ta, tb) {
            Ordering::Equal => {}
            other => return other,
        }
        let (da, ra) = split_run(ra, |c| c.is_ascii_digit());
        let (db, rb) = split_run(rb, |c| c.is_ascii_digit());
        match compare_digits(da, db) {
            Ordering::Equal => {}
            other => return other,
        }
        if ra.is_empty() && rb.is_empty() {
            return Ordering::Equal;
        }
        (a, b) = (ra, rb);
    }
}

fn split_run(s: &[u8], keep: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&c| !keep(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// Digit runs of any length compare as numbers without overflow.
fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().position(|&c| c != b'0').unwrap_or(s.len()) };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// dpkg's text order: `~` first, then the end of the run, then letters,
/// then everything else.
fn compare_text(a: &[u8], b: &[u8]) -> Ordering {
    let weight = |c: Option<&u8>| -> i32 {
        match c {
            Some(b'~') => -1,
            None => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(c) => i32::from(*c) + 256,
        }
    };
    for i in 0..a.len().max(b.len()) {
        match weight(a.get(i)).cmp(&weight(b.get(i))) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn numbers_compare_numerically() {
        assert_eq!(compare_versions("6.1.0-10-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(compare_versions("5.15.0", "5.4.0"), Greater);
        assert_eq!(compare_versions("6.10", "6.9"), Greater);
        assert_eq!(compare_versions("6.1.0", "6.1.0"), Equal);
        assert_eq!(compare_versions("007", "7"), Equal);
        assert_eq!(compare_versions("99999999999999999999999", "1"), Greater);
    }

    #[test]
    fn tilde_sorts_before_release_and_rescue_sorts_low() {
        assert_eq!(compare_versions("6.1~rc1", "6.1"), Less);
        assert_eq!(
            compare_versions("0-rescue-abc", "6.5.6-300.fc39.x86_64"),
            Less
        );
        assert_eq!(
            compare_versions("6.1.0-10-cloud-amd64", "6.1.0-10-amd64"),
            Greater
        );
    }

    #[test]
    fn ordering_sorts_a_list() {
        let mut v = vec![
            "6.1.0-9",
            "6.1.0-10",
            "5.10.0-28",
            "6.1.0-10~bpo",
            "6.1.0-1",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "5.10.0-28",
                "6.1.0-1",
                "6.1.0-9",
                "6.1.0-10~bpo",
                "6.1.0-10"
            ]
        );
    }
}

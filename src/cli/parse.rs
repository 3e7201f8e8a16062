//! The value syntaxes of the command line: sizes (`64M`), seconds (`0.5`)
//! and `ALIAS=NUMBER` assignments.

use bytesize::ByteSize;

/// A size in bytes: a number, optionally with a K, M or G suffix (binary:
/// `1K` is 1024 bytes), with or without a trailing `B`/`iB` and a space, in
/// any case: `65536`, `512M`, `2G`, `1.5GiB`, `64 mb`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let number_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_len);
    if number.is_empty() || number.parse::<f64>().is_err() {
        return Err(format!("\"{text}\" is not a size like 512M or 2G"));
    }
    // K, M and G are binary here (as in `ulimit` and Kubernetes' Ki/Mi/Gi),
    // where bytesize reads a bare K as 1000.
    let unit = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => "B",
        "K" => "KiB",
        "M" => "MiB",
        "G" => "GiB",
        _ => return Err(format!("\"{text}\" has an unknown unit; use K, M or G")),
    };
    let size: ByteSize = format!("{number} {unit}")
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size like 512M or 2G"))?;
    // bytesize saturates instead of failing on overflow.
    let exact = unit == "B" && number.parse::<u64>().is_ok();
    if size.as_u64() == u64::MAX && !exact {
        return Err(format!("\"{text}\" is too large"));
    }
    Ok(size.as_u64())
}

/// A number of seconds in (0, 86400], e.g. `60` or `0.5`.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "\"{text}\" is not a number of seconds between 0 and 86400 (e.g. 60 or 0.5)"
        )),
    }
}

/// `ALIAS=NUMBER`, e.g. `champion=90` for a weight (`what` = `WEIGHT`) or
/// `candidate=0.2` for a shadow fraction (`what` = `FRACTION`).
pub fn parse_assignment(text: &str, what: &str) -> anyhow::Result<(String, f64)> {
    let (alias, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("\"{text}\" is not ALIAS={what}"))?;
    let value: f64 = value
        .parse()
        .map_err(|_| anyhow::anyhow!("\"{text}\": {what} must be a number"))?;
    Ok((alias.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_form_accepted_before() {
        for (text, bytes) in [
            ("0", 0),
            ("65536", 65536),
            ("1K", 1 << 10),
            ("1k", 1 << 10),
            ("1KB", 1 << 10),
            ("1KiB", 1 << 10),
            ("1kib", 1 << 10),
            ("512M", 512 << 20),
            ("64 mb", 64 << 20),
            ("2G", 2 << 30),
            ("2GiB", 2 << 30),
            (" 3G ", 3 << 30),
            ("10B", 10),
            ("10 b", 10),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn fractional_sizes() {
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("0.5K"), Ok(512));
    }

    #[test]
    fn size_errors_name_the_text_and_the_fix() {
        assert_eq!(
            parse_bytes("12X"),
            Err("\"12X\" has an unknown unit; use K, M or G".into())
        );
        assert_eq!(
            parse_bytes("12T"),
            Err("\"12T\" has an unknown unit; use K, M or G".into())
        );
        for text in ["", "abc", "G", "-1", "1.2.3M"] {
            assert_eq!(
                parse_bytes(text),
                Err(format!("\"{text}\" is not a size like 512M or 2G")),
                "{text}"
            );
        }
        assert_eq!(
            parse_bytes("99999999999999G"),
            Err("\"99999999999999G\" is too large".into())
        );
        assert_eq!(
            parse_bytes("18446744073709551616"),
            Err("\"18446744073709551616\" is too large".into())
        );
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn seconds_between_zero_and_a_day() {
        assert_eq!(parse_seconds("60"), Ok(60.0));
        assert_eq!(parse_seconds(" 0.5 "), Ok(0.5));
        assert_eq!(parse_seconds("86400"), Ok(86_400.0));
        for text in ["0", "-1", "86401", "inf", "NaN", "1m"] {
            assert!(parse_seconds(text).is_err(), "{text}");
        }
    }

    #[test]
    fn assignments() {
        assert_eq!(
            parse_assignment("champion=90", "WEIGHT").ok(),
            Some(("champion".into(), 90.0))
        );
        let err = |text| parse_assignment(text, "WEIGHT").unwrap_err().to_string();
        assert_eq!(err("champion"), "\"champion\" is not ALIAS=WEIGHT");
        assert_eq!(err("champion=x"), "\"champion=x\": WEIGHT must be a number");
    }
}

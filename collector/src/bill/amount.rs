//! The bill's numbers as the ledger keeps them: decimal text (CUR 2.0 and FOCUS write up to ten or more
//! decimals, sometimes in exponent form) to integer nano-units, rounded half away from zero at the ninth
//! decimal, without going through a float; and its timestamps to Unix nanoseconds.

/// `text` (`12.3456789012`, `-0.5`, `1.2E-5`) in nano-units; `Err` says why it is not a decimal number.
pub fn nano(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| format!("not a decimal number: {text:?}"))?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(format!("not a decimal number: {text:?}"));
    }
    // digits × 10^(exponent − frac.len()) in nano-units: digits × 10^(9 + exponent − frac.len()).
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let too_big = || format!("out of range: {text:?}");
    if digits.len() > 36 {
        return Err(too_big());
    }
    let value: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| too_big())? };
    let shift = 9 + exponent - frac.len() as i32;
    let scaled = if shift >= 0 {
        if shift > 30 && value != 0 {
            return Err(too_big());
        }
        value.checked_mul(10i128.checked_pow(shift as u32).ok_or_else(too_big)?).ok_or_else(too_big)?
    } else if -shift > 38 {
        0
    } else {
        let div = 10i128.pow((-shift) as u32);
        let (q, r) = (value / div, value % div);
        if r * 2 >= div { q + 1 } else { q }
    };
    let signed = if negative { -scaled } else { scaled };
    i64::try_from(signed).map_err(|_| too_big())
}

/// A bill timestamp (`2026-11-01T00:00:00Z`, `2026-11-01T00:00:00.000Z`, `2026-11-01 00:00:00`) in Unix ns.
pub fn instant(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("+00:00").map(|s| format!("{s}Z")).unwrap_or_else(|| t.to_string());
    let time = humantime::parse_rfc3339_weak(&t).map_err(|e| format!("not a UTC timestamp: {text:?} ({e})"))?;
    let ns = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("before 1970: {text:?}"))?.as_nanos();
    u64::try_from(ns).map_err(|_| format!("too far in the future: {text:?}"))
}

/// The `YYYY-MM` of a Unix-ns instant.
pub fn month_of(ns: u64) -> String {
    let (y, m, _) = gpucost_types::period::civil_from_days((ns / 86_400_000_000_000) as i64);
    format!("{y:04}-{m:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_nano_units_rounded_half_away_from_zero_at_the_ninth() {
        assert_eq!(nano("32.7726"), Ok(32_772_600_000));
        assert_eq!(nano("0.0000000005"), Ok(1));
        assert_eq!(nano("0.0000000004999"), Ok(0));
        assert_eq!(nano("-0.0000000015"), Ok(-2));
        assert_eq!(nano("1.2345678901234"), Ok(1_234_567_890));
        assert_eq!(nano("1.2E-5"), Ok(12_000));
        assert_eq!(nano("3.5e2"), Ok(350_000_000_000));
        assert_eq!(nano("  7 "), Ok(7_000_000_000));
        assert_eq!(nano(".5"), Ok(500_000_000));
        assert_eq!(nano("0"), Ok(0));
        for bad in ["", "-", "abc", "1.2.3", "1e", "12,5", "NaN"] {
            assert!(nano(bad).unwrap_err().contains("not a decimal number"), "{bad}");
        }
        assert!(nano("99999999999").unwrap_err().contains("out of range"));
    }

    #[test]
    fn bill_timestamps_in_every_form_aws_writes_them() {
        let t = 1_793_491_200_000_000_000; // 2026-11-01T00:00:00Z
        for s in
            ["2026-11-01T00:00:00Z", "2026-11-01T00:00:00.000Z", "2026-11-01 00:00:00", "2026-11-01T00:00:00+00:00"]
        {
            assert_eq!(instant(s), Ok(t), "{s}");
        }
        assert!(instant("yesterday").unwrap_err().contains("not a UTC timestamp"));
        assert_eq!(month_of(t), "2026-11");
        assert_eq!(month_of(t - 1), "2026-10");
    }
}

//! Prices fetched from AWS (issue 25 item 5): on-demand prices from the AWS Price List API and spot prices
//! from EC2's spot price history, turned into the ledger's [`FetchedPrice`]s. The parsing here is pure (the
//! documents and quotes as AWS answers them in, prices out); see docs/prices.md for what is fetched and how
//! the price book uses it.
//!
//! [`FetchedPrice`]: gpucost_ledger::fetched_prices::FetchedPrice

pub mod price_list;
pub mod spot;

/// A decimal amount of US dollars as AWS writes it (`"55.0400000000"`, `"2.123400"`) in micro-dollars,
/// rounded half up at the sixth decimal: AWS gives up to ten decimals, the ledger keeps micro-dollars.
pub fn usd_to_micros(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an amount of US dollars");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut micros = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        let digit = u64::from(b - b'0');
        match i {
            0..6 => micros = micros * 10 + digit,
            6 => {
                micros += u64::from(digit >= 5);
                break;
            }
            _ => unreachable!(),
        }
    }
    micros *= 10u64.pow(6u32.saturating_sub(frac.len().min(6) as u32));
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(micros)).ok_or_else(bad)
}

/// An RFC 3339 UTC time (`2025-06-01T00:00:00Z`, `2026-12-07T10:00:00.000Z`) in ns since the epoch.
pub fn utc_ns(text: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .map_err(|e| format!("{text:?} is not a UTC time ({e})"))?;
    let since = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    u64::try_from(since.as_nanos()).map_err(|_| format!("{text:?} is too far in the future"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_become_micro_dollars_rounded_half_up_at_the_sixth_decimal() {
        assert_eq!(usd_to_micros("55.0400000000"), Ok(55_040_000));
        assert_eq!(usd_to_micros("21.9576420000"), Ok(21_957_642));
        assert_eq!(usd_to_micros("0.0000004999"), Ok(0));
        assert_eq!(usd_to_micros("0.0000005"), Ok(1));
        assert_eq!(usd_to_micros("2.12"), Ok(2_120_000));
        assert_eq!(usd_to_micros("7"), Ok(7_000_000));
        for bad in ["", ".5", "-1.0", "1.2.3", "1e3", "12,5", "99999999999999999999"] {
            assert!(usd_to_micros(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utc_times_with_and_without_fractions() {
        assert_eq!(utc_ns("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert_eq!(utc_ns("1970-01-01T00:00:01.500Z"), Ok(1_500_000_000));
        assert!(utc_ns("yesterday").is_err());
    }
}

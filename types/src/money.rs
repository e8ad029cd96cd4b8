//! Money: integer micro-dollars, exactly parsed and printed, and what one GPU costs over an interval.
//!
//! A GPU's cost over [start, end) is the difference of its *cumulative* cost at `end` and at `start`,
//! each rounded down to the micro-dollar. Consecutive intervals therefore add up to exactly the cost of
//! their union: no rounding drift, however many intervals a month has.

use serde::Serialize;

/// Micro-dollars (1e-6 USD).
pub type Micros = u64;

const NS_PER_HOUR: u128 = 3_600_000_000_000;

/// The price of one GPU of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuPrice {
    /// The whole instance's price per hour, after any discount.
    pub instance_micros_per_hour: u64,
    /// GPUs the instance price is divided over.
    pub gpus: u32,
    /// Where the price came from, for `/api/v1/prices`.
    pub source: String,
}

impl GpuPrice {
    /// Cost of one whole GPU over [start_ns, end_ns).
    pub fn cost(&self, start_ns: u64, end_ns: u64) -> Micros {
        let at = |t: u64| {
            u128::from(self.instance_micros_per_hour) * u128::from(t) / (NS_PER_HOUR * u128::from(self.gpus.max(1)))
        };
        (at(end_ns) - at(start_ns)) as u64
    }
}

/// Parses a decimal amount of dollars (`"32.7726"`) into micro-dollars, exactly; more than six decimals
/// is an error rather than a silent rounding.
pub fn parse_usd(s: &str) -> Result<Micros, String> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("{s:?} is not an amount of dollars (e.g. 32.7726)"));
    }
    if frac.len() > 6 {
        return Err(format!("{s:?} has more than six decimals (micro-dollars)"));
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{s:?} is too large"))? };
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| format!("{s:?} is not a number"))?;
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(|| format!("{s:?} is too large"))
}

/// Micro-dollars as a decimal string (`32772600` → `"32.772600"`).
pub fn usd(micros: u128) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p4d() -> GpuPrice {
        GpuPrice { instance_micros_per_hour: parse_usd("32.7726").unwrap(), gpus: 8, source: "test".into() }
    }

    #[test]
    fn an_hour_of_one_gpu_costs_the_instance_price_over_its_gpus() {
        let h = 3_600_000_000_000;
        assert_eq!(p4d().cost(10 * h, 11 * h), 4_096_575);
    }

    #[test]
    fn dollars_parse_exactly_and_bad_amounts_are_refused() {
        assert_eq!(parse_usd("32.7726"), Ok(32_772_600));
        assert_eq!(parse_usd("1"), Ok(1_000_000));
        assert_eq!(parse_usd(".5"), Ok(500_000));
        assert!(parse_usd("1.0000001").unwrap_err().contains("six decimals"));
        assert!(parse_usd("-3").is_err());
        assert!(parse_usd("12,5").is_err());
        assert!(parse_usd("").is_err());
        assert_eq!(usd(32_772_600), "32.772600");
    }

    proptest! {
        #[test]
        fn consecutive_intervals_cost_exactly_their_union(price in 1u64..200_000_000, gpus in 1u32..17, start in 0u64..2_000_000_000_000_000_000, cuts in prop::collection::vec(1u64..3_600_000_000_000, 1..50)) {
            let p = GpuPrice { instance_micros_per_hour: price, gpus, source: String::new() };
            let mut t = start;
            let mut sum = 0;
            for c in &cuts {
                sum += p.cost(t, t + c);
                t += c;
            }
            prop_assert_eq!(sum, p.cost(start, t));
        }
    }
}

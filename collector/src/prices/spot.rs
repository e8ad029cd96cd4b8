//! EC2's spot price history (`DescribeSpotPriceHistory`, product description `Linux/UNIX`), reduced to the
//! latest price per Availability Zone and instance type: the price in force when fetched.

use super::{usd_to_micros, utc_ns};
use gpucost_ledger::fetched_prices::{FetchedPrice, PriceSource};
use std::collections::BTreeMap;

/// The product descriptions whose prices apply to a Kubernetes node: EC2 answers `Linux/UNIX`, or the older
/// name `Linux/UNIX (Amazon VPC)` (which moto gives) for the same instances in a VPC.
pub const LINUX: [&str; 2] = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"];

/// One entry of the history, as EC2 answers it (`spotPriceHistorySet` items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotQuote {
    pub availability_zone: String,
    pub instance_type: String,
    pub product_description: String,
    /// `spotPrice`, USD per hour (`"21.123400"`).
    pub spot_price: String,
    /// `timestamp`, RFC 3339 UTC.
    pub timestamp: String,
}

/// The latest Linux/UNIX price per zone and instance type in `quotes` of `region`; a quote whose price or
/// time cannot be read is an error naming it, never skipped.
pub fn latest(region: &str, quotes: &[SpotQuote], fetched_ns: u64) -> Result<Vec<FetchedPrice>, String> {
    let mut by_pool: BTreeMap<(&str, &str), FetchedPrice> = BTreeMap::new();
    for q in quotes.iter().filter(|q| LINUX.contains(&q.product_description.as_str())) {
        let at = |e: String| {
            format!("spot price of {} in {} at {:?}: {e}", q.instance_type, q.availability_zone, q.timestamp)
        };
        let price = FetchedPrice {
            source: PriceSource::Spot,
            region: region.into(),
            zone: q.availability_zone.clone(),
            instance_type: q.instance_type.clone(),
            effective_ns: utc_ns(&q.timestamp).map_err(at)?,
            micros_per_hour: usd_to_micros(&q.spot_price).map_err(at)?,
            fetched_ns,
            provenance: format!("spot price history {}", q.timestamp),
        };
        let pool = (q.availability_zone.as_str(), q.instance_type.as_str());
        if by_pool.get(&pool).is_none_or(|old| old.effective_ns < price.effective_ns) {
            by_pool.insert(pool, price);
        }
    }
    Ok(by_pool.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(zone: &str, os: &str, price: &str, at: &str) -> SpotQuote {
        SpotQuote {
            availability_zone: zone.into(),
            instance_type: "p5.48xlarge".into(),
            product_description: os.into(),
            spot_price: price.into(),
            timestamp: at.into(),
        }
    }

    #[test]
    fn the_latest_linux_price_of_each_zone_is_kept() {
        let quotes = [
            quote("us-east-1a", LINUX[0], "20.000000", "2026-12-07T08:00:00.000Z"),
            quote("us-east-1a", LINUX[0], "21.123400", "2026-12-07T10:00:00.000Z"),
            quote("us-east-1a", "Windows", "30.000000", "2026-12-07T11:00:00.000Z"),
            quote("us-east-1b", LINUX[1], "19.500000", "2026-12-06T23:00:00.999999999Z"),
        ];
        let got = latest("us-east-1", &quotes, 99).unwrap();
        let view: Vec<_> = got.iter().map(|p| (p.zone.as_str(), p.micros_per_hour, p.source)).collect();
        assert_eq!(
            view,
            vec![("us-east-1a", 21_123_400, PriceSource::Spot), ("us-east-1b", 19_500_000, PriceSource::Spot)]
        );
        assert_eq!(got[0].effective_ns, utc_ns("2026-12-07T10:00:00Z").unwrap());
        assert_eq!(got[0].provenance, "spot price history 2026-12-07T10:00:00.000Z");
        assert_eq!((got[0].region.as_str(), got[0].fetched_ns), ("us-east-1", 99));
    }

    #[test]
    fn an_unreadable_quote_is_an_error_naming_it() {
        let e =
            latest("us-east-1", &[quote("us-east-1c", LINUX[0], "n/a", "2026-12-07T10:00:00.000Z")], 0).unwrap_err();
        assert!(e.contains("p5.48xlarge") && e.contains("us-east-1c") && e.contains("\"n/a\""), "{e}");
    }
}

//! Prices fetched from AWS, as the price book reads them (issue 25 item 5): on-demand prices from the AWS
//! Price List API per region, spot prices from EC2's spot price history per Availability Zone, each from the
//! time it took effect. The price book takes them over the shipped catalogue, and the prices file over both
//! (`book.rs`, docs/prices.md). Kept in the ledger (`fetched_prices`); this side knows nothing of storage.

use gpucost_types::money::Micros;

/// Which AWS source a fetched rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchedSource {
    /// On demand, per region (`price-list`).
    PriceList,
    /// Spot, per Availability Zone (`spot`).
    Spot,
}

/// One fetched rate of an instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRate {
    pub source: FetchedSource,
    pub region: String,
    /// The Availability Zone of a spot rate; empty for an on-demand one.
    pub zone: String,
    pub instance_type: String,
    /// When it took effect, ns since the epoch.
    pub effective_ns: u64,
    pub micros_per_hour: Micros,
    /// The SKU and offer term, or the spot price's timestamp.
    pub provenance: String,
}

/// Fetched rates, looked up by what a node is.
#[derive(Debug, Clone, Default)]
pub struct FetchedRates {
    /// Latest effective first, so the first match in force wins.
    rates: Vec<FetchedRate>,
}

impl FetchedRates {
    pub fn new(mut rates: Vec<FetchedRate>) -> Self {
        rates.sort_by_key(|r| std::cmp::Reverse(r.effective_ns));
        Self { rates }
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The spot rate of `instance_type` in `zone` of `region` in force at `at_ns`.
    pub fn spot(&self, instance_type: &str, region: &str, zone: &str, at_ns: u64) -> Option<&FetchedRate> {
        self.find(FetchedSource::Spot, instance_type, region, zone, at_ns)
    }

    /// The on-demand rate of `instance_type` in `region` in force at `at_ns`.
    pub fn on_demand(&self, instance_type: &str, region: &str, at_ns: u64) -> Option<&FetchedRate> {
        self.find(FetchedSource::PriceList, instance_type, region, "", at_ns)
    }

    fn find(
        &self,
        source: FetchedSource,
        instance_type: &str,
        region: &str,
        zone: &str,
        at_ns: u64,
    ) -> Option<&FetchedRate> {
        self.rates.iter().find(|r| {
            r.source == source
                && r.effective_ns <= at_ns
                && r.instance_type == instance_type
                && r.region == region
                && r.zone == zone
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(source: FetchedSource, zone: &str, effective_ns: u64, micros: Micros) -> FetchedRate {
        FetchedRate {
            source,
            region: "us-east-1".into(),
            zone: zone.into(),
            instance_type: "p5.48xlarge".into(),
            effective_ns,
            micros_per_hour: micros,
            provenance: String::new(),
        }
    }

    #[test]
    fn the_latest_rate_in_force_of_the_right_source_and_zone_is_found() {
        let rates = FetchedRates::new(vec![
            rate(FetchedSource::PriceList, "", 10, 98_320_000),
            rate(FetchedSource::PriceList, "", 20, 55_040_000),
            rate(FetchedSource::Spot, "us-east-1a", 15, 21_000_000),
        ]);
        assert_eq!(rates.on_demand("p5.48xlarge", "us-east-1", 19).unwrap().micros_per_hour, 98_320_000);
        assert_eq!(rates.on_demand("p5.48xlarge", "us-east-1", 20).unwrap().micros_per_hour, 55_040_000);
        assert!(rates.on_demand("p5.48xlarge", "us-east-1", 9).is_none(), "nothing before it took effect");
        assert!(rates.on_demand("p5.48xlarge", "us-west-2", 30).is_none());
        assert_eq!(rates.spot("p5.48xlarge", "us-east-1", "us-east-1a", 30).unwrap().micros_per_hour, 21_000_000);
        assert!(rates.spot("p5.48xlarge", "us-east-1", "us-east-1b", 30).is_none(), "spot is per zone");
    }
}

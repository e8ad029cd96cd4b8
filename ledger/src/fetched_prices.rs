//! Prices fetched from AWS (issue 25 item 5): on-demand prices of the AWS Price List API and EC2 spot prices,
//! each kept from the time it took effect, so a price in force at any instant can be read back with where it
//! came from. See docs/prices.md.

use crate::LedgerError;

/// Where a fetched price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriceSource {
    /// The AWS Price List API (`GetProducts`, AmazonEC2, Linux, shared tenancy, on demand): one per region.
    PriceList,
    /// EC2 `DescribeSpotPriceHistory` (Linux/UNIX): one per Availability Zone.
    Spot,
}

impl PriceSource {
    /// Its name in the ledger and the API: `price-list` or `spot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PriceList => "price-list",
            Self::Spot => "spot",
        }
    }

    /// The source named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "price-list" => Some(Self::PriceList),
            "spot" => Some(Self::Spot),
            _ => None,
        }
    }
}

/// One fetched price of an instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPrice {
    pub source: PriceSource,
    pub region: String,
    /// The Availability Zone of a spot price; empty for a Price List price.
    pub zone: String,
    pub instance_type: String,
    /// When AWS says the price took effect, ns since the epoch (the offer term's effective date, the spot
    /// price's timestamp).
    pub effective_ns: u64,
    /// The instance's price, micro-dollars per hour.
    pub micros_per_hour: u64,
    /// When it was fetched, ns since the epoch.
    pub fetched_ns: u64,
    /// The Price List SKU and offer term code (`SKU.TERM.RATE`), or the spot price's timestamp as AWS gave it.
    pub provenance: String,
}

/// The ledger's role for fetched prices.
pub trait FetchedPriceStore: Send + Sync {
    /// Stores `prices` in one transaction; a price already stored for the same source, region, zone, instance
    /// type and effective time is replaced (a later fetch of the same price refreshes `fetched_ns`). Returns
    /// how many rows were written.
    fn put_fetched_prices(&self, prices: &[FetchedPrice]) -> Result<usize, LedgerError>;
    /// Every stored price, ordered by source, region, zone, instance type and effective time.
    fn fetched_prices(&self) -> Result<Vec<FetchedPrice>, LedgerError>;
}

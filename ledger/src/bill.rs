//! What the ledger keeps of the AWS bill (issue 25): the data files of AWS Data Exports deliveries (CUR 2.0 or
//! FOCUS 1.2) and their lines, in one model whatever the export's schema. A billing period of an export is
//! stored as one delivery and replaced whole when AWS restates it, in one transaction; a delivery already
//! stored (same execution, same files, same ETags) changes nothing. See docs/bill.md.

use crate::LedgerError;

/// One line of the bill, as stored. Text fields are empty where the export has no such value; amounts are
/// `None` where the export has no such column or the cell is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillLine {
    /// The data row it came from, counted from 1 within its file.
    pub row: u64,
    /// `YYYY-MM`.
    pub billing_period: String,
    /// When the usage (the charge period) began and ended, ns since the epoch (UTC).
    pub usage_start_ns: u64,
    pub usage_end_ns: u64,
    pub payer_account_id: String,
    pub usage_account_id: String,
    /// CUR 2.0's `line_item_line_item_type` (`Usage`, `SavingsPlanCoveredUsage`, `DiscountedUsage`,
    /// `SavingsPlanNegation`, `Credit`, `EdpDiscount`, …); for FOCUS the same names, derived (docs/bill.md).
    pub line_item_type: String,
    /// `AmazonEC2`, …
    pub product_code: String,
    /// `BoxUsage:p4d.24xlarge`, `SpotUsage:g5.xlarge`, …
    pub usage_type: String,
    pub operation: String,
    /// The instance id for EC2 instance usage.
    pub resource_id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    /// `OnDemand`, `Reserved`, `Spot`, `SavingsPlan` or empty.
    pub pricing_term: String,
    pub sku_id: String,
    /// The Savings Plan or reservation that covered it (an ARN), if any.
    pub commitment_id: String,
    pub currency: String,
    /// Usage in nano-units of its unit (hours for instance usage).
    pub usage_amount_nano: Option<i64>,
    /// Money, nano-dollars: unblended (FOCUS: BilledCost), public on-demand (FOCUS: ListCost), Savings Plan
    /// and reservation effective cost, net unblended, contracted (FOCUS: ContractedCost) and effective (FOCUS:
    /// EffectiveCost).
    pub unblended_nano: Option<i64>,
    pub public_on_demand_nano: Option<i64>,
    pub sp_effective_nano: Option<i64>,
    pub ri_effective_nano: Option<i64>,
    pub net_unblended_nano: Option<i64>,
    pub contracted_nano: Option<i64>,
    pub effective_nano: Option<i64>,
}

/// A data file of a delivery, with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillFileLines {
    /// Its key (S3 key, or its path under the export's folder).
    pub key: String,
    /// The S3 ETag, or the SHA-256 of a local file.
    pub etag: String,
    pub lines: Vec<BillLine>,
}

/// One delivery of one billing period of an export: what its manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDelivery {
    pub export: String,
    /// `YYYY-MM`.
    pub billing_period: String,
    /// The manifest's `executionId`.
    pub execution_id: String,
    pub manifest_key: String,
    /// `cur2` or `focus1.2`.
    pub schema: String,
    pub files: Vec<BillFileLines>,
}

/// A data file as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillFile {
    pub export: String,
    pub billing_period: String,
    pub key: String,
    pub etag: String,
    pub execution_id: String,
    pub manifest_key: String,
    pub schema: String,
    pub lines: u64,
    pub imported_ns: u64,
}

/// What storing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillImport {
    /// The period was not stored before.
    Imported { lines: u64 },
    /// The period's earlier delivery (its `old_lines`) was replaced.
    Replaced { lines: u64, old_lines: u64 },
    /// The same delivery was stored already: nothing changed.
    Unchanged,
}

pub trait BillStore: Send + Sync {
    /// Stores `delivery` in one transaction: the billing period's earlier files and lines of that export are
    /// deleted and the delivery's written, unless the same delivery (execution id, file keys and ETags) is
    /// stored already.
    fn put_bill_delivery(&self, delivery: &BillDelivery, now_ns: u64) -> Result<BillImport, LedgerError>;
    /// Whether this delivery is stored already (the same execution id, file keys and ETags), without reading
    /// its files.
    fn bill_delivery_stored(
        &self,
        export: &str,
        billing_period: &str,
        execution_id: &str,
        files: &[(String, String)],
    ) -> Result<bool, LedgerError>;
    /// Every stored data file, by export, billing period and key.
    fn bill_files(&self) -> Result<Vec<BillFile>, LedgerError>;
    /// The stored lines of an export's billing period, by file key and row.
    fn bill_lines(&self, export: &str, billing_period: &str) -> Result<Vec<(String, BillLine)>, LedgerError>;
}

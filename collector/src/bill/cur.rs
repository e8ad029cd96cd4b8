//! CUR 2.0 (the Data Exports `COST_AND_USAGE_REPORT` table) → the ledger's bill line. Column names as AWS's
//! CUR 2.0 data dictionary gives them (docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2.html).

use gpucost_ledger::bill::BillLine;

use super::amount::month_of;
use super::ec2;
use super::read::{BillError, Record};

/// The columns a CUR 2.0 file must have; the others may be missing (the line then has no such value).
pub const REQUIRED: &[&str] = &[
    "bill_billing_period_start_date",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_line_item_type",
    "line_item_unblended_cost",
];

/// Whether `columns` are CUR 2.0's.
pub fn is_cur2(columns: &[String]) -> bool {
    columns.iter().any(|c| c == "line_item_line_item_type")
}

pub fn line(r: &Record<'_>) -> Result<BillLine, BillError> {
    let usage_type = r.text("line_item_usage_type");
    let instance_type = match r.text("product_instance_type") {
        t if t.is_empty() => ec2::instance_type_of_usage(&usage_type),
        t => t,
    };
    // Spot instance-hours carry no pricing term in CUR; their usage type says Spot.
    let pricing_term = match r.text("pricing_term") {
        t if t.is_empty() && usage_type.contains("SpotUsage") => "Spot".to_string(),
        t => t,
    };
    let commitment_id = match r.text("savings_plan_savings_plan_a_r_n") {
        t if t.is_empty() => r.text("reservation_reservation_a_r_n"),
        t => t,
    };
    let unblended = r.amount("line_item_unblended_cost")?;
    if unblended.is_none() {
        return Err(r.error("line_item_unblended_cost", "empty"));
    }
    Ok(BillLine {
        row: r.row,
        billing_period: month_of(r.instant("bill_billing_period_start_date")?),
        usage_start_ns: r.instant("line_item_usage_start_date")?,
        usage_end_ns: r.instant("line_item_usage_end_date")?,
        payer_account_id: r.text("bill_payer_account_id"),
        usage_account_id: r.text("line_item_usage_account_id"),
        line_item_type: r.required_text("line_item_line_item_type")?,
        product_code: r.text("line_item_product_code"),
        usage_type,
        operation: r.text("line_item_operation"),
        resource_id: ec2::resource_id(&r.text("line_item_resource_id")),
        instance_type,
        region: r.text("product_region_code"),
        availability_zone: r.text("line_item_availability_zone"),
        pricing_term,
        sku_id: r.text("product_sku"),
        commitment_id,
        currency: r.text("line_item_currency_code"),
        usage_amount_nano: r.amount("line_item_usage_amount")?,
        unblended_nano: unblended,
        public_on_demand_nano: r.amount("pricing_public_on_demand_cost")?,
        sp_effective_nano: r.amount("savings_plan_savings_plan_effective_cost")?,
        ri_effective_nano: r.amount("reservation_effective_cost")?,
        net_unblended_nano: r.amount("line_item_net_unblended_cost")?,
        contracted_nano: None,
        effective_nano: None,
    })
}

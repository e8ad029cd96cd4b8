//! FOCUS 1.2 with AWS columns (the Data Exports `FOCUS_1_2_AWS` table) → the ledger's bill line, in CUR 2.0's
//! terms where the later work matches on them (line item type, pricing term); column names as AWS's FOCUS 1.2
//! table dictionary gives them (docs.aws.amazon.com/cur/latest/userguide/table-dictionary-focus-1-2-aws-columns.html).

use gpucost_ledger::bill::BillLine;

use super::amount::month_of;
use super::ec2;
use super::read::{BillError, Record};

pub const REQUIRED: &[&str] =
    &["BillingPeriodStart", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "BilledCost", "EffectiveCost"];

/// Whether `columns` are FOCUS's.
pub fn is_focus(columns: &[String]) -> bool {
    columns.iter().any(|c| c == "BilledCost") && columns.iter().any(|c| c == "ChargeCategory")
}

/// CUR 2.0's line item type for a FOCUS row: usage covered by a Savings Plan or a reservation, unused
/// commitment, spot and on-demand usage as `Usage`; other charge categories (Purchase, Tax, Credit,
/// Adjustment) as they are.
fn line_item_type(category: &str, commitment_type: &str, commitment_status: &str) -> String {
    match (category, commitment_status) {
        ("Usage", "Used") if savings_plan(commitment_type) => "SavingsPlanCoveredUsage".into(),
        ("Usage", "Used") if commitment_type.to_ascii_lowercase().contains("reserv") => "DiscountedUsage".into(),
        ("Usage", "Unused") => "UnusedCommitment".into(),
        (c, _) => c.to_string(),
    }
}

/// Whether a CommitmentDiscountType names a Savings Plan (`Savings Plan`, `ComputeSavingsPlans`, …).
fn savings_plan(commitment_type: &str) -> bool {
    commitment_type.to_ascii_lowercase().replace([' ', '_', '-'], "").contains("savingsplan")
}

/// CUR 2.0's pricing term for FOCUS's PricingCategory.
fn pricing_term(category: &str, commitment_type: &str) -> String {
    match category {
        "Standard" => "OnDemand".into(),
        "Dynamic" => "Spot".into(),
        "Committed" if savings_plan(commitment_type) => "SavingsPlan".into(),
        "Committed" => "Reserved".into(),
        _ => String::new(),
    }
}

pub fn line(r: &Record<'_>) -> Result<BillLine, BillError> {
    let commitment_type = r.text("CommitmentDiscountType");
    let usage_type = r.text("x_UsageType");
    let billed = r.amount("BilledCost")?.ok_or_else(|| r.error("BilledCost", "empty"))?;
    let effective = r.amount("EffectiveCost")?.ok_or_else(|| r.error("EffectiveCost", "empty"))?;
    let product_code = match r.text("x_ServiceCode") {
        t if t.is_empty() => r.text("ServiceName"),
        t => t,
    };
    Ok(BillLine {
        row: r.row,
        billing_period: month_of(r.instant("BillingPeriodStart")?),
        usage_start_ns: r.instant("ChargePeriodStart")?,
        usage_end_ns: r.instant("ChargePeriodEnd")?,
        payer_account_id: r.text("BillingAccountId"),
        usage_account_id: r.text("SubAccountId"),
        line_item_type: line_item_type(
            &r.required_text("ChargeCategory")?,
            &commitment_type,
            &r.text("CommitmentDiscountStatus"),
        ),
        product_code,
        instance_type: ec2::instance_type_of_usage(&usage_type),
        usage_type,
        operation: r.text("x_Operation"),
        resource_id: ec2::resource_id(&r.text("ResourceId")),
        region: r.text("RegionId"),
        availability_zone: r.text("AvailabilityZone"),
        pricing_term: pricing_term(&r.text("PricingCategory"), &commitment_type),
        sku_id: r.text("SkuId"),
        commitment_id: r.text("CommitmentDiscountId"),
        currency: r.text("BillingCurrency"),
        usage_amount_nano: r.amount("ConsumedQuantity")?,
        unblended_nano: Some(billed),
        public_on_demand_nano: r.amount("ListCost")?,
        sp_effective_nano: None,
        ri_effective_nano: None,
        net_unblended_nano: None,
        contracted_nano: r.amount("ContractedCost")?,
        effective_nano: Some(effective),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_charges_read_as_cur_line_item_types_and_pricing_terms() {
        assert_eq!(line_item_type("Usage", "Savings Plan", "Used"), "SavingsPlanCoveredUsage");
        assert_eq!(line_item_type("Usage", "Reservation", "Used"), "DiscountedUsage");
        assert_eq!(line_item_type("Usage", "", ""), "Usage");
        assert_eq!(line_item_type("Credit", "", ""), "Credit");
        assert_eq!(pricing_term("Dynamic", ""), "Spot");
        assert_eq!(pricing_term("Committed", "Savings Plan"), "SavingsPlan");
        assert_eq!(pricing_term("Standard", ""), "OnDemand");
    }
}

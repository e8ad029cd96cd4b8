//! The FinOps FOCUS export: GPU cost as FOCUS 1.2 cost-and-usage rows with FOCUS 1.3 split allocation.
//!
//! Each GPU's cost in a charge period (a UTC day, clipped to the billing period) is an origin charge whose
//! resource is the GPU (`ResourceId` = `<cluster>/<node>/<GPU UUID>`). It is written as its allocated rows:
//! one per workload holding it (`AllocatedResourceId` = the workload), and the idle rest as a row whose
//! `AllocatedResourceId` is null. The rows of one origin keep its dimensions and sum to its cost exactly
//! (integer micro-dollars). gpucost's own columns start with `x_`. Times are `YYYY-MM-DDTHH:MM:SSZ`, ends
//! exclusive; null is an empty unquoted field.

use serde_json::json;

use crate::chargeback::{UNATTRIBUTED, csv_field};
use gpucost_ledger::prelude::*;
use gpucost_ledger::{LedgerError, OriginCharge};
use gpucost_types::money::usd;
use gpucost_types::period::{DAY_NS, Period, utc};
use gpucost_types::policy::Policy;

/// Who is named as the provider, the billing account and the invoice in the export.
#[derive(Debug, Clone)]
pub struct Parties {
    /// The internal platform that charges teams (`ProviderName`, `InvoiceIssuerName`).
    pub provider: String,
    pub billing_account_id: String,
    pub billing_account_name: String,
}

impl Default for Parties {
    fn default() -> Self {
        Self {
            provider: "GPU Platform".into(),
            billing_account_id: "gpucost-chargeback".into(),
            billing_account_name: "GPU chargeback".into(),
        }
    }
}

/// The export's columns, in order.
pub const COLUMNS: [&str; 72] = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    // FOCUS 1.3
    "HostProviderName",
    "ServiceProviderName",
    "AllocatedMethodId",
    "AllocatedMethodDetails",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    // gpucost's own
    "x_GpuModel",
    "x_Node",
    "x_Cluster",
    "x_Policy",
    "x_HeldGpuHours",
    "x_UsedGpuHours",
    "x_OriginCost",
    "x_CostMicros",
];

/// One exported row: a holder's part of an origin charge, or its idle rest (`holder` is `None`).
struct Part<'a> {
    origin: &'a OriginCharge,
    /// GPU time of an earlier closed month that arrived after it closed.
    correction: bool,
    holder: Option<&'a gpucost_ledger::AllocatedCharge>,
    cost: u128,
    held_ns: u128,
    used_ns: u128,
}

fn hours(ns: u128) -> String {
    format!("{:.6}", ns as f64 / 3.6e12)
}

/// A decimal with up to nine places, always with a decimal point (`1.0`, not `1`): CSV readers infer a
/// column's type from its text, and FOCUS wants these columns decimal.
fn decimal(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') { format!("{s}0") } else { s.to_string() }
}

fn publisher(instance_type: &str) -> &'static str {
    if instance_type.is_empty() { "Unknown" } else { "Amazon Web Services" }
}

/// The FOCUS rows of `origins` (from [`Ledger::allocations`]) and of `corrections` (late GPU time of
/// earlier closed months, `ChargeClass` Correction) for billing `period`, as CSV.
pub fn to_csv(
    origins: &[OriginCharge],
    corrections: &[OriginCharge],
    period: &Period,
    policy: Policy,
    parties: &Parties,
) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    let all = origins.iter().map(|o| (o, false)).chain(corrections.iter().map(|o| (o, true)));
    for (o, correction) in all.filter(|(o, _)| o.cost > 0) {
        let allocated: u128 = o.allocations.iter().map(|a| a.cost).sum();
        let mut parts: Vec<Part> = o
            .allocations
            .iter()
            .filter(|a| a.cost > 0 || a.held_ns > 0)
            .map(|a| Part {
                origin: o,
                correction,
                holder: Some(a),
                cost: a.cost,
                held_ns: a.held_ns,
                used_ns: a.used_ns,
            })
            .collect();
        let idle = o.cost.saturating_sub(allocated);
        if idle > 0 {
            parts.push(Part {
                origin: o,
                correction,
                holder: None,
                cost: idle,
                held_ns: o.observed_ns.saturating_sub(o.held_ns),
                used_ns: 0,
            });
        }
        for p in parts {
            out.push_str(&row(&p, period, policy, parties).iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
    }
    out
}

/// What the columns of a part's row are written from.
struct Facts<'a> {
    p: &'a Part<'a>,
    period: &'a Period,
    policy: Policy,
    parties: &'a Parties,
    /// Price per GPU-hour of the origin: its cost over the GPU-hours observed.
    unit: f64,
    /// The part's cost in GPU-hours at `unit`.
    quantity: f64,
    /// The part's cost in dollars.
    cost: String,
    /// The GPU's model, and its MIG profile if it is a slice.
    gpu: String,
}

impl<'a> Facts<'a> {
    fn of(p: &'a Part<'a>, period: &'a Period, policy: Policy, parties: &'a Parties) -> Self {
        let o = p.origin;
        let unit = if o.observed_ns > 0 { o.cost as f64 / 1e6 / (o.observed_ns as f64 / 3.6e12) } else { 0.0 };
        let quantity = if unit > 0.0 { p.cost as f64 / 1e6 / unit } else { 0.0 };
        let gpu = match &o.mig_profile {
            Some(profile) => format!("{} {profile}", o.gpu_model),
            None => o.gpu_model.clone(),
        };
        Self { p, period, policy, parties, unit, quantity, cost: usd(p.cost), gpu }
    }
}

/// The row of part `p`, one field per column of [`COLUMNS`], in order.
fn row(p: &Part, period: &Period, policy: Policy, parties: &Parties) -> Vec<String> {
    let f = Facts::of(p, period, policy, parties);
    let mut row = Vec::with_capacity(COLUMNS.len());
    row.extend(charge_columns(&f));
    row.extend(pricing_columns(&f));
    row.extend(resource_columns(&f));
    row.extend(allocation_columns(&f));
    row
}

/// `AvailabilityZone` to `CommitmentDiscountUnit`: the billing account and period, and the charge.
fn charge_columns(f: &Facts) -> [String; 23] {
    let (o, null) = (f.p.origin, String::new);
    [
        o.zone.clone(),
        f.cost.clone(),
        f.parties.billing_account_id.clone(),
        f.parties.billing_account_name.clone(),
        "Internal Chargeback".into(),
        "USD".into(),
        utc(f.period.to_ns),
        utc(f.period.from_ns),
        null(),
        null(),
        "Usage".into(),
        if f.p.correction { "Correction".into() } else { null() },
        description(f),
        "Usage-Based".into(),
        utc(o.end_ns),
        utc(o.start_ns),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
    ]
}

/// `ChargeDescription`: what GPU time the row charges for, and whose.
fn description(f: &Facts) -> String {
    let (o, gpu) = (f.p.origin, &f.gpu);
    let description = match f.p.holder {
        Some(_) => format!("{gpu} GPU time on {} ({}), {} share", o.node, o.instance_type, f.policy.name()),
        None => format!("{gpu} GPU time on {} ({}) no workload was charged for", o.node, o.instance_type),
    };
    if f.p.correction { format!("Correction (reported after its month closed): {description}") } else { description }
}

/// `ConsumedQuantity` to `PricingUnit`: quantities, costs and unit prices.
fn pricing_columns(f: &Facts) -> [String; 16] {
    let cost = &f.cost;
    [
        hours(f.p.held_ns),
        "GPU-Hours".into(),
        cost.clone(),
        decimal(f.unit),
        cost.clone(),
        format!("gpucost-{}", f.period.label),
        f.parties.provider.clone(),
        cost.clone(),
        decimal(f.unit),
        "Standard".into(),
        "USD".into(),
        decimal(f.unit),
        cost.clone(),
        decimal(f.unit),
        decimal(f.quantity),
        "GPU-Hours".into(),
    ]
}

/// `ProviderName` to `Tags`: the provider, the resource (the GPU), the service, the SKU and the sub-account.
fn resource_columns(f: &Facts) -> [String; 18] {
    let o = f.p.origin;
    let sku_details = json!({
        "InstanceType": o.instance_type,
        "GpuModel": f.gpu,
        "CapacityType": o.capacity_type,
    });
    [
        f.parties.provider.clone(),
        publisher(&o.instance_type).into(),
        o.region.clone(),
        o.region.clone(),
        format!("{}/{}/{}", o.cluster, o.node, o.gpu_uuid),
        format!("{} {}", o.node, o.gpu_uuid),
        "GPU".into(),
        "Compute".into(),
        "GPU Compute".into(),
        "Containers".into(),
        o.instance_type.clone(),
        "GPU-Hours".into(),
        sku_details.to_string(),
        format!("{}/{}/{}", o.instance_type, o.capacity_type, o.region),
        o.cluster.clone(),
        o.cluster.clone(),
        "Cluster".into(),
        json!({ "cluster": o.cluster, "node": o.node, "gpu_model": o.gpu_model }).to_string(),
    ]
}

/// `HostProviderName` to `x_CostMicros`: FOCUS 1.3's split allocation, then gpucost's own columns.
fn allocation_columns(f: &Facts) -> [String; 15] {
    let (p, o) = (f.p, f.p.origin);
    let method = json!({
        "Policy": f.policy.name(),
        "Basis": match f.policy {
            Policy::Allocation => "GPU memory held",
            Policy::Utilization => "SM utilisation; the unused rest is idle",
            Policy::Hybrid => "SM utilisation; the unused rest split by GPU memory held",
        },
        "Idle": p.holder.is_none(),
    });
    let (allocated_id, allocated_name, allocated_tags) = allocated(p);
    [
        publisher(&o.instance_type).into(),
        f.parties.provider.clone(),
        format!("gpucost-{}", f.policy.name()),
        method.to_string(),
        allocated_id,
        allocated_name,
        allocated_tags,
        f.gpu.clone(),
        o.node.clone(),
        o.cluster.clone(),
        f.policy.name().into(),
        hours(p.held_ns),
        hours(p.used_ns),
        usd(o.cost),
        p.cost.to_string(),
    ]
}

/// `AllocatedResourceId`, `AllocatedResourceName` and `AllocatedTags` of the part's holder (all null for the
/// idle rest).
fn allocated(p: &Part) -> (String, String, String) {
    match p.holder {
        Some(a) => (
            a.workload.clone(),
            if a.pod.is_empty() { a.workload.clone() } else { a.pod.clone() },
            json!({
                // Who pays: `unattributed` when no owner rule names a payer (owner, team and department
                // say so too), docs/chargeback.md.
                "attribution": if a.owner == UNATTRIBUTED { UNATTRIBUTED } else { "attributed" },
                "owner": a.owner,
                "team": a.team,
                "department": a.department,
                "namespace": a.namespace,
                "kind": a.kind,
                "model": a.model,
                "model_version": a.model_version,
            })
            .to_string(),
        ),
        None => (String::new(), String::new(), String::new()),
    }
}

/// Reads the ledger for `period` (one origin charge per GPU and UTC day) and writes the FOCUS CSV.
pub fn export(ledger: &dyn Ledger, period: &Period, policy: Policy, parties: &Parties) -> Result<String, LedgerError> {
    let sources = crate::sources(ledger, period)?;
    let origins = ledger.allocations_of(&sources.own, period.from_ns, period.to_ns, DAY_NS, policy)?;
    let (from, to) = crate::ALL_TIME;
    let corrections = match &sources.corrections {
        Some(rows) => ledger.allocations_of(rows, from, to, DAY_NS, policy)?,
        None => vec![],
    };
    Ok(to_csv(&origins, &corrections, period, policy, parties))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_ledger::AllocatedCharge;

    fn holder(pod: &str, cost: u128, held_h: u128) -> AllocatedCharge {
        AllocatedCharge {
            workload: format!("pod:prod/ml/{pod}/main"),
            kind: "kubernetes_pod".into(),
            namespace: "ml".into(),
            pod: pod.into(),
            owner: "group:default/vision".into(),
            team: "vision".into(),
            department: "applied-ml".into(),
            model: String::new(),
            model_version: String::new(),
            cost,
            held_ns: held_h * 3_600_000_000_000,
            used_ns: 0,
        }
    }

    fn origin(cost: u128, allocations: Vec<AllocatedCharge>) -> OriginCharge {
        let day = 20_758 * DAY_NS;
        OriginCharge {
            start_ns: day,
            end_ns: day + DAY_NS,
            cluster: "prod".into(),
            node: "n1".into(),
            instance_type: "g5.12xlarge".into(),
            capacity_type: "on_demand".into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            gpu_uuid: "GPU-1".into(),
            gpu_model: "NVIDIA A10G".into(),
            mig_profile: None,
            cost,
            observed_ns: 24 * 3_600_000_000_000,
            held_ns: 20 * 3_600_000_000_000,
            used_ns: 0,
            energy_mj: 0,
            allocations,
        }
    }

    fn parse(csv: &str) -> Vec<Vec<String>> {
        crate::chargeback::csv_rows(csv)
    }

    #[test]
    fn allocated_rows_and_the_idle_row_sum_to_the_origin_charge() {
        let o = origin(32_712_000, vec![holder("train", 20_000_001, 12), holder("serve", 9_000_000, 8)]);
        let late = origin(1_000_000, vec![holder("late", 1_000_000, 1)]);
        let rows =
            parse(&to_csv(&[o], &[late], &Period::parse("2026-11").unwrap(), Policy::Hybrid, &Parties::default()));
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(rows[0].len(), COLUMNS.len());
        assert_eq!(rows.len(), 5, "header, two holders, idle, a correction");
        let micros: u128 = rows[1..4].iter().map(|r| r[col("x_CostMicros")].parse::<u128>().unwrap()).sum();
        assert_eq!(micros, 32_712_000);
        assert_eq!(rows[4][col("ChargeClass")], "Correction");
        assert_eq!(rows[3][col("AllocatedResourceId")], "", "the idle rest has a null AllocatedResourceId");
        assert_eq!(rows[3][col("BilledCost")], "3.711999");
        assert_eq!(rows[1][col("AllocatedResourceId")], "pod:prod/ml/train/main");
        assert_eq!(rows[1][col("ChargePeriodStart")], "2026-11-01T00:00:00Z");
        assert_eq!(rows[1][col("BillingPeriodEnd")], "2026-12-01T00:00:00Z");
        assert_eq!(rows[1][col("ChargeClass")], "");
        for r in &rows[1..] {
            assert_eq!(r[col("ResourceId")], "prod/n1/GPU-1");
            assert_eq!(r[col("BilledCost")], r[col("EffectiveCost")]);
            let unit: f64 = r[col("ListUnitPrice")].parse().unwrap();
            let qty: f64 = r[col("PricingQuantity")].parse().unwrap();
            let cost: f64 = r[col("ListCost")].parse().unwrap();
            assert!((unit * qty - cost).abs() < 1e-6, "{unit} × {qty} ≠ {cost}");
        }
        let tags: serde_json::Value = serde_json::from_str(&rows[1][col("AllocatedTags")]).unwrap();
        assert_eq!((&tags["team"], &tags["attribution"]), (&json!("vision"), &json!("attributed")));
    }

    #[test]
    fn an_unattributed_workloads_row_says_so_in_its_tags() {
        let mut nobody = holder("batch", 5_000_000, 4);
        (nobody.owner, nobody.team, nobody.department) =
            (UNATTRIBUTED.into(), UNATTRIBUTED.into(), UNATTRIBUTED.into());
        let o = origin(32_712_000, vec![nobody]);
        let rows = parse(&to_csv(&[o], &[], &Period::parse("2026-11").unwrap(), Policy::Hybrid, &Parties::default()));
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let tags: serde_json::Value = serde_json::from_str(&rows[1][col("AllocatedTags")]).unwrap();
        assert_eq!((&tags["attribution"], &tags["team"]), (&json!("unattributed"), &json!("unattributed")));
        assert_eq!(rows[2][col("AllocatedResourceId")], "", "the rest is still the null AllocatedResourceId");
    }

    #[test]
    fn decimals_always_read_as_decimals() {
        assert_eq!((decimal(1.0), decimal(1.418), decimal(0.0)), ("1.0".into(), "1.418".into(), "0.0".into()));
    }

    #[test]
    fn custom_columns_are_prefixed_and_unpriced_gpus_are_left_out() {
        assert!(
            COLUMNS[COLUMNS.iter().position(|c| *c == "AllocatedTags").unwrap() + 1..]
                .iter()
                .all(|c| c.starts_with("x_"))
        );
        let csv =
            to_csv(&[origin(0, vec![])], &[], &Period::parse("2026-11").unwrap(), Policy::Hybrid, &Parties::default());
        assert_eq!(csv.lines().count(), 1);
    }
}

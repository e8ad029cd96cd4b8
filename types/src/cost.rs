//! What a batch cost: each device's cost over the interval and each holding's part under every policy
//! (computed by `gpucost_rules::priced`).

use crate::money::{GpuPrice, Micros};

/// One device's cost over the interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCost {
    pub uuid: String,
    pub cost: Micros,
    /// The idle line under `utilization` (cost nobody used).
    pub idle: Micros,
    /// Cost of the device while nobody held it.
    pub unallocated: Micros,
    /// Set when the device has no price: why.
    pub unpriced: Option<String>,
}

/// One holding's part, under every policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldingCost {
    /// Used share × cost: the same under `utilization` and `hybrid`.
    pub used: Micros,
    /// Its part of the idle rest under `hybrid`.
    pub hybrid_idle: Micros,
    /// Under `allocation`: the used and idle parts of its memory-weighted charge.
    pub allocation_used: Micros,
    pub allocation_idle: Micros,
    /// Its share of the device's energy (by used share).
    pub energy_mj: u64,
    /// That energy's CO2e in milligrams, where the region's grid factor is configured.
    pub co2e_mg: Option<u64>,
}

/// A batch's costs: devices in `batch.devices` order, holdings in `batch.holdings` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCost {
    pub price: Option<GpuPrice>,
    pub unpriced: Option<String>,
    pub devices: Vec<DeviceCost>,
    pub holdings: Vec<HoldingCost>,
}

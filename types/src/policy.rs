//! How a GPU's cost is split among its holders (`docs/cost-model.md`): the rules are in `gpucost-rules`.

use serde::Serialize;

/// `utilization`: each holder pays its used share, the rest is the idle line; `hybrid` (default): the idle rest is
/// split among holders by memory held; `allocation`: holders pay the whole cost by memory held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Allocation,
    Utilization,
    Hybrid,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Allocation, Policy::Utilization, Policy::Hybrid];

    pub fn name(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::Utilization => "utilization",
            Self::Hybrid => "hybrid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

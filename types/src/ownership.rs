//! Who pays for a workload's GPU time (resolved by `gpucost_rules::owner`).

/// Who owns a workload, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// An entity ref (`group:default/vision`) or `unattributed`.
    pub owner: String,
    /// The team (the owner group's name), its department (the team's parent) and organisation.
    pub team: String,
    pub department: String,
    pub component: String,
    pub system: String,
    /// The rule that matched, or `unattributed`.
    pub rule: &'static str,
}

/// The owner, team and rule of a workload no rule names a payer for, in the ledger, reports and metrics alike
/// (docs/chargeback.md, "four kinds of money").
pub const UNATTRIBUTED: &str = "unattributed";

impl Ownership {
    /// A workload no rule names a payer for.
    pub fn unattributed() -> Self {
        Self {
            owner: UNATTRIBUTED.into(),
            team: UNATTRIBUTED.into(),
            department: String::new(),
            component: String::new(),
            system: String::new(),
            rule: UNATTRIBUTED,
        }
    }
}

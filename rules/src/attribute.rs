//! The attribution stage: the owner of every holding of a priced batch, by the configured rules against the
//! catalog (`owner`), with ECS task tags from the cloud inventory. Pure.

use gpucost_types::batch::Identity;
use gpucost_types::ownership::Ownership;
use gpucost_types::stage::{Attributed, Priced};

use crate::catalog::Catalog;
use crate::inventory::Inventory;
use crate::owner::{self, Rule};

/// Who owns what, as configured: the catalog and the order of the rules.
#[derive(Debug, Clone)]
pub struct Owners {
    pub catalog: Catalog,
    pub rules: Vec<Rule>,
}

/// Resolves the owner of every holding of `priced`; with no owners configured, none (every holding is
/// stored as `unattributed`).
pub fn attribute(owners: Option<&Owners>, inventory: Option<&Inventory>, priced: Priced) -> Attributed {
    let Some(owners) = owners else { return Attributed { priced, owners: Vec::new() } };
    let resolved = priced.holdings.iter().map(|h| owner_of(owners, inventory, &h.workload.identity)).collect();
    Attributed { priced, owners: resolved }
}

/// The owner of one workload: what [`attribute`] gives each holding at ingest, and what re-attribution gives a
/// stored workload (with the catalog and rules of now).
pub fn owner_of(owners: &Owners, inventory: Option<&Inventory>, identity: &Identity) -> Ownership {
    let tags = inventory.and_then(|inv| {
        inv.ecs_tasks
            .iter()
            .find(|t| !identity.ecs_task_arn.is_empty() && t.task_arn == identity.ecs_task_arn)
            .map(|t| &t.tags)
    });
    owner::resolve(&owners.catalog, &owners.rules, identity, tags)
}

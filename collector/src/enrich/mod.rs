//! Enrichment: who owns a workload (Backstage catalog, `owner`), resolved at ingest so that every cost
//! line keeps the owner in force when its GPU time was used.

pub mod backstage;
pub mod catalog;
pub mod mlflow;
pub mod owner;

use crate::discover::Inventory;
use crate::model::Batch;

/// The owners configuration, replaced whole when the catalog is synced again.
pub type SharedOwners = std::sync::Arc<std::sync::RwLock<Owners>>;

/// Who owns what, as configured: the catalog and the order of the rules.
#[derive(Debug, Clone)]
pub struct Owners {
    pub catalog: catalog::Catalog,
    pub rules: Vec<owner::Rule>,
}

/// Resolves the owner of every holding of `b` (ECS task tags come from the discovery inventory).
pub fn enrich(owners: &Owners, inventory: Option<&Inventory>, b: &mut Batch) {
    b.owners = b
        .holdings
        .iter()
        .map(|h| {
            let tags = inventory.and_then(|inv| {
                inv.ecs_tasks
                    .iter()
                    .find(|t| {
                        !h.workload.identity.ecs_task_arn.is_empty() && t.task_arn == h.workload.identity.ecs_task_arn
                    })
                    .map(|t| &t.tags)
            });
            owner::resolve(&owners.catalog, &owners.rules, &h.workload.identity, tags)
        })
        .collect();
}

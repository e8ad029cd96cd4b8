//! The label keys this collector asks its agents to keep (`gpucost_proto::label_keys`): the keys its owner
//! rules read (`backstage.io/kubernetes-id` on pods, `backstage.io/owner` on namespaces) and those its
//! catalog's label selectors name, so that a component selected on `tier` matches pods of agents whose
//! `--label-allow` leaves `tier` out.
//!
//! Streams are told the set when they open (a response header) and again in an ack when it changed. The set
//! is worked out from the catalog in force at most every [`REFRESH`] (a synced catalog replaces the old one
//! whole; nothing tells this module), and kept in one `Arc` while it is unchanged, so that checking it for
//! an ack is a lock and a pointer comparison.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpucost_proto::label_keys::{MAX_LABEL_KEYS, bound};

use crate::enrich::SharedOwners;
use gpucost_rules::attribute::Owners;
use gpucost_rules::owner::Rule;

/// How stale the announced set may be after the catalog changed.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The keys announced now; compared by pointer (`Arc::ptr_eq`): a new `Arc` is a new set.
pub type Announced = Arc<Vec<String>>;

pub struct LabelKeys {
    owners: Option<SharedOwners>,
    cached: Mutex<(Option<Instant>, Announced)>,
}

impl LabelKeys {
    /// The keys of `owners` (none without a catalog).
    pub fn new(owners: Option<SharedOwners>) -> Self {
        Self { owners, cached: Mutex::new((None, Arc::default())) }
    }

    /// The keys to announce now.
    pub fn current(&self) -> Announced {
        self.current_at(Instant::now())
    }

    fn current_at(&self, now: Instant) -> Announced {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let Some(owners) = &self.owners else { return cached.1.clone() };
        if cached.0.is_some_and(|at| now.saturating_duration_since(at) < REFRESH) {
            return cached.1.clone();
        }
        let wanted = wanted(&owners.read().unwrap_or_else(|e| e.into_inner()));
        let b = bound(wanted);
        for (key, why) in &b.refused {
            tracing::warn!(key, why, max = MAX_LABEL_KEYS, "a label key the catalog uses is not announced to agents");
        }
        if *cached.1 != b.keys {
            tracing::info!(keys = ?b.keys, "label keys announced to agents");
            cached.1 = Arc::new(b.keys);
        }
        cached.0 = Some(now);
        cached.1.clone()
    }
}

/// The label keys `owners` reads, most needed first: the owner rules' own keys, then the selectors' keys by
/// how many components use them (then by name), so that a bound leaves out the rarest.
fn wanted(owners: &Owners) -> Vec<String> {
    let mut keys = Vec::new();
    let mut selected: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for rule in &owners.rules {
        match rule {
            Rule::KubernetesId => keys.push("backstage.io/kubernetes-id".to_string()),
            Rule::NamespaceOwner => keys.push("backstage.io/owner".to_string()),
            Rule::LabelSelector => {
                for (k, _) in owners.catalog.components.iter().filter_map(|c| c.label_selector.as_ref()).flatten() {
                    *selected.entry(k.as_str()).or_default() += 1;
                }
            }
            Rule::EcsTaskTag | Rule::SlurmAccount | Rule::UnixUser => {}
        }
    }
    let mut selected: Vec<(&str, usize)> = selected.into_iter().collect();
    selected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.extend(selected.into_iter().map(|(k, _)| k.to_string()));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_rules::catalog::Catalog;

    fn owners(yaml: &str, rules: &[Rule]) -> Owners {
        let mut catalog = Catalog::default();
        catalog.add_yaml("test.yaml", yaml).unwrap();
        Owners { catalog, rules: rules.to_vec() }
    }

    fn component(name: &str, selector: &str) -> String {
        format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n  annotations:\n    backstage.io/kubernetes-label-selector: '{selector}'\nspec:\n  owner: team-a\n"
        )
    }

    #[test]
    fn the_rules_keys_come_first_then_the_selectors_most_used_first() {
        let yaml = component("a", "tier=gold,app=x") + &component("b", "tier=silver") + &component("c", "zone=1");
        let o = owners(&yaml, &Rule::DEFAULT_ORDER);
        assert_eq!(wanted(&o), ["backstage.io/kubernetes-id", "backstage.io/owner", "tier", "app", "zone"]);
        let only_selectors = owners(&yaml, &[Rule::LabelSelector, Rule::UnixUser]);
        assert_eq!(wanted(&only_selectors), ["tier", "app", "zone"]);
        assert!(wanted(&owners(&yaml, &[Rule::SlurmAccount])).is_empty(), "no rule reads pod labels");
    }

    #[test]
    fn the_announced_set_is_bounded_and_kept_in_one_arc_while_unchanged() {
        let yaml: String = (0..40).map(|i| component(&format!("c{i}"), &format!("k{i}=v"))).collect::<String>()
            + &component("odd", "Bad Key=v");
        let shared = Arc::new(std::sync::RwLock::new(owners(&yaml, &Rule::DEFAULT_ORDER)));
        let keys = LabelKeys::new(Some(shared));
        let first = keys.current();
        assert_eq!(first.len(), MAX_LABEL_KEYS);
        assert!(!first.iter().any(|k| k.contains(' ')));
        assert!(Arc::ptr_eq(&first, &keys.current()));
        assert!(LabelKeys::new(None).current().is_empty(), "no catalog, no keys");
    }

    #[test]
    fn a_resynced_catalog_with_other_keys_is_a_new_set_within_the_refresh() {
        let shared = Arc::new(std::sync::RwLock::new(owners(&component("a", "tier=gold"), &[Rule::LabelSelector])));
        let keys = LabelKeys::new(Some(shared.clone()));
        let t0 = Instant::now();
        let told = keys.current_at(t0);
        assert_eq!(*told, ["tier"]);
        assert!(Arc::ptr_eq(&told, &keys.current_at(t0 + REFRESH)), "the same keys after a refresh: no news");
        shared.write().unwrap().catalog.add_yaml("more.yaml", &component("b", "zone=1")).unwrap();
        assert!(Arc::ptr_eq(&told, &keys.current_at(t0 + REFRESH)), "not before the next refresh");
        let now = keys.current_at(t0 + REFRESH * 2);
        assert!(!Arc::ptr_eq(&told, &now), "a stream's next ack tells it");
        assert_eq!(*now, ["tier", "zone"]);
    }
}

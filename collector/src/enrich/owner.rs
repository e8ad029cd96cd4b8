//! Who owns a workload, by rules tried in order (PRODUCT.md, "Who owns a workload"); the first that
//! matches wins and is recorded with the owner:
//!
//! 1. `label-selector` — a catalog component whose `backstage.io/kubernetes-label-selector` matches the
//!    pod's labels (it takes precedence, as in Backstage's Kubernetes plugin);
//! 2. `kubernetes-id` — a component whose `backstage.io/kubernetes-id` equals the pod's
//!    `backstage.io/kubernetes-id` label;
//! 3. `namespace-owner` — the pod's namespace label or annotation `backstage.io/owner`;
//! 4. `ecs-task-tag` — the ECS task's `backstage.io/owner` tag;
//! 5. `slurm-account` — the Slurm job's account, as a group;
//! 6. `unix-user` — the process's Unix user, as a user;
//! 7. otherwise `unallocated`: never dropped, always visible. Pure.

use std::collections::BTreeMap;

use super::catalog::{Catalog, entity_ref};
use crate::model::{Identity, WorkloadKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    LabelSelector,
    KubernetesId,
    NamespaceOwner,
    EcsTaskTag,
    SlurmAccount,
    UnixUser,
}

impl Rule {
    pub const DEFAULT_ORDER: [Rule; 6] = [
        Rule::LabelSelector,
        Rule::KubernetesId,
        Rule::NamespaceOwner,
        Rule::EcsTaskTag,
        Rule::SlurmAccount,
        Rule::UnixUser,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::LabelSelector => "label-selector",
            Self::KubernetesId => "kubernetes-id",
            Self::NamespaceOwner => "namespace-owner",
            Self::EcsTaskTag => "ecs-task-tag",
            Self::SlurmAccount => "slurm-account",
            Self::UnixUser => "unix-user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::DEFAULT_ORDER.into_iter().find(|r| r.name() == s)
    }
}

/// Who owns a workload, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// An entity ref (`group:default/vision`, `user:default/alice`) or `unallocated`.
    pub owner: String,
    /// The team (the owner group's name), its department (the team's parent) and organisation.
    pub team: String,
    pub department: String,
    pub component: String,
    pub system: String,
    /// The rule that matched, or `unallocated`.
    pub rule: &'static str,
}

impl Ownership {
    fn unallocated() -> Self {
        Self {
            owner: "unallocated".into(),
            team: String::new(),
            department: String::new(),
            component: String::new(),
            system: String::new(),
            rule: "unallocated",
        }
    }
}

/// Resolves the owner of a workload with `identity`; `ecs_tags` are its ECS task's tags, if known.
pub fn resolve(
    catalog: &Catalog,
    rules: &[Rule],
    identity: &Identity,
    ecs_tags: Option<&BTreeMap<String, String>>,
) -> Ownership {
    let is_pod = identity.kind == WorkloadKind::KubernetesPod;
    for &rule in rules {
        let found = match rule {
            Rule::LabelSelector if is_pod => catalog
                .components
                .iter()
                .find(|c| {
                    c.label_selector
                        .as_ref()
                        .is_some_and(|sel| sel.iter().all(|(k, v)| identity.labels.get(k) == Some(v)))
                })
                .map(|c| (c.owner.clone(), Some(c))),
            Rule::KubernetesId if is_pod => identity.labels.get("backstage.io/kubernetes-id").and_then(|id| {
                catalog
                    .components
                    .iter()
                    .find(|c| c.kubernetes_id.as_deref() == Some(id.as_str()))
                    .map(|c| (c.owner.clone(), Some(c)))
            }),
            Rule::NamespaceOwner if is_pod => {
                identity.namespace_labels.get("backstage.io/owner").map(|o| (entity_ref(o, "group", "default"), None))
            }
            Rule::EcsTaskTag => {
                ecs_tags.and_then(|t| t.get("backstage.io/owner")).map(|o| (entity_ref(o, "group", "default"), None))
            }
            Rule::SlurmAccount if !identity.slurm_account.is_empty() => {
                Some((entity_ref(&identity.slurm_account, "group", "default"), None))
            }
            Rule::UnixUser if !identity.user.is_empty() && !is_pod => {
                Some((entity_ref(&identity.user, "user", "default"), None))
            }
            _ => None,
        };
        if let Some((owner, component)) = found {
            let chain = catalog.ancestry(&owner);
            let name = |i: usize| chain.get(i).map(|g| g.name.clone()).unwrap_or_default();
            let system = component.and_then(|c| c.system.clone()).unwrap_or_default();
            return Ownership {
                team: if chain.is_empty() { owner.rsplit('/').next().unwrap_or_default().to_string() } else { name(0) },
                department: name(1),
                component: component.map(|c| c.name.clone()).unwrap_or_default(),
                system: system.rsplit('/').next().unwrap_or_default().to_string(),
                owner,
                rule: rule.name(),
            };
        }
    }
    Ownership::unallocated()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)], ns_owner: Option<&str>) -> Identity {
        Identity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "team-x".into(),
            pod: "p".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            namespace_labels: ns_owner
                .map(|o| [("backstage.io/owner".to_string(), o.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_owned_through_its_component_with_team_department_and_system() {
        let c = Catalog::example();
        let o = resolve(
            &c,
            &Rule::DEFAULT_ORDER,
            &pod(&[("backstage.io/kubernetes-id", "ranker")], Some("group:default/nlp")),
            None,
        );
        assert_eq!(
            (o.owner.as_str(), o.team.as_str(), o.department.as_str(), o.component.as_str(), o.system.as_str(), o.rule),
            ("group:default/recsys", "recsys", "applied-ml", "ranker", "recommendations", "kubernetes-id")
        );
    }

    #[test]
    fn a_label_selector_takes_precedence_over_the_kubernetes_id() {
        let c = Catalog::example();
        let labels = [("backstage.io/kubernetes-id", "ranker"), ("app.kubernetes.io/name", "jupyter")];
        let o = resolve(&c, &Rule::DEFAULT_ORDER, &pod(&labels, None), None);
        assert_eq!(
            (o.component.as_str(), o.team.as_str(), o.rule),
            ("jupyter-notebooks", "platform", "label-selector")
        );
    }

    #[test]
    fn then_the_namespace_owner_the_ecs_tag_the_slurm_account_and_the_user() {
        let c = Catalog::example();
        let o =
            resolve(&c, &Rule::DEFAULT_ORDER, &pod(&[("backstage.io/kubernetes-id", "unknown")], Some("speech")), None);
        assert_eq!(
            (o.owner.as_str(), o.department.as_str(), o.rule),
            ("group:default/speech", "applied-ml", "namespace-owner")
        );
        let task = Identity { kind: WorkloadKind::EcsTask, ecs_task_arn: "arn".into(), ..Default::default() };
        let tags: BTreeMap<String, String> =
            [("backstage.io/owner".to_string(), "group:default/vision".to_string())].into();
        assert_eq!(resolve(&c, &Rule::DEFAULT_ORDER, &task, Some(&tags)).rule, "ecs-task-tag");
        let job = Identity {
            kind: WorkloadKind::SlurmJob,
            slurm_job_id: "1".into(),
            slurm_account: "research".into(),
            user: "bob".into(),
            ..Default::default()
        };
        let o = resolve(&c, &Rule::DEFAULT_ORDER, &job, None);
        assert_eq!(
            (o.owner.as_str(), o.department.as_str(), o.rule),
            ("group:default/research", "research-lab", "slurm-account")
        );
        let user = Identity { kind: WorkloadKind::HostProcess, user: "alice".into(), ..Default::default() };
        let o = resolve(&c, &Rule::DEFAULT_ORDER, &user, None);
        assert_eq!((o.owner.as_str(), o.team.as_str(), o.rule), ("user:default/alice", "alice", "unix-user"));
        assert_eq!(resolve(&c, &Rule::DEFAULT_ORDER, &pod(&[], None), None).owner, "unallocated");
    }

    #[test]
    fn the_rule_order_is_configurable() {
        let c = Catalog::example();
        let p = pod(&[("backstage.io/kubernetes-id", "ranker")], Some("group:default/nlp"));
        let o = resolve(&c, &[Rule::NamespaceOwner, Rule::KubernetesId], &p, None);
        assert_eq!((o.team.as_str(), o.rule), ("nlp", "namespace-owner"));
        assert_eq!(resolve(&c, &[], &p, None).rule, "unallocated");
    }
}

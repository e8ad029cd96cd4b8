//! Who owns a workload, by rules tried in order (PRODUCT.md, "Who owns a workload"); the first that
//! matches wins and is recorded with the owner:
//!
//! 1. `label-selector` — a catalog component whose `backstage.io/kubernetes-label-selector` matches the
//!    pod's labels (it takes precedence, as in Backstage's Kubernetes plugin);
//! 2. `kubernetes-id` — a component whose `backstage.io/kubernetes-id` equals the pod's
//!    `backstage.io/kubernetes-id` label;
//! 3. `namespace-owner` — the pod's namespace label or annotation `backstage.io/owner`;
//! 4. `ecs-task-tag` — the ECS task's `backstage.io/owner` tag;
//! 5. `slurm-account` — the Slurm job's account: a catalog Group of that name, else the team of a catalog
//!    User of that name;
//! 6. `unix-user` — the team of the catalog User named like the process's Unix user
//!    ([`Catalog::team_of_user`]); the owner is that team, the person stays visible as the `user` dimension;
//! 7. otherwise `unattributed`: the workload held a GPU but no rule names who pays; never dropped, always
//!    visible. A Slurm account or user the catalog does not know matches no rule: people and accounts are
//!    never made up into teams. Pure.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, Component, entity_ref};
use gpucost_types::batch::{Identity, WorkloadKind};
pub use gpucost_types::ownership::{Ownership, UNATTRIBUTED};

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
                let group = entity_ref(&identity.slurm_account, "group", "default");
                if catalog.groups.contains_key(&group) {
                    Some((group, None))
                } else {
                    user_team(catalog, &identity.slurm_account)
                }
            }
            Rule::UnixUser if !identity.user.is_empty() && !is_pod => user_team(catalog, &identity.user),
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
    Ownership::unattributed()
}

/// The team that pays for the catalog User named `user`, as a rule's match.
fn user_team<'c>(catalog: &'c Catalog, user: &str) -> Option<(String, Option<&'c Component>)> {
    catalog.team_of_user(&entity_ref(user, "user", "default")).map(|g| (g.entity_ref.clone(), None))
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
        assert_eq!((o.owner.as_str(), o.team.as_str(), o.rule), ("group:default/vision", "vision", "unix-user"));
        assert_eq!(resolve(&c, &Rule::DEFAULT_ORDER, &pod(&[], None), None), Ownership::unattributed());
    }

    fn host(user: &str) -> Identity {
        Identity { kind: WorkloadKind::HostProcess, user: user.into(), ..Default::default() }
    }

    fn slurm(account: &str, user: &str) -> Identity {
        Identity {
            kind: WorkloadKind::SlurmJob,
            slurm_job_id: "42".into(),
            slurm_account: account.into(),
            user: user.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_user_in_several_teams_is_paid_for_by_the_first_team_of_its_member_of() {
        let o = resolve(&Catalog::example(), &Rule::DEFAULT_ORDER, &host("bob"), None);
        assert_eq!(
            (o.owner.as_str(), o.team.as_str(), o.department.as_str(), o.rule),
            ("group:default/nlp", "nlp", "applied-ml", "unix-user")
        );
    }

    #[test]
    fn a_user_the_catalog_does_not_know_is_unattributed_not_a_team() {
        let o = resolve(&Catalog::example(), &Rule::DEFAULT_ORDER, &host("erin"), None);
        assert_eq!(o, Ownership::unattributed());
        assert_eq!((o.owner.as_str(), o.team.as_str(), o.rule), ("unattributed", "unattributed", "unattributed"));
    }

    #[test]
    fn a_slurm_account_is_a_team_only_when_the_catalog_has_it() {
        let c = Catalog::example();
        let o = resolve(&c, &Rule::DEFAULT_ORDER, &slurm("speech", "erin"), None);
        assert_eq!((o.owner.as_str(), o.team.as_str(), o.rule), ("group:default/speech", "speech", "slurm-account"));
        assert_eq!(resolve(&c, &Rule::DEFAULT_ORDER, &slurm("physics-2024", "erin"), None), Ownership::unattributed());
        // An unknown account matches no rule, so the next one (the job's user) is tried.
        let o = resolve(&c, &Rule::DEFAULT_ORDER, &slurm("physics-2024", "carol"), None);
        assert_eq!((o.owner.as_str(), o.rule), ("group:default/platform", "unix-user"));
    }

    #[test]
    fn a_slurm_account_named_after_a_catalog_user_is_that_users_team() {
        let o = resolve(&Catalog::example(), &Rule::DEFAULT_ORDER, &slurm("bob", ""), None);
        assert_eq!((o.owner.as_str(), o.team.as_str(), o.rule), ("group:default/nlp", "nlp", "slurm-account"));
    }

    #[test]
    fn the_rule_order_is_configurable() {
        let c = Catalog::example();
        let p = pod(&[("backstage.io/kubernetes-id", "ranker")], Some("group:default/nlp"));
        let o = resolve(&c, &[Rule::NamespaceOwner, Rule::KubernetesId], &p, None);
        assert_eq!((o.team.as_str(), o.rule), ("nlp", "namespace-owner"));
        assert_eq!(resolve(&c, &[], &p, None).rule, "unattributed");
    }
}

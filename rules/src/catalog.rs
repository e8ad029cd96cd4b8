//! The Backstage catalog, as far as cost attribution needs it: Groups (with their parent, for the team →
//! department → organisation roll-up), Systems and Components (owner, system, and how Backstage's Kubernetes
//! plugin finds their pods: the `backstage.io/kubernetes-label-selector` annotation, else
//! `backstage.io/kubernetes-id`), and Users with the groups they are members of, so that a person's GPU time
//! is paid by their team ([`Catalog::team_of_user`]). Read from `catalog-info.yaml` files; the REST client fills
//! the same type. The type is also kept as JSON in the ledger (the last good Backstage copy): fields added
//! later default, so a copy kept by an older collector still reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// `group:<namespace>/<name>`.
    pub entity_ref: String,
    pub name: String,
    pub parent: Option<String>,
    /// `metadata.annotations` (a cost centre, for one).
    pub annotations: BTreeMap<String, String>,
    /// `spec.type` (`team`, `department`, `organization`, …), lower case.
    #[serde(default)]
    pub group_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// `component:<namespace>/<name>` (or `resource:…`).
    pub entity_ref: String,
    pub name: String,
    pub owner: String,
    pub system: Option<String>,
    pub kubernetes_id: Option<String>,
    /// `key=value` pairs that must all match a pod's labels.
    pub label_selector: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub groups: BTreeMap<String, Group>,
    pub components: Vec<Component>,
    /// System ref → owner ref.
    pub systems: BTreeMap<String, String>,
    /// User ref → the groups it is a member of.
    pub users: BTreeMap<String, Vec<String>>,
    /// User ref → the group named by its [`COST_TEAM_ANNOTATION`], when it has one.
    #[serde(default)]
    pub user_cost_teams: BTreeMap<String, String>,
}

/// The annotation on a catalog User naming the group that pays for that person's GPU time, when the
/// membership rule of [`Catalog::team_of_user`] would choose another.
pub const COST_TEAM_ANNOTATION: &str = "gpucost.io/cost-team";

#[derive(Deserialize)]
struct Entity {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct Spec {
    owner: Option<String>,
    parent: Option<String>,
    system: Option<String>,
    #[serde(rename = "memberOf", default)]
    member_of: Vec<String>,
    #[serde(rename = "type", default)]
    group_type: Option<String>,
}

/// A full entity reference (`kind:namespace/name`, lower case) from a possibly short one (`name`,
/// `namespace/name`, `kind:name`).
pub fn entity_ref(short: &str, default_kind: &str, default_namespace: &str) -> String {
    let (kind, rest) = short.split_once(':').unwrap_or((default_kind, short));
    let (namespace, name) = rest.split_once('/').unwrap_or((default_namespace, rest));
    format!("{kind}:{namespace}/{name}").to_ascii_lowercase()
}

/// Parses a label selector in the form Backstage's Kubernetes plugin takes (`a=b,c=d`); `None` if it uses
/// anything but equality.
fn selector(s: &str) -> Option<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=')?;
            (!k.ends_with('!')).then(|| (k.trim().to_string(), v.trim_start_matches('=').trim().to_string()))
        })
        .collect()
}

impl Catalog {
    /// The cost centre of a team (a group's name): annotation `key` on the team's group, else on the nearest
    /// ancestor that has it.
    pub fn cost_center(&self, team: &str, key: &str) -> Option<String> {
        let mut group = self
            .groups
            .get(&entity_ref(team, "group", "default"))
            .or_else(|| self.groups.values().find(|g| g.name.eq_ignore_ascii_case(team)))?;
        for _ in 0..64 {
            if let Some(c) = group.annotations.get(key).filter(|c| !c.trim().is_empty()) {
                return Some(c.trim().to_string());
            }
            group = self.groups.get(group.parent.as_deref()?)?;
        }
        None
    }

    /// Adds the entities of one `catalog-info.yaml` text (several documents); `source` names it in errors.
    pub fn add_yaml(&mut self, source: &str, text: &str) -> Result<(), String> {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value =
                serde_norway::Value::deserialize(doc).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let e: Entity =
                serde_norway::from_value(value).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
            let namespace = e.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let kind = e.kind.to_ascii_lowercase();
            let this = entity_ref(&e.metadata.name, &kind, &namespace);
            match kind.as_str() {
                "group" => {
                    let parent = e.spec.parent.as_deref().map(|p| entity_ref(p, "group", &namespace));
                    self.groups.insert(
                        this.clone(),
                        Group {
                            entity_ref: this,
                            name: e.metadata.name,
                            parent,
                            annotations: e.metadata.annotations.clone(),
                            group_type: e.spec.group_type.unwrap_or_default().to_ascii_lowercase(),
                        },
                    );
                }
                "user" => {
                    let groups = e.spec.member_of.iter().map(|g| entity_ref(g, "group", &namespace)).collect();
                    match e.metadata.annotations.get(COST_TEAM_ANNOTATION).filter(|t| !t.trim().is_empty()) {
                        Some(team) => {
                            self.user_cost_teams.insert(this.clone(), entity_ref(team.trim(), "group", &namespace))
                        }
                        None => self.user_cost_teams.remove(&this),
                    };
                    self.users.insert(this, groups);
                }
                "system" => {
                    let owner = e.spec.owner.as_deref().map(|o| entity_ref(o, "group", &namespace)).unwrap_or_default();
                    self.systems.insert(this, owner);
                }
                "component" | "resource" => {
                    let Some(owner) = e.spec.owner.as_deref() else {
                        return Err(format!("{source}: document {}: {this} has no spec.owner", i + 1));
                    };
                    let annotations = &e.metadata.annotations;
                    self.components.push(Component {
                        entity_ref: this,
                        name: e.metadata.name.clone(),
                        owner: entity_ref(owner, "group", &namespace),
                        system: e.spec.system.as_deref().map(|s| entity_ref(s, "system", &namespace)),
                        kubernetes_id: annotations.get("backstage.io/kubernetes-id").cloned(),
                        label_selector: annotations
                            .get("backstage.io/kubernetes-label-selector")
                            .and_then(|s| selector(s)),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The example company shipped in `examples/catalog/` (the demo's owners).
    pub fn example() -> Self {
        let mut c = Self::default();
        for (name, text) in [
            ("examples/catalog/org.yaml", include_str!("../../examples/catalog/org.yaml")),
            ("examples/catalog/components.yaml", include_str!("../../examples/catalog/components.yaml")),
            ("examples/catalog/users.yaml", include_str!("../../examples/catalog/users.yaml")),
        ] {
            c.add_yaml(name, text).expect("the shipped example catalog parses (tested)");
        }
        c
    }

    /// Whether the catalog has no entity at all (what a Backstage that lost its catalog answers).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.components.is_empty() && self.systems.is_empty() && self.users.is_empty()
    }

    /// The group that pays for the GPU time of the catalog User `user` (a full ref, `user:default/bob`): the
    /// group its `gpucost.io/cost-team` annotation names, else the first group of its `spec.memberOf` whose
    /// `spec.type` is `team`, else the first group of `spec.memberOf` at all — counting only groups the
    /// catalog has. `None` for a user the catalog does not know or whose groups it does not have: nobody is
    /// named to pay, rather than a team invented from a person's name.
    pub fn team_of_user(&self, user: &str) -> Option<&Group> {
        let member_of = self.users.get(user)?;
        if let Some(team) = self.user_cost_teams.get(user).and_then(|t| self.groups.get(t)) {
            return Some(team);
        }
        let known = || member_of.iter().filter_map(|g| self.groups.get(g));
        known().find(|g| g.group_type == "team").or_else(|| known().next())
    }

    /// Whether `owner` is `group` or belongs to it through the group tree.
    pub fn rolls_up_to(&self, owner: &str, group: &str) -> bool {
        owner == group || self.ancestry(owner).iter().any(|g| g.entity_ref == group)
    }

    /// The chain of groups from `group` up to the root: team, department, organisation, …
    pub fn ancestry(&self, group: &str) -> Vec<&Group> {
        let mut out = Vec::new();
        let mut at = self.groups.get(group);
        while let Some(g) = at {
            if out.iter().any(|x: &&Group| x.entity_ref == g.entity_ref) || out.len() > 16 {
                break; // a cycle in spec.parent
            }
            out.push(g);
            at = g.parent.as_deref().and_then(|p| self.groups.get(p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_company_parses_with_its_group_tree() {
        let c = Catalog::example();
        assert_eq!(c.groups.len(), 10);
        let chain: Vec<&str> = c.ancestry("group:default/vision").iter().map(|g| g.name.as_str()).collect();
        assert_eq!(chain, vec!["vision", "applied-ml", "acme-ai"]);
        let ranker = c.components.iter().find(|x| x.name == "ranker").unwrap();
        assert_eq!(
            (ranker.owner.as_str(), ranker.system.as_deref()),
            ("group:default/recsys", Some("system:default/recommendations"))
        );
        let notebooks = c.components.iter().find(|x| x.name == "jupyter-notebooks").unwrap();
        assert_eq!(notebooks.label_selector, Some(vec![("app.kubernetes.io/name".to_string(), "jupyter".to_string())]));
        assert_eq!(c.users["user:default/bob"], vec!["group:default/nlp", "group:default/research"]);
        assert!(c.rolls_up_to("group:default/vision", "group:default/applied-ml"));
        assert!(!c.rolls_up_to("group:default/vision", "group:default/research-lab"));
    }

    #[test]
    fn short_references_are_completed_and_errors_name_the_file_and_document() {
        assert_eq!(entity_ref("vision", "group", "default"), "group:default/vision");
        assert_eq!(entity_ref("user:ops/Alice", "group", "default"), "user:ops/alice");
        let mut c = Catalog::default();
        let e = c
            .add_yaml(
                "team.yaml",
                "kind: Group\nmetadata: {name: a}\n---\nkind: Component\nmetadata: {name: x}\nspec: {}\n",
            )
            .unwrap_err();
        assert!(e.starts_with("team.yaml: document 2:") && e.contains("no spec.owner"), "{e}");
        assert!(c.add_yaml("bad.yaml", "kind: [").unwrap_err().starts_with("bad.yaml: document 1:"));
    }

    #[test]
    fn a_cycle_in_the_group_tree_does_not_loop() {
        let mut c = Catalog::default();
        c.add_yaml("x", "kind: Group\nmetadata: {name: a}\nspec: {parent: b}\n---\nkind: Group\nmetadata: {name: b}\nspec: {parent: a}\n").unwrap();
        assert_eq!(c.ancestry("group:default/a").len(), 2);
    }

    #[test]
    fn a_user_is_paid_for_by_the_annotated_group_else_the_first_team_else_the_first_known_group() {
        let mut c = Catalog::example();
        assert_eq!(c.team_of_user("user:default/bob").map(|g| g.name.as_str()), Some("nlp"), "first of two teams");
        c.add_yaml(
            "more-users.yaml",
            "kind: User\nmetadata: {name: dana}\nspec: {memberOf: [applied-ml, ghost, speech]}\n---\n\
             kind: User\nmetadata: {name: eve}\nspec: {memberOf: [ghost, research-lab]}\n---\n\
             kind: User\nmetadata: {name: bob, annotations: {gpucost.io/cost-team: research}}\n\
             spec: {memberOf: [nlp, research]}\n---\n\
             kind: User\nmetadata: {name: finn}\nspec: {memberOf: [ghost]}\n",
        )
        .unwrap();
        let team = |u: &str| c.team_of_user(u).map(|g| g.name.as_str());
        assert_eq!(team("user:default/dana"), Some("speech"), "a team before a department listed first");
        assert_eq!(team("user:default/eve"), Some("research-lab"), "no team: the first group the catalog has");
        assert_eq!(team("user:default/bob"), Some("research"), "the annotation overrides membership");
        assert_eq!(team("user:default/finn"), None, "only groups the catalog does not have");
        assert_eq!(team("user:default/nobody"), None, "a user the catalog does not know");
    }

    #[test]
    fn a_catalog_kept_before_group_types_and_cost_teams_existed_still_reads() {
        let old = r#"{"groups":{"group:default/a":{"entity_ref":"group:default/a","name":"a","parent":null,"annotations":{}}},
                      "components":[],"systems":{},"users":{"user:default/u":["group:default/a"]}}"#;
        let c: Catalog = serde_json::from_str(old).unwrap();
        assert_eq!(c.team_of_user("user:default/u").map(|g| g.name.as_str()), Some("a"));
        assert!(!c.is_empty() && Catalog::default().is_empty());
    }
}

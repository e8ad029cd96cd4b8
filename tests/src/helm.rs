//! The agent chart's ClusterRole as real helm renders it.

use super::*;

/// (API group, resource, verb) of every rule of the agent chart's ClusterRole, as helm renders it.
pub fn agent_cluster_role_grants(helm: &Path) -> BTreeSet<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(helm)
        .args(["template", "gpucost-agent", "charts/gpucost-agent", "--namespace", "gpucost"])
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("gpucost-rbac-helm/config"))
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("gpucost-rbac-helm/cache"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("gpucost-rbac-helm/data"))
        .current_dir(root)
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut grants = BTreeSet::new();
    for doc in text.split("\n---\n") {
        let doc: serde_json::Value = serde_norway::from_str(doc).expect("a YAML document");
        if doc["kind"] != "ClusterRole" {
            continue;
        }
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
        };
        for rule in doc["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

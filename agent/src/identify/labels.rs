//! Which pod and namespace labels and annotations the agent keeps: an allow-list of exact keys and
//! `prefix/*` patterns. Everything else is dropped at the watcher, so the cache stays small and nothing
//! unexpected leaves the node.

use std::collections::BTreeMap;

/// The default allow-list.
pub const DEFAULT_ALLOW: &[&str] = &["backstage.io/*", "mlflow.org/*", "app.kubernetes.io/*", "team", "cost-center"];

#[derive(Debug, Clone)]
pub struct LabelAllow {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl LabelAllow {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for p in patterns {
            match p.as_ref().strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_string()),
                None => exact.push(p.as_ref().to_string()),
            }
        }
        Self { exact, prefixes }
    }

    pub fn allows(&self, key: &str) -> bool {
        self.exact.iter().any(|e| e == key) || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// The allowed entries of `maps`, earlier maps winning on equal keys.
    pub fn pick<'a>(&self, maps: impl IntoIterator<Item = &'a BTreeMap<String, String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for m in maps {
            for (k, v) in m {
                if self.allows(k) {
                    out.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        out
    }
}

impl Default for LabelAllow {
    fn default() -> Self {
        Self::new(DEFAULT_ALLOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keys_and_prefix_patterns_are_kept_and_nothing_else() {
        let allow = LabelAllow::default();
        let labels: BTreeMap<String, String> = [
            ("backstage.io/kubernetes-id", "ranker"),
            ("mlflow.org/model-name", "ranker"),
            ("team", "recsys"),
            ("teams", "no"),
            ("pod-template-hash", "7d9f8c"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let kept = allow.pick([&labels]);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            vec!["backstage.io/kubernetes-id", "mlflow.org/model-name", "team"]
        );
    }
}

//! Which pod and namespace labels and annotations the agent keeps: an allow-list of exact keys and
//! `prefix/*` patterns (`--label-allow`), and the exact keys the collector asks for ([`CollectorKeys`]:
//! those its catalog's label selectors and owner rules read, bounded by `gpucost_proto::label_keys`).
//! Everything else is dropped at the watcher, so the cache stays small and nothing unexpected leaves the
//! node.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

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

    /// This allow-list and the exact keys `extra`.
    pub fn with(&self, extra: &[String]) -> Self {
        let mut wider = self.clone();
        wider.exact.extend(extra.iter().filter(|k| !self.allows(k)).cloned());
        wider
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

/// What the collector last said about label keys: whether a stream has opened yet, and the keys it asked
/// for (`generation` counts the changes, so a cache can tell which set it was listed with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    pub heard: bool,
    pub generation: u64,
    pub keys: Arc<[String]>,
}

/// The label keys the collector asks for, shared by the uplink, which hears them, and the pod and
/// namespace watchers, which keep them.
#[derive(Debug, Clone)]
pub struct CollectorKeys(Arc<watch::Sender<Asked>>);

impl Default for CollectorKeys {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Asked::default())))
    }
}

impl CollectorKeys {
    /// What a stream's collector said when it opened (the `gpucost-label-keys` header; none: it asks for
    /// nothing), or in an ack, held to the wire's bounds.
    pub fn hear(&self, keys: gpucost_proto::label_keys::Bounded) {
        for (key, why) in &keys.refused {
            tracing::warn!(key, why, "ignored a label key the collector asked for");
        }
        self.0.send_if_modified(|asked| {
            let changed = *asked.keys != *keys.keys;
            if changed {
                tracing::info!(keys = ?keys.keys, "the collector asks for these label keys; re-listing pods and namespaces");
                asked.generation += 1;
                asked.keys = keys.keys.into();
            }
            let first = !asked.heard;
            asked.heard = true;
            changed || first
        });
    }

    pub fn now(&self) -> Asked {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Asked> {
        self.0.subscribe()
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

    #[test]
    fn keys_the_collector_asks_for_are_kept_besides_the_flags() {
        let labels: BTreeMap<String, String> =
            [("tier", "gold"), ("team", "recsys"), ("zone", "a")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let keys = CollectorKeys::default();
        assert!(!keys.now().heard);
        keys.hear(gpucost_proto::label_keys::parse_header("tier,team,bad key"));
        let asked = keys.now();
        assert!(asked.heard);
        assert_eq!((asked.generation, &*asked.keys), (1, &["tier".to_string(), "team".to_string()][..]));
        let kept = LabelAllow::default().with(&asked.keys).pick([&labels]);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["team", "tier"], "zone is neither allowed nor asked for");
        keys.hear(gpucost_proto::label_keys::parse_header("team,tier"));
        assert_eq!(keys.now().generation, 2, "another order is another set");
        keys.hear(Default::default());
        assert!(keys.now().keys.is_empty(), "a collector that asks for nothing leaves the flags alone");
    }
}

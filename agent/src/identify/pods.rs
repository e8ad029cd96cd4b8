//! The node-local pod cache: every pod scheduled on this node (a `kube` watcher on
//! `spec.nodeName=$NODE_NAME`) and every namespace's labels, reduced to what attribution needs: UID,
//! namespace, name, containers by container ID, owning controller (a ReplicaSet resolved to its
//! Deployment), and allow-listed labels and annotations.
//!
//! The watcher re-lists after API-server restarts and expired watches (`410 Gone`): a re-list replaces
//! the cache whole, so pods deleted while the watch was down disappear. It also re-lists when the collector
//! asks for other label keys (`labels::CollectorKeys`), since the cached pods hold only the keys kept when
//! they were listed. The cache holds at most `MAX_PODS` pods, far above a node's pod limit (110 by default
//! on EKS), so memory stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// More pods than any node runs; past it new pods are not cached (and a warning is logged).
pub const MAX_PODS: usize = 2_000;

/// What attribution needs to know about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub controller_kind: String,
    pub controller_name: String,
    /// Allow-listed labels and annotations (labels win on equal keys).
    pub labels: BTreeMap<String, String>,
    /// Container ID (without the `containerd://` scheme) → container name.
    pub containers: HashMap<String, String>,
}

#[derive(Default)]
struct Index {
    pods: HashMap<String, PodInfo>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    pods_listed: bool,
    namespaces_listed: bool,
    /// The generation of the collector's label keys (`labels::Asked`) the last pod and namespace lists
    /// kept.
    pods_keys: u64,
    namespaces_keys: u64,
}

/// Shared between the watcher tasks (writers) and the identifier (reader).
#[derive(Clone, Default)]
pub struct PodCache {
    inner: Arc<RwLock<Index>>,
    listed: Arc<tokio::sync::Notify>,
}

impl PodCache {
    /// Whether pods and namespaces have both been listed once.
    pub fn is_ready(&self) -> bool {
        let idx = self.inner.read().unwrap_or_else(|e| e.into_inner());
        idx.pods_listed && idx.namespaces_listed
    }

    /// Waits until the first lists are in, at most `timeout`; returns whether they are.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.listed.notified();
            if self.is_ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_ready();
            }
        }
    }

    /// The pod with this UID, and its namespace's allow-listed labels.
    pub fn by_uid(&self, uid: &str) -> Option<(PodInfo, BTreeMap<String, String>)> {
        let idx = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let pod = idx.pods.get(uid)?.clone();
        let ns = idx.namespaces.get(&pod.namespace).cloned().unwrap_or_default();
        Some((pod, ns))
    }

    /// The pod named `namespace/name` (the kubelet's pod-resources API names pods, not UIDs).
    pub fn by_name(&self, namespace: &str, name: &str) -> Option<(PodInfo, BTreeMap<String, String>)> {
        let idx = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let pod = idx.pods.values().find(|p| p.namespace == namespace && p.name == name)?.clone();
        let ns = idx.namespaces.get(namespace).cloned().unwrap_or_default();
        Some((pod, ns))
    }

    /// Waits until the collector has said which label keys it asks for (a first stream opened) and pods and
    /// namespaces were listed with them, at most `timeout`; returns whether they were.
    pub async fn wait_listed_with(&self, keys: &super::labels::CollectorKeys, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut asked = keys.subscribe();
        loop {
            let notified = self.listed.notified();
            let now = asked.borrow_and_update().clone();
            {
                let idx = self.inner.read().unwrap_or_else(|e| e.into_inner());
                if now.heard && idx.pods_keys >= now.generation && idx.namespaces_keys >= now.generation {
                    return true;
                }
            }
            tokio::select! {
                () = notified => {}
                _ = asked.changed() => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Records that the pods (or namespaces) just listed kept the label keys of `generation`.
    pub fn listed_with(&self, namespaces: bool, generation: u64) {
        let mut idx = self.inner.write().unwrap_or_else(|e| e.into_inner());
        *(if namespaces { &mut idx.namespaces_keys } else { &mut idx.pods_keys }) = generation;
        drop(idx);
        self.listed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn apply_pod(&self, pod: PodInfo) {
        let mut idx = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if idx.pods.len() >= MAX_PODS && !idx.pods.contains_key(&pod.uid) {
            tracing::warn!(limit = MAX_PODS, pod = %pod.name, "pod cache full; not caching this pod");
            return;
        }
        idx.pods.insert(pod.uid.clone(), pod);
    }

    pub fn delete_pod(&self, uid: &str) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).pods.remove(uid);
    }

    /// Replaces every pod: the end of a (re-)list.
    pub fn replace_pods(&self, pods: Vec<PodInfo>) {
        let mut idx = self.inner.write().unwrap_or_else(|e| e.into_inner());
        idx.pods = pods.into_iter().take(MAX_PODS).map(|p| (p.uid.clone(), p)).collect();
        idx.pods_listed = true;
        drop(idx);
        self.listed.notify_waiters();
    }

    pub fn apply_namespace(&self, name: String, labels: BTreeMap<String, String>) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).namespaces.insert(name, labels);
    }

    pub fn delete_namespace(&self, name: &str) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).namespaces.remove(name);
    }

    pub fn replace_namespaces(&self, namespaces: Vec<(String, BTreeMap<String, String>)>) {
        let mut idx = self.inner.write().unwrap_or_else(|e| e.into_inner());
        idx.namespaces = namespaces.into_iter().collect();
        idx.namespaces_listed = true;
        drop(idx);
        self.listed.notify_waiters();
    }
}

/// The controller owning a pod: a ReplicaSet named `<deployment>-<pod-template-hash>` is reported as
/// its Deployment (the hash is the pod's `pod-template-hash` label), so no extra API call is needed.
pub fn controller(owner_kind: &str, owner_name: &str, labels: &BTreeMap<String, String>) -> (String, String) {
    if owner_kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = owner_name.strip_suffix(hash.as_str()).and_then(|s| s.strip_suffix('-'))
    {
        return ("Deployment".into(), deployment.into());
    }
    (owner_kind.into(), owner_name.into())
}

/// Strips the runtime scheme from a container status's `containerID` (`containerd://<id>`).
pub fn container_id(status_id: &str) -> &str {
    status_id.split_once("://").map_or(status_id, |(_, id)| id)
}

#[cfg(feature = "node")]
pub mod watch {
    //! The `kube` watchers that fill a `PodCache`.

    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::{Api, Client};
    use tokio_stream::StreamExt;

    use super::super::labels::{CollectorKeys, LabelAllow};
    use super::*;

    /// Runs `watch` with `allow` widened by the keys the collector asks for, and again (a re-list) whenever
    /// they change; `watch` gets the allow-list and the keys' generation.
    async fn with_collector_keys<W: Future<Output = ()>>(
        allow: LabelAllow,
        keys: CollectorKeys,
        mut watch: impl FnMut(LabelAllow, u64) -> W,
    ) {
        let mut asked = keys.subscribe();
        loop {
            let now = asked.borrow_and_update().clone();
            let watching = watch(allow.with(&now.keys), now.generation);
            tokio::pin!(watching);
            loop {
                tokio::select! {
                    () = &mut watching => return,
                    // `keys` is held here, so the channel stays open.
                    Ok(()) = asked.changed() => if asked.borrow().generation != now.generation { break },
                }
            }
        }
    }

    /// Logs a failed list or watch of `resource` in API `group` (the watcher retries with backoff). When the
    /// agent's role does not allow the call (403), says which verb on which resource is missing, as an error,
    /// and what goes wrong until then (`consequence`): otherwise the only sign would be a quietly empty cache.
    pub(crate) fn watch_failed(resource: &str, group: &str, e: &watcher::Error, consequence: &str) {
        let (verb, status) = match e {
            watcher::Error::InitialListFailed(kube::Error::Api(s)) => ("list", s.as_ref()),
            watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s)) => ("watch", s.as_ref()),
            watcher::Error::WatchError(s) => ("watch", s.as_ref()),
            _ => return tracing::warn!(resource, error = %e, "watch failed; retrying"),
        };
        let group = if group.is_empty() { "core".to_string() } else { group.to_string() };
        if status.code == 403 {
            tracing::error!(
                resource,
                verb,
                api_group = %group,
                error = %status.message,
                "the agent's role does not allow it to {verb} {resource} (API group {group}, cluster-wide): grant it, as the gpucost-agent chart's ClusterRole does; until then {consequence}"
            );
        } else {
            tracing::warn!(resource, verb, error = %e, "watch failed; retrying");
        }
    }

    /// Reduces a Pod object to what the cache keeps.
    pub fn pod_info(pod: &Pod, allow: &LabelAllow) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone()?;
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let (controller_kind, controller_name) = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| controller(&o.kind, &o.name, &labels))
            .unwrap_or_default();
        let status = pod.status.as_ref();
        let containers = status
            .into_iter()
            .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
            .filter_map(|c| Some((container_id(c.container_id.as_deref()?).to_string(), c.name.clone())))
            .collect();
        Some(PodInfo {
            uid,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            controller_kind,
            controller_name,
            labels: allow.pick([&labels, &annotations]),
            containers,
        })
    }

    /// Watches the pods on `node` into `cache`, for ever (the watcher re-lists and backs off by itself),
    /// keeping the labels `allow` and the collector's `keys` name.
    pub async fn pods(client: Client, node: String, cache: PodCache, allow: LabelAllow, keys: CollectorKeys) {
        with_collector_keys(allow, keys, |allow, generation| {
            watch_pods(client.clone(), node.clone(), cache.clone(), allow, generation)
        })
        .await
    }

    async fn watch_pods(client: Client, node: String, cache: PodCache, allow: LabelAllow, generation: u64) {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let stream = watcher::watcher(api, config).default_backoff();
        tokio::pin!(stream);
        let mut relist = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(p)) => {
                    if let Some(info) = pod_info(&p, &allow) {
                        cache.apply_pod(info);
                    }
                }
                Ok(Event::Delete(p)) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        cache.delete_pod(uid);
                    }
                }
                Ok(Event::Init) => relist.clear(),
                Ok(Event::InitApply(p)) => relist.extend(pod_info(&p, &allow)),
                Ok(Event::InitDone) => {
                    cache.replace_pods(std::mem::take(&mut relist));
                    cache.listed_with(false, generation);
                    tracing::info!(pods = cache.len(), %node, "pod cache (re)listed");
                }
                Err(e) => watch_failed("pods", "", &e, "its workloads go unnamed"),
            }
        }
    }

    /// Watches every namespace's allow-listed labels and annotations (and the collector's `keys`) into
    /// `cache`.
    pub async fn namespaces(client: Client, cache: PodCache, allow: LabelAllow, keys: CollectorKeys) {
        with_collector_keys(allow, keys, |allow, generation| {
            watch_namespaces(client.clone(), cache.clone(), allow, generation)
        })
        .await
    }

    async fn watch_namespaces(client: Client, cache: PodCache, allow: LabelAllow, generation: u64) {
        let api: Api<Namespace> = Api::all(client);
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        tokio::pin!(stream);
        let mut relist = Vec::new();
        let reduce = |n: &Namespace| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let annotations = n.metadata.annotations.clone().unwrap_or_default();
            (n.metadata.name.clone().unwrap_or_default(), allow.pick([&labels, &annotations]))
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(n)) => {
                    let (name, labels) = reduce(&n);
                    cache.apply_namespace(name, labels);
                }
                Ok(Event::Delete(n)) => cache.delete_namespace(n.metadata.name.as_deref().unwrap_or_default()),
                Ok(Event::Init) => relist.clear(),
                Ok(Event::InitApply(n)) => relist.push(reduce(&n)),
                Ok(Event::InitDone) => {
                    cache.replace_namespaces(std::mem::take(&mut relist));
                    cache.listed_with(true, generation);
                }
                Err(e) => watch_failed("namespaces", "", &e, "namespace owners and labels are unknown"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicaset_is_reported_as_its_deployment() {
        let labels: BTreeMap<String, String> = [("pod-template-hash".to_string(), "7d9f8c6b5".to_string())].into();
        assert_eq!(
            controller("ReplicaSet", "ranker-serving-7d9f8c6b5", &labels),
            ("Deployment".into(), "ranker-serving".into())
        );
        assert_eq!(controller("ReplicaSet", "odd-name", &labels), ("ReplicaSet".into(), "odd-name".into()));
        assert_eq!(controller("Job", "train-v3", &labels), ("Job".into(), "train-v3".into()));
    }

    #[test]
    fn a_relist_replaces_the_cache_whole() {
        let cache = PodCache::default();
        let pod = |uid: &str| PodInfo {
            uid: uid.into(),
            namespace: "ml".into(),
            name: format!("p-{uid}"),
            ..Default::default()
        };
        cache.apply_pod(pod("a"));
        cache.apply_pod(pod("b"));
        cache.replace_pods(vec![pod("b"), pod("c")]);
        assert!(cache.by_uid("a").is_none(), "deleted while the watch was down");
        assert!(cache.by_uid("c").is_some());
        assert_eq!(cache.by_name("ml", "p-b").map(|p| p.0.uid), Some("b".into()));
    }

    #[test]
    fn container_ids_lose_their_runtime_scheme() {
        assert_eq!(container_id("containerd://4f2c8e"), "4f2c8e");
        assert_eq!(container_id("cri-o://abc"), "abc");
        assert_eq!(container_id("abc"), "abc");
    }
}

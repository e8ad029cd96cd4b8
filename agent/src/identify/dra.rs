//! GPUs allocated through Kubernetes Dynamic Resource Allocation (resource.k8s.io/v1): who holds them.
//!
//! The kubelet's pod-resources API names, for each container, the claims it uses and, per claim, the DRA
//! driver, pool and device allocated (`gpu.nvidia.com`, the node's name, `gpu-0`). It does not say which GPU
//! that is: the driver's ResourceSlices for this node do. NVIDIA's driver publishes each device with
//! attributes `uuid` (`GPU-…` or `MIG-…`), and for MIG devices `parentUUID` and `profile`; a MIG device it
//! creates only when a claim asks for it ("dynamic MIG") has no `uuid` in the slice. Such a device is
//! resolved from the claim's status (`status.devices[]` whose `data` names the UUID, as the driver is to
//! publish it) or else from NVML's MIG list: the one MIG device of that profile on that parent which no
//! slice names.
//!
//! A pod holding a DRA-allocated GPU is its holder exactly as with a device-plugin allocation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pod_resources::{Allocation, ClaimedDevice};
use crate::reading::GpuDevice;

/// The DRA driver of NVIDIA's GPUs.
pub const NVIDIA_GPU_DRIVER: &str = "gpu.nvidia.com";

/// How often a claim whose device could not be resolved is read again.
const CLAIM_REREAD: Duration = Duration::from_secs(30);

/// A device as its driver publishes it in a ResourceSlice, reduced to what names the GPU behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceDevice {
    pub pool: String,
    pub name: String,
    /// A whole GPU's `GPU-…` or a MIG device's `MIG-…`; `None` for a MIG device made only when allocated.
    pub uuid: Option<String>,
    /// A MIG device's GPU.
    pub parent_uuid: Option<String>,
    /// A MIG device's profile, e.g. `1g.10gb`.
    pub profile: Option<String>,
}

/// The string attribute `name` of a device published by `driver`: attribute names are bare (in the
/// driver's own domain) or qualified with it (`gpu.nvidia.com/uuid`). A null value is no value.
fn string_attribute(attributes: &Value, driver: &str, name: &str) -> Option<String> {
    let value = attributes.get(name).or_else(|| attributes.get(format!("{driver}/{name}")))?;
    value.get("string").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The devices of a ResourceSlice (resource.k8s.io/v1, as JSON) when `driver` published it; none otherwise.
/// Also reads v1beta1's shape, whose attributes sit under `basic`.
pub fn slice_devices(slice: &Value, driver: &str) -> Vec<SliceDevice> {
    let spec = &slice["spec"];
    if spec["driver"].as_str() != Some(driver) {
        return Vec::new();
    }
    let pool = spec["pool"]["name"].as_str().unwrap_or_default();
    let devices = spec["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
    devices
        .iter()
        .filter_map(|d| {
            let name = d["name"].as_str()?;
            let attributes = d.get("attributes").or_else(|| d.get("basic").and_then(|b| b.get("attributes")))?;
            Some(SliceDevice {
                pool: pool.to_string(),
                name: name.to_string(),
                uuid: string_attribute(attributes, driver, "uuid"),
                parent_uuid: string_attribute(attributes, driver, "parentUUID"),
                profile: string_attribute(attributes, driver, "profile"),
            })
        })
        .collect()
}

/// Where a claimed device is allocated from: (claim namespace, claim name, pool, device).
pub type ClaimKey = (String, String, String, String);

fn claim_key(c: &ClaimedDevice) -> ClaimKey {
    (c.claim_namespace.clone(), c.claim.clone(), c.pool.clone(), c.device.clone())
}

/// The GPU or MIG UUIDs a ResourceClaim's status names for `driver`'s devices, keyed by (pool, device): a
/// string under a key `uuid` (any case) anywhere in a `status.devices[]` entry's `data` that names a GPU
/// (`GPU-…`) or MIG device (`MIG-…`).
pub fn status_uuids(claim: &Value, driver: &str) -> BTreeMap<(String, String), String> {
    fn find(v: &Value, depth: u32) -> Option<String> {
        let is_uuid = |s: &str| s.starts_with("GPU-") || s.starts_with("MIG-");
        match v {
            Value::Object(m) if depth < 4 => m
                .iter()
                .find_map(|(k, v)| {
                    v.as_str().filter(|s| k.eq_ignore_ascii_case("uuid") && is_uuid(s)).map(str::to_string)
                })
                .or_else(|| m.values().find_map(|v| find(v, depth + 1))),
            Value::Array(a) if depth < 4 => a.iter().find_map(|v| find(v, depth + 1)),
            _ => None,
        }
    }
    let entries = claim["status"]["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|d| d["driver"].as_str() == Some(driver))
        .filter_map(|d| {
            let uuid = find(&d["data"], 0)?;
            Some(((d["pool"].as_str()?.to_string(), d["device"].as_str()?.to_string()), uuid))
        })
        .collect()
}

/// What [`resolve`] could and could not name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub allocations: Vec<Allocation>,
    /// Claimed devices whose GPU is not known (yet), each with why.
    pub unresolved: Vec<(ClaimedDevice, &'static str)>,
}

/// The GPU behind each claimed device, among this node's `devices`: from the slice's `uuid`, else the
/// claim's status (`from_status`), else the only MIG device of the slice device's parent and profile that
/// neither a slice nor another claim names.
pub fn resolve(
    claimed: &[ClaimedDevice],
    slices: &HashMap<(String, String), SliceDevice>,
    from_status: &HashMap<ClaimKey, String>,
    devices: &[GpuDevice],
) -> Resolved {
    let on_node = |uuid: &str| devices.iter().any(|d| d.uuid == uuid);
    let mut out = Resolved::default();
    let mut named: HashMap<ClaimKey, String> = HashMap::new();
    let mut pending: Vec<&ClaimedDevice> = Vec::new();
    for c in claimed {
        let Some(dev) = slices.get(&(c.pool.clone(), c.device.clone())) else {
            out.unresolved.push((c.clone(), "no ResourceSlice of this node publishes the device"));
            continue;
        };
        let uuid = dev.uuid.clone().or_else(|| from_status.get(&claim_key(c)).cloned());
        match uuid {
            Some(u) if on_node(&u) => {
                named.insert(claim_key(c), u);
            }
            Some(_) => out.unresolved.push((c.clone(), "the device's UUID is not a GPU NVML lists on this node")),
            None if dev.parent_uuid.is_some() && dev.profile.is_some() => pending.push(c),
            None => out.unresolved.push((c.clone(), "the device has no uuid, parentUUID or profile attribute")),
        }
    }
    // MIG devices made on demand: by (parent, profile), the MIG devices no slice and no other claim names.
    let taken: HashSet<&str> =
        slices.values().filter_map(|d| d.uuid.as_deref()).chain(named.values().map(String::as_str)).collect();
    let mut groups: BTreeMap<(String, String), BTreeSet<ClaimKey>> = BTreeMap::new();
    for c in &pending {
        let dev = &slices[&(c.pool.clone(), c.device.clone())];
        let group = (dev.parent_uuid.clone().unwrap_or_default(), dev.profile.clone().unwrap_or_default());
        groups.entry(group).or_default().insert(claim_key(c));
    }
    let mut from_nvml: HashMap<ClaimKey, String> = HashMap::new();
    for ((parent, profile), keys) in &groups {
        let free: Vec<&GpuDevice> = devices
            .iter()
            .filter(|d| {
                d.mig_parent_uuid.as_deref() == Some(parent)
                    && d.mig_profile.as_deref() == Some(profile)
                    && !taken.contains(d.uuid.as_str())
            })
            .collect();
        if let ([key], [mig]) = (&keys.iter().collect::<Vec<_>>()[..], &free[..]) {
            from_nvml.insert((*key).clone(), mig.uuid.clone());
        }
    }
    for c in pending {
        match from_nvml.get(&claim_key(c)) {
            Some(u) => {
                named.insert(claim_key(c), u.clone());
            }
            None => out.unresolved.push((
                c.clone(),
                "a MIG device made on demand: neither the claim's status nor NVML's MIG list tells which one",
            )),
        }
    }
    for c in claimed {
        if let Some(gpu_uuid) = named.get(&claim_key(c)) {
            out.allocations.push(Allocation {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                container: c.container.clone(),
                gpu_uuid: gpu_uuid.clone(),
            });
        }
    }
    out
}

/// This node's ResourceSlices of one driver, kept by a watcher (writer) for the identifier (reader).
#[derive(Clone, Default)]
pub struct SliceCache {
    inner: Arc<RwLock<SliceIndex>>,
    listed: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct SliceIndex {
    /// Slice name → its devices.
    slices: HashMap<String, Vec<SliceDevice>>,
    listed: bool,
}

impl SliceCache {
    pub fn apply(&self, slice: String, devices: Vec<SliceDevice>) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).slices.insert(slice, devices);
    }

    pub fn delete(&self, slice: &str) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).slices.remove(slice);
    }

    /// Replaces every slice: the end of a (re-)list.
    pub fn replace(&self, slices: Vec<(String, Vec<SliceDevice>)>) {
        let mut idx = self.inner.write().unwrap_or_else(|e| e.into_inner());
        idx.slices = slices.into_iter().collect();
        idx.listed = true;
        drop(idx);
        self.listed.notify_waiters();
    }

    /// Marks the cache as done listing without slices: the API does not serve resource.k8s.io/v1.
    pub fn give_up(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).listed = true;
        self.listed.notify_waiters();
    }

    pub fn is_listed(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).listed
    }

    /// Waits until the first list is in, at most `timeout`; returns whether it is.
    pub async fn wait_listed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.listed.notified();
            if self.is_listed() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_listed();
            }
        }
    }

    /// Every device, by (pool, device name).
    pub fn devices(&self) -> HashMap<(String, String), SliceDevice> {
        let idx = self.inner.read().unwrap_or_else(|e| e.into_inner());
        idx.slices.values().flatten().map(|d| ((d.pool.clone(), d.name.clone()), d.clone())).collect()
    }
}

/// A ResourceClaim, read when needed (as JSON).
pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// Reads one ResourceClaim: the Kubernetes API on a node, a map in tests.
pub trait ClaimReader: Send + Sync {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> ClaimFuture<'a>;
}

/// DRA holders: the driver's slices, and the claims read for devices the slices leave unnamed.
pub struct Dra {
    driver: String,
    slices: SliceCache,
    claims: Option<Box<dyn ClaimReader>>,
    from_status: HashMap<ClaimKey, String>,
    read_at: HashMap<(String, String), Instant>,
    warned: HashSet<ClaimKey>,
}

impl Dra {
    pub fn new(driver: String, slices: SliceCache, claims: Option<Box<dyn ClaimReader>>) -> Self {
        Self { driver, slices, claims, from_status: HashMap::new(), read_at: HashMap::new(), warned: HashSet::new() }
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn slices(&self) -> &SliceCache {
        &self.slices
    }

    /// The holders of this node's DRA-allocated GPUs among `claimed`; reads the claims whose devices the
    /// slices and NVML leave unnamed (each at most every 30 s while unnamed).
    pub async fn holders(&mut self, claimed: &[ClaimedDevice], devices: &[GpuDevice]) -> Vec<Allocation> {
        let live: HashSet<ClaimKey> = claimed.iter().map(claim_key).collect();
        self.from_status.retain(|k, _| live.contains(k));
        self.warned.retain(|k| live.contains(k));
        self.read_at.retain(|(ns, name), _| live.iter().any(|k| &k.0 == ns && &k.1 == name));
        let slices = self.slices.devices();
        let mut r = resolve(claimed, &slices, &self.from_status, devices);
        if let Some(reader) = &self.claims {
            let to_read: BTreeSet<(String, String)> = r
                .unresolved
                .iter()
                .map(|(c, _)| (c.claim_namespace.clone(), c.claim.clone()))
                .filter(|k| self.read_at.get(k).is_none_or(|t| t.elapsed() >= CLAIM_REREAD))
                .collect();
            for (namespace, name) in &to_read {
                self.read_at.insert((namespace.clone(), name.clone()), Instant::now());
                match reader.get(namespace, name).await {
                    Ok(claim) => {
                        for ((pool, device), uuid) in status_uuids(&claim, &self.driver) {
                            self.from_status.insert((namespace.clone(), name.clone(), pool, device), uuid);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(claim = %format!("{namespace}/{name}"), error = %e, "cannot read the ResourceClaim")
                    }
                }
            }
            if !to_read.is_empty() {
                r = resolve(claimed, &slices, &self.from_status, devices);
            }
        }
        for (c, why) in &r.unresolved {
            if self.warned.insert(claim_key(c)) {
                tracing::warn!(
                    pod = %format!("{}/{}", c.namespace, c.pod),
                    claim = %format!("{}/{}", c.claim_namespace, c.claim),
                    pool = %c.pool,
                    device = %c.device,
                    reason = why,
                    "cannot tell which GPU a DRA-allocated device is; its idle time is not charged to the pod"
                );
            }
        }
        r.allocations
    }
}

#[cfg(feature = "node")]
pub mod watch {
    //! The `kube` watcher that fills a [`SliceCache`], and the ResourceClaim reader.

    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::{Api, Client};
    use tokio_stream::StreamExt;

    use super::*;

    fn resource(kind: &str) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("resource.k8s.io", "v1", kind))
    }

    fn devices_of(obj: &DynamicObject, driver: &str) -> (String, Vec<SliceDevice>) {
        (obj.metadata.name.clone().unwrap_or_default(), slice_devices(&obj.data, driver))
    }

    /// Watches the ResourceSlices `driver` publishes for `node` into `cache`, for ever (the watcher
    /// re-lists and backs off by itself); stops, with the cache marked listed and empty, when the API server
    /// does not serve resource.k8s.io/v1 (Kubernetes before 1.34).
    pub async fn resource_slices(client: Client, node: String, driver: String, cache: SliceCache) {
        let api: Api<DynamicObject> = Api::all_with(client, &resource("ResourceSlice"));
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node},spec.driver={driver}"));
        let stream = watcher::watcher(api, config).default_backoff();
        tokio::pin!(stream);
        let mut relist = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(s)) => {
                    let (name, devices) = devices_of(&s, &driver);
                    cache.apply(name, devices);
                }
                Ok(Event::Delete(s)) => cache.delete(s.metadata.name.as_deref().unwrap_or_default()),
                Ok(Event::Init) => relist.clear(),
                Ok(Event::InitApply(s)) => relist.push(devices_of(&s, &driver)),
                Ok(Event::InitDone) => {
                    let devices: usize = relist.iter().map(|(_, d)| d.len()).sum();
                    cache.replace(std::mem::take(&mut relist));
                    tracing::info!(devices, %node, %driver, "DRA ResourceSlices (re)listed");
                }
                Err(watcher::Error::InitialListFailed(kube::Error::Api(s))) if s.code == 404 => {
                    tracing::info!(
                        "the API server does not serve resource.k8s.io/v1 ResourceSlices (Kubernetes before 1.34): GPUs allocated through DRA have no holder"
                    );
                    cache.give_up();
                    return;
                }
                Err(e) => super::super::pods::watch::watch_failed(
                    "resourceslices",
                    "resource.k8s.io",
                    &e,
                    "idle time of DRA-allocated GPUs is charged to no pod",
                ),
            }
        }
    }

    /// Reads ResourceClaims through the Kubernetes API (`get`, namespaced).
    pub struct KubeClaims(pub Client);

    impl ClaimReader for KubeClaims {
        fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> ClaimFuture<'a> {
            Box::pin(async move {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.0.clone(), namespace, &resource("ResourceClaim"));
                match api.get(name).await {
                    Ok(claim) => serde_json::to_value(&claim.data).map_err(|e| e.to_string()),
                    Err(kube::Error::Api(s)) if s.code == 403 => Err(format!(
                        "the agent's role does not allow it to get resourceclaims (API group resource.k8s.io): grant it, as the gpucost-agent chart's ClusterRole does: {}",
                        s.message
                    )),
                    Err(e) => Err(e.to_string()),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn gpu(uuid: &str, index: u32) -> GpuDevice {
        GpuDevice {
            uuid: uuid.into(),
            model: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 80 << 30,
            index,
            mig_parent_uuid: None,
            mig_profile: None,
        }
    }

    fn mig(uuid: &str, parent: &str, profile: &str) -> GpuDevice {
        GpuDevice { mig_parent_uuid: Some(parent.into()), mig_profile: Some(profile.into()), ..gpu(uuid, 0) }
    }

    /// A ResourceSlice as NVIDIA's driver publishes it (resource.k8s.io/v1): whole GPUs, a static MIG device
    /// and an abstract MIG device made on demand (`uuid: null`).
    fn slice() -> Value {
        json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": { "name": "node-a-gpu.nvidia.com-x7k2p" },
            "spec": {
                "driver": "gpu.nvidia.com", "nodeName": "node-a",
                "pool": { "name": "node-a", "generation": 1, "resourceSliceCount": 1 },
                "devices": [
                    { "name": "gpu-0", "attributes": {
                        "type": { "string": "gpu" }, "uuid": { "string": "GPU-0000" },
                        "productName": { "string": "NVIDIA H100 80GB HBM3" },
                        "cudaComputeCapability": { "version": "9.0.0" } },
                      "capacity": { "memory": { "value": "80Gi" } } },
                    { "name": "gpu-1-mig-1g10gb-19-0", "attributes": {
                        "type": { "string": "mig" }, "uuid": { "string": "MIG-1111" },
                        "parentUUID": { "string": "GPU-1111" }, "profile": { "string": "1g.10gb" } } },
                    { "name": "gpu-1-mig-3g40gb-9-4", "attributes": {
                        "type": { "string": "mig" }, "uuid": null,
                        "parentUUID": { "string": "GPU-1111" }, "profile": { "string": "3g.40gb" } } },
                ],
            },
        })
    }

    fn claimed(pod: &str, claim: &str, device: &str) -> ClaimedDevice {
        ClaimedDevice {
            namespace: "ml".into(),
            pod: pod.into(),
            container: "main".into(),
            claim_namespace: "ml".into(),
            claim: claim.into(),
            pool: "node-a".into(),
            device: device.into(),
        }
    }

    fn index(slice: &Value) -> HashMap<(String, String), SliceDevice> {
        slice_devices(slice, NVIDIA_GPU_DRIVER).into_iter().map(|d| ((d.pool.clone(), d.name.clone()), d)).collect()
    }

    #[test]
    fn a_slice_is_read_for_its_driver_only_and_a_null_uuid_is_no_uuid() {
        let devices = slice_devices(&slice(), NVIDIA_GPU_DRIVER);
        assert_eq!(devices.len(), 3);
        assert_eq!(devices[0].uuid.as_deref(), Some("GPU-0000"));
        assert_eq!(
            (devices[2].uuid.as_deref(), devices[2].parent_uuid.as_deref(), devices[2].profile.as_deref()),
            (None, Some("GPU-1111"), Some("3g.40gb"))
        );
        assert!(slice_devices(&slice(), "other.example.com").is_empty());
        let qualified = json!({ "spec": { "driver": "gpu.nvidia.com", "pool": { "name": "p" }, "devices": [
            { "name": "gpu-3", "basic": { "attributes": { "gpu.nvidia.com/uuid": { "string": "GPU-3" } } } } ] } });
        assert_eq!(slice_devices(&qualified, NVIDIA_GPU_DRIVER)[0].uuid.as_deref(), Some("GPU-3"), "v1beta1 shape");
    }

    #[test]
    fn whole_gpus_and_static_mig_devices_are_named_by_their_slice() {
        let devices = [gpu("GPU-0000", 0), gpu("GPU-1111", 1), mig("MIG-1111", "GPU-1111", "1g.10gb")];
        let r = resolve(
            &[claimed("a", "a-gpu", "gpu-0"), claimed("b", "b-mig", "gpu-1-mig-1g10gb-19-0")],
            &index(&slice()),
            &HashMap::new(),
            &devices,
        );
        let got: Vec<_> = r.allocations.iter().map(|a| (a.pod.as_str(), a.gpu_uuid.as_str())).collect();
        assert_eq!(got, [("a", "GPU-0000"), ("b", "MIG-1111")]);
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn a_mig_device_made_on_demand_is_the_only_unnamed_one_of_its_profile_on_its_parent() {
        let devices = [
            gpu("GPU-1111", 1),
            mig("MIG-1111", "GPU-1111", "1g.10gb"),
            mig("MIG-made", "GPU-1111", "3g.40gb"),
            mig("MIG-other-gpu", "GPU-2222", "3g.40gb"),
        ];
        // Two containers of one pod share the claim: still one device.
        let claims = [
            claimed("c", "c-mig", "gpu-1-mig-3g40gb-9-4"),
            ClaimedDevice { container: "sidecar".into(), ..claimed("c", "c-mig", "gpu-1-mig-3g40gb-9-4") },
        ];
        let r = resolve(&claims, &index(&slice()), &HashMap::new(), &devices);
        assert_eq!(r.allocations.len(), 2);
        assert!(r.allocations.iter().all(|a| a.gpu_uuid == "MIG-made"), "{r:?}");
    }

    #[test]
    fn two_mig_devices_of_one_profile_made_on_demand_need_the_claims_status() {
        let mut s = slice();
        s["spec"]["devices"].as_array_mut().unwrap().push(json!({ "name": "gpu-1-mig-3g40gb-9-0", "attributes": {
            "type": { "string": "mig" }, "parentUUID": { "string": "GPU-1111" }, "profile": { "string": "3g.40gb" } } }));
        let devices = [gpu("GPU-1111", 1), mig("MIG-x", "GPU-1111", "3g.40gb"), mig("MIG-y", "GPU-1111", "3g.40gb")];
        let claims = [claimed("c", "c-mig", "gpu-1-mig-3g40gb-9-4"), claimed("d", "d-mig", "gpu-1-mig-3g40gb-9-0")];
        let r = resolve(&claims, &index(&s), &HashMap::new(), &devices);
        assert!(r.allocations.is_empty(), "ambiguous: {r:?}");
        assert_eq!(r.unresolved.len(), 2);

        let claim = json!({ "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": { "name": "d-mig", "namespace": "ml" },
            "status": { "devices": [{ "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-1-mig-3g40gb-9-0",
                "data": { "apiVersion": "gpu.nvidia.com/v1alpha1", "kind": "DeviceStatus", "uuid": "MIG-y" } }] } });
        let from_status: HashMap<ClaimKey, String> = status_uuids(&claim, NVIDIA_GPU_DRIVER)
            .into_iter()
            .map(|((pool, device), u)| (("ml".into(), "d-mig".into(), pool, device), u))
            .collect();
        let r = resolve(&claims, &index(&s), &from_status, &devices);
        let got: Vec<_> = r.allocations.iter().map(|a| (a.pod.as_str(), a.gpu_uuid.as_str())).collect();
        // d from its status; then c is the only 3g.40gb left.
        assert_eq!(got, [("c", "MIG-x"), ("d", "MIG-y")]);
    }

    #[test]
    fn a_device_no_slice_publishes_or_that_is_not_on_this_node_is_left_unnamed() {
        let devices = [gpu("GPU-9999", 0)];
        let r = resolve(
            &[claimed("a", "a-gpu", "gpu-0"), claimed("z", "z-gpu", "gpu-7")],
            &index(&slice()),
            &HashMap::new(),
            &devices,
        );
        assert!(r.allocations.is_empty());
        assert_eq!(r.unresolved.len(), 2);
    }

    struct Claims(Value);

    impl ClaimReader for Claims {
        fn get<'a>(&'a self, _: &'a str, _: &'a str) -> ClaimFuture<'a> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    #[tokio::test]
    async fn holders_read_the_claim_once_when_the_slice_and_nvml_leave_a_device_unnamed() {
        let cache = SliceCache::default();
        let mut s = slice();
        s["spec"]["devices"].as_array_mut().unwrap().push(json!({ "name": "gpu-1-mig-3g40gb-9-0", "attributes": {
            "parentUUID": { "string": "GPU-1111" }, "profile": { "string": "3g.40gb" } } }));
        cache.replace(vec![("s".into(), slice_devices(&s, NVIDIA_GPU_DRIVER))]);
        let claim = json!({ "status": { "devices": [{ "driver": "gpu.nvidia.com", "pool": "node-a",
            "device": "gpu-1-mig-3g40gb-9-4", "data": { "migDevice": { "UUID": "MIG-x" } } }] } });
        let mut dra = Dra::new(NVIDIA_GPU_DRIVER.into(), cache, Some(Box::new(Claims(claim))));
        let devices = [gpu("GPU-1111", 1), mig("MIG-x", "GPU-1111", "3g.40gb"), mig("MIG-y", "GPU-1111", "3g.40gb")];
        let claims = [claimed("c", "c-mig", "gpu-1-mig-3g40gb-9-4"), claimed("d", "d-mig", "gpu-1-mig-3g40gb-9-0")];
        let got: Vec<_> = dra.holders(&claims, &devices).await.into_iter().map(|a| (a.pod, a.gpu_uuid)).collect();
        assert_eq!(got, [("c".to_string(), "MIG-x".to_string()), ("d".to_string(), "MIG-y".to_string())]);
        assert_eq!(dra.read_at.len(), 2, "both claims were read once");
    }
}

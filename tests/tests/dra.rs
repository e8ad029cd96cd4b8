//! GPUs allocated through Kubernetes Dynamic Resource Allocation (resource.k8s.io/v1), end to end: the
//! real agent loads the NVML stand-in, the kubelet's pod-resources stand-in reports each container's claims
//! (`dynamic_resources`: driver, pool, device), and the Kubernetes API stand-in serves the ResourceSlices and
//! ResourceClaims in the shape NVIDIA's DRA driver (`gpu.nvidia.com`) publishes them: whole GPUs and static
//! MIG devices with their `uuid`, and MIG devices made on demand with none (`uuid: null`, only `parentUUID`
//! and `profile`), one of them named in its claim's status. Each pod holding a DRA GPU is its holder, idle
//! time included, exactly; and the agent's calls are exactly what the chart's ClusterRole grants.

use std::collections::BTreeSet;

use gpucost_agent::reading::WorkloadIdentity;
use gpucost_e2e::nvml_rig::{Expected, GIB, NODE, R_S, Rig, device, start_ahead, used};
use gpucost_e2e::standins::ClaimUse;
use gpucost_e2e::{agent_cluster_role_grants, installed_peer};
use serde_json::{Value, json};

const DRIVER: &str = "gpu.nvidia.com";

/// The attributes NVIDIA's driver gives every device of a GPU (its `productName`, architecture, versions,
/// PCI address).
fn common(product: &str, architecture: &str, cc: &str, bus: &str) -> serde_json::Map<String, Value> {
    let mut a = serde_json::Map::new();
    a.insert("productName".into(), json!({ "string": product }));
    a.insert("brand".into(), json!({ "string": "Nvidia" }));
    a.insert("architecture".into(), json!({ "string": architecture }));
    a.insert("cudaComputeCapability".into(), json!({ "version": cc }));
    a.insert("driverVersion".into(), json!({ "version": "580.95.5" }));
    a.insert("cudaDriverVersion".into(), json!({ "version": "13.0.0" }));
    a.insert("resource.kubernetes.io/pciBusID".into(), json!({ "string": bus }));
    a
}

/// A whole GPU as the driver publishes it: `gpu-<minor>`.
fn slice_gpu(minor: u32, uuid: &str, product: &str, memory: &str) -> Value {
    let mut a = common(product, "Hopper", "9.0.0", &format!("0000:{:02x}:00.0", 0x18 + minor));
    a.insert("type".into(), json!({ "string": "gpu" }));
    a.insert("uuid".into(), json!({ "string": uuid }));
    json!({ "name": format!("gpu-{minor}"), "attributes": a, "capacity": { "memory": { "value": memory } } })
}

/// A MIG device as the driver publishes it: `gpu-<parent minor>-mig-<profile>-<profile id>-<placement>`,
/// with its `uuid` when it exists (static MIG), `null` when it is made on demand.
fn slice_mig(parent_minor: u32, parent: &str, profile: &str, profile_id: u32, start: u32, uuid: Option<&str>) -> Value {
    let (product, arch, cc) = if profile.ends_with("5gb") || profile.ends_with("20gb") {
        ("NVIDIA A100-SXM4-40GB", "Ampere", "8.0.0")
    } else {
        ("NVIDIA H100 80GB HBM3", "Hopper", "9.0.0")
    };
    let mut a = common(product, arch, cc, &format!("0000:{:02x}:00.0", 0x18 + parent_minor));
    a.insert("type".into(), json!({ "string": "mig" }));
    a.insert("uuid".into(), uuid.map_or(Value::Null, |u| json!({ "string": u })));
    a.insert("parentUUID".into(), json!({ "string": parent }));
    a.insert("profile".into(), json!({ "string": profile }));
    let name = format!("gpu-{parent_minor}-mig-{}-{profile_id}-{start}", profile.replace('.', ""));
    json!({ "name": name, "attributes": a,
            "capacity": { "multiprocessors": { "value": "16" }, "memorySlice0": { "value": "1" } } })
}

/// One ResourceSlice of this node's pool.
fn resource_slice(name: &str, devices: Vec<Value>) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": { "name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                      "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-1", "controller": true }] },
        "spec": { "driver": DRIVER, "nodeName": NODE, "pool": { "name": NODE, "generation": 1, "resourceSliceCount": 2 },
                  "devices": devices },
    })
}

/// A ResourceClaim allocated `device` of this node's pool and reserved for `pod`; with `status_uuid`, its
/// status names the device made for it (the driver's `data`).
fn resource_claim(name: &str, pod: &WorkloadIdentity, device: &str, status_uuid: Option<&str>) -> Value {
    let mut claim = json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": { "name": name, "namespace": pod.namespace, "uid": format!("uid-{name}"), "resourceVersion": "9",
                      "annotations": { "resource.kubernetes.io/pod-claim-name": "gpu" } },
        "spec": { "devices": { "requests": [{ "name": "gpu", "exactly": { "deviceClassName": if device.contains("-mig-") { "mig.nvidia.com" } else { "gpu.nvidia.com" },
                  "allocationMode": "ExactCount", "count": 1 } }] } },
        "status": {
            "allocation": { "devices": { "results": [{ "request": "gpu", "driver": DRIVER, "pool": NODE, "device": device }] },
                            "nodeSelector": { "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": [NODE] }] }] } },
            "reservedFor": [{ "resource": "pods", "name": pod.pod, "uid": pod.pod_uid }],
        },
    });
    if let Some(uuid) = status_uuid {
        claim["status"]["devices"] = json!([{ "driver": DRIVER, "pool": NODE, "device": device,
            "data": { "apiVersion": "gpu.nvidia.com/v1alpha1", "kind": "MigDeviceStatus", "uuid": uuid } }]);
    }
    claim
}

fn uses(pod: &WorkloadIdentity, claim: &str, device: &str) -> ClaimUse {
    ClaimUse {
        namespace: pod.namespace.clone(),
        pod: pod.pod.clone(),
        container: pod.container.clone(),
        claim: claim.into(),
        driver: DRIVER.into(),
        pool: NODE.into(),
        device: device.into(),
    }
}

#[test]
fn pods_holding_dra_gpus_and_mig_devices_are_charged_their_idle_time_and_the_role_grants_exactly_the_calls() {
    let helm = installed_peer("helm 3", "GPUCOST_HELM", "helm/helm", "");
    let mut rig = Rig::new();
    let g: Vec<String> = (0..5).map(|i| format!("GPU-d7a00000-0000-4000-8000-00000000000{i}")).collect();
    let (a1, a2) = ("MIG-d7a0a100-0000-4000-8000-000000000001", "MIG-d7a0a100-0000-4000-8000-000000000002");
    let (h1, h2, h3) = (
        "MIG-d7a0d100-0000-4000-8000-000000000001",
        "MIG-d7a0d100-0000-4000-8000-000000000002",
        "MIG-d7a0d100-0000-4000-8000-000000000003",
    );
    let notebook = rig.pod("ml", "notebook-0");
    let trainer = rig.pod("ml", "trainer-0");
    let ocr = rig.pod("vision", "ocr-0");
    let (chat0, chat1, tiny) = (rig.pod("llm", "chat-0"), rig.pod("llm", "chat-1"), rig.pod("llm", "tiny-0"));
    rig.process(2000, &trainer);
    rig.process(3000, &tiny);

    // gpu-0: held by a notebook that runs nothing; gpu-1: a trainer at 40 %; gpu-2: an A100 in static MIG
    // mode; gpu-3: an H100 whose MIG devices the driver makes on demand; gpu-4: idle and unclaimed.
    rig.dra_objects = vec![
        resource_slice(
            &format!("{NODE}-gpu.nvidia.com-gpus"),
            vec![
                slice_gpu(0, &g[0], "NVIDIA H100 80GB HBM3", "80Gi"),
                slice_gpu(1, &g[1], "NVIDIA H100 80GB HBM3", "80Gi"),
                slice_gpu(4, &g[4], "NVIDIA L4", "23034Mi"),
                slice_mig(2, &g[2], "1g.5gb", 19, 6, Some(a1)),
                slice_mig(2, &g[2], "3g.20gb", 9, 0, Some(a2)),
            ],
        ),
        resource_slice(
            &format!("{NODE}-gpu.nvidia.com-mig"),
            vec![
                slice_mig(3, &g[3], "3g.40gb", 9, 0, None),
                slice_mig(3, &g[3], "3g.40gb", 9, 4, None),
                slice_mig(3, &g[3], "1g.10gb", 19, 0, None),
                slice_mig(3, &g[3], "1g.10gb", 19, 1, None),
            ],
        ),
        // Another node's slice, which the agent must not be given.
        json!({ "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": { "name": "other-node-gpus" },
                "spec": { "driver": DRIVER, "nodeName": "other-node", "pool": { "name": "other-node", "generation": 1, "resourceSliceCount": 1 },
                          "devices": [slice_gpu(0, "GPU-elsewhere", "NVIDIA H100 80GB HBM3", "80Gi")] } }),
        resource_claim("notebook-0-gpu-7xk2p", &notebook, "gpu-0", None),
        resource_claim("trainer-0-gpu-q8r4m", &trainer, "gpu-1", None),
        resource_claim("ocr-0-gpu-2bd9c", &ocr, "gpu-2-mig-1g5gb-19-6", None),
        // Two 3g.40gb made on demand on one GPU: which is which, chat-0's status says; chat-1 has the other.
        resource_claim("chat-0-gpu-h5n2w", &chat0, "gpu-3-mig-3g40gb-9-0", Some(h1)),
        resource_claim("chat-1-gpu-x9w1z", &chat1, "gpu-3-mig-3g40gb-9-4", None),
        // The only 1g.10gb on that GPU: NVML's MIG list names it.
        resource_claim("tiny-0-gpu-m3k8d", &tiny, "gpu-3-mig-1g10gb-19-0", None),
    ];
    rig.claim_uses = vec![
        uses(&notebook, "notebook-0-gpu-7xk2p", "gpu-0"),
        uses(&trainer, "trainer-0-gpu-q8r4m", "gpu-1"),
        uses(&ocr, "ocr-0-gpu-2bd9c", "gpu-2-mig-1g5gb-19-6"),
        uses(&chat0, "chat-0-gpu-h5n2w", "gpu-3-mig-3g40gb-9-0"),
        uses(&chat1, "chat-1-gpu-x9w1z", "gpu-3-mig-3g40gb-9-4"),
        uses(&tiny, "tiny-0-gpu-m3k8d", "gpu-3-mig-1g10gb-19-0"),
        // A claim of another driver (a NIC) is not the agent's business.
        ClaimUse { driver: "net.example.com".into(), device: "eth1".into(), ..uses(&trainer, "trainer-0-nic", "eth1") },
    ];

    const P: u64 = 250_000;
    const INTERVALS: u64 = 4;
    let start = start_ahead(8);
    let scenario = json!({
        "start_unix_ms": start,
        "devices": [
            device(&g[0], "NVIDIA H100 80GB HBM3", 80, P),
            device(&g[1], "NVIDIA H100 80GB HBM3", 80, P),
            { "uuid": g[2], "name": "NVIDIA A100-SXM4-40GB", "memory_total_bytes": 40 * GIB, "power_mw": P,
              "mig": { "devices": [
                { "uuid": a1, "profile": "1g.5gb", "memory_total_bytes": 5 * GIB, "gpu_instance_id": 13 },
                { "uuid": a2, "profile": "3g.20gb", "memory_total_bytes": 20 * GIB, "gpu_instance_id": 2 } ] } },
            { "uuid": g[3], "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * GIB, "power_mw": P, "gpm": true,
              "mig": { "devices": [
                { "uuid": h1, "profile": "3g.40gb", "memory_total_bytes": 40 * GIB, "gpu_instance_id": 1 },
                { "uuid": h2, "profile": "3g.40gb", "memory_total_bytes": 40 * GIB, "gpu_instance_id": 2 },
                { "uuid": h3, "profile": "1g.10gb", "memory_total_bytes": 10 * GIB, "gpu_instance_id": 9, "sm": 30 } ] } },
            device(&g[4], "NVIDIA L4", 24, P),
        ],
        "processes": [
            { "pid": 2000, "device": g[1], "sm": 40, "memory_bytes": 20 * GIB },
            { "pid": 3000, "device": h3, "memory_bytes": GIB },
        ],
    });

    let mut want = Expected::default();
    for d in [a1, a2, h1, h2, h3] {
        want.device(d);
    }
    let physical: Vec<&str> = g.iter().map(String::as_str).collect();
    let energy: Vec<(&str, u64)> = physical.iter().map(|&u| (u, P * R_S)).collect();
    for _ in 0..INTERVALS {
        let holdings = vec![
            (g[0].as_str(), rig.key(&notebook), 0),
            (g[1].as_str(), rig.key(&trainer), used(40)),
            (a1, rig.key(&ocr), 0),
            (h1, rig.key(&chat0), 0),
            (h2, rig.key(&chat1), 0),
            (h3, rig.key(&tiny), used(30)),
        ];
        want.interval(&physical, &energy, &holdings);
    }

    let mut agent = rig.agent(&scenario);
    rig.assert_ledger(&mut agent, start, start + INTERVALS * R_S * 1000, &want);

    // What the agent asked the API server: this node's slices of NVIDIA's driver, and two claims (the two
    // 3g.40gb made on demand), in their namespace; nothing else of resource.k8s.io.
    let requests = rig.api_log.as_ref().unwrap().lock().unwrap().clone();
    let slices: Vec<_> = requests.iter().filter(|r| r.resource == "resourceslices").collect();
    assert!(
        !slices.is_empty()
            && slices.iter().all(|r| r.field_selector == format!("spec.nodeName={NODE},spec.driver={DRIVER}")
                && r.namespace.is_empty()
                && r.group == "resource.k8s.io"),
        "{slices:#?}"
    );
    let claims: BTreeSet<(String, String)> = requests
        .iter()
        .filter(|r| r.resource == "resourceclaims")
        .map(|r| (r.verb.clone(), r.namespace.clone()))
        .collect();
    assert_eq!(claims, BTreeSet::from([("get".to_string(), "llm".to_string())]), "{requests:#?}");
    let claim_reads = requests.iter().filter(|r| r.resource == "resourceclaims").count();
    assert!(claim_reads <= 2, "claims are read once each while unnamed, then kept: {claim_reads} reads");

    // The chart's ClusterRole grants exactly the calls made, and no more.
    let Some(helm) = helm else { return };
    let called: BTreeSet<(String, String, String)> =
        requests.iter().map(|r| (r.group.clone(), r.resource.clone(), r.verb.clone())).collect();
    assert_eq!(agent_cluster_role_grants(&helm), called, "the ClusterRole against the agent's requests: {requests:#?}");
}

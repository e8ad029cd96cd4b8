//! The kubelet's pod-resources API: which pod and container each GPU was allocated to, so that a GPU
//! allocated to a pod that runs nothing is still that pod's (a holder), and its idle time is visible.
//!
//! Device IDs come as the NVIDIA device plugin writes them: `GPU-<uuid>` (`::N` appended per replica under
//! time-slicing), `MIG-<uuid>` for a MIG device, or a bare index with `DEVICE_ID_STRATEGY=index`. Devices
//! allocated through Dynamic Resource Allocation come as claims (`dynamic_resources`: claim, driver, pool,
//! device), which `dra` resolves to GPUs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gpucost_proto::podresources::v1 as pr;
use gpucost_proto::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;
use tonic::transport::Endpoint;

use crate::reading::GpuDevice;

/// One container's claim on one GPU or MIG device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub gpu_uuid: String,
}

/// The GPU a device ID names, among this node's devices.
pub fn device_uuid(id: &str, devices: &[GpuDevice]) -> Option<String> {
    let id = id.split_once("::").map_or(id, |(uuid, _replica)| uuid);
    if id.starts_with("GPU-") || id.starts_with("MIG-") {
        return devices.iter().any(|d| d.uuid == id).then(|| id.to_string());
    }
    let index: u32 = id.parse().ok()?;
    devices.iter().find(|d| d.mig_parent_uuid.is_none() && d.index == index).map(|d| d.uuid.clone())
}

/// Every GPU allocation in a `List` answer, for resources whose name starts with `resource_prefix`
/// (`nvidia.com/`: `nvidia.com/gpu`, `nvidia.com/gpu.shared`, `nvidia.com/mig-1g.10gb`, …).
pub fn allocations(
    resp: &pr::ListPodResourcesResponse,
    devices: &[GpuDevice],
    resource_prefix: &str,
) -> Vec<Allocation> {
    let mut out = Vec::new();
    for pod in &resp.pod_resources {
        for c in &pod.containers {
            for d in c.devices.iter().filter(|d| d.resource_name.starts_with(resource_prefix)) {
                for id in &d.device_ids {
                    match device_uuid(id, devices) {
                        Some(gpu_uuid) => out.push(Allocation {
                            namespace: pod.namespace.clone(),
                            pod: pod.name.clone(),
                            container: c.name.clone(),
                            gpu_uuid,
                        }),
                        None => {
                            tracing::debug!(device = %id, pod = %pod.name, "allocated device is not a GPU of this node")
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.gpu_uuid, &a.namespace, &a.pod, &a.container).cmp(&(&b.gpu_uuid, &b.namespace, &b.pod, &b.container))
    });
    out.dedup();
    out
}

/// One container's use of a device allocated to a ResourceClaim (DRA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDevice {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub claim_namespace: String,
    pub claim: String,
    pub pool: String,
    pub device: String,
}

/// Every device of `driver` (e.g. `gpu.nvidia.com`) that a `List` answer's `dynamic_resources` names.
pub fn claimed_devices(resp: &pr::ListPodResourcesResponse, driver: &str) -> Vec<ClaimedDevice> {
    let mut out = Vec::new();
    for pod in &resp.pod_resources {
        for c in &pod.containers {
            for claim in &c.dynamic_resources {
                for r in claim.claim_resources.iter().filter(|r| r.driver_name == driver) {
                    out.push(ClaimedDevice {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: c.name.clone(),
                        // A claim is in its pod's namespace; older kubelets may leave the field empty.
                        claim_namespace: if claim.claim_namespace.is_empty() {
                            pod.namespace.clone()
                        } else {
                            claim.claim_namespace.clone()
                        },
                        claim: claim.claim_name.clone(),
                        pool: r.pool_name.clone(),
                        device: r.device_name.clone(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container, &a.pool, &a.device).cmp(&(
            &b.namespace,
            &b.pod,
            &b.container,
            &b.pool,
            &b.device,
        ))
    });
    out.dedup();
    out
}

#[derive(Debug, thiserror::Error)]
#[error("pod-resources API at {socket}: {reason}")]
pub struct PodResourcesError {
    pub socket: PathBuf,
    pub reason: String,
}

/// Calls `List` over the kubelet's Unix socket, within `timeout`.
pub async fn list(socket: &Path, timeout: Duration) -> Result<pr::ListPodResourcesResponse, PodResourcesError> {
    let err = |reason: String| PodResourcesError { socket: socket.to_path_buf(), reason };
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://kubelet.sock")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| err(format!("cannot connect: {e}")))?;
    let resp = PodResourcesListerClient::new(channel)
        .list(pr::ListPodResourcesRequest {})
        .await
        .map_err(|s| err(format!("List failed: {:?}: {}", s.code(), s.message())))?;
    Ok(resp.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<GpuDevice> {
        let d = |uuid: &str, index: u32, parent: Option<&str>| GpuDevice {
            uuid: uuid.into(),
            model: "NVIDIA A100-SXM4-40GB".into(),
            memory_total_bytes: 40 << 30,
            index,
            mig_parent_uuid: parent.map(String::from),
            mig_profile: parent.map(|_| "1g.5gb".to_string()),
        };
        vec![d("GPU-aaaa", 0, None), d("GPU-bbbb", 1, None), d("MIG-cccc", 0, Some("GPU-bbbb"))]
    }

    fn container(name: &str, resource: &str, ids: &[&str]) -> pr::ContainerResources {
        pr::ContainerResources {
            name: name.into(),
            devices: vec![pr::ContainerDevices {
                resource_name: resource.into(),
                device_ids: ids.iter().map(|s| s.to_string()).collect(),
                topology: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn time_sliced_mig_and_index_device_ids_map_to_this_nodes_gpus() {
        let resp = pr::ListPodResourcesResponse {
            pod_resources: vec![
                pr::PodResources {
                    name: "a".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "nvidia.com/gpu", &["GPU-aaaa::0"])],
                },
                pr::PodResources {
                    name: "b".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "nvidia.com/gpu", &["GPU-aaaa::1"])],
                },
                pr::PodResources {
                    name: "m".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "nvidia.com/mig-1g.5gb", &["MIG-cccc"])],
                },
                pr::PodResources {
                    name: "i".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "nvidia.com/gpu", &["1"])],
                },
                pr::PodResources {
                    name: "x".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "example.com/fpga", &["0"])],
                },
                pr::PodResources {
                    name: "g".into(),
                    namespace: "ml".into(),
                    containers: vec![container("c", "nvidia.com/gpu", &["GPU-elsewhere"])],
                },
            ],
        };
        let got: Vec<(String, String)> =
            allocations(&resp, &devices(), "nvidia.com/").into_iter().map(|a| (a.pod, a.gpu_uuid)).collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), "GPU-aaaa".into()),
                ("b".into(), "GPU-aaaa".into()),
                ("i".into(), "GPU-bbbb".into()),
                ("m".into(), "MIG-cccc".into())
            ]
        );
    }

    #[test]
    fn dra_claims_are_read_per_container_for_one_driver() {
        let claim = |name: &str, ns: &str, driver: &str, device: &str| pr::DynamicResource {
            claim_name: name.into(),
            claim_namespace: ns.into(),
            claim_resources: vec![pr::ClaimResource {
                cdi_devices: vec![pr::CdiDevice { name: format!("k8s.gpu.nvidia.com/claim=uid-{device}") }],
                driver_name: driver.into(),
                pool_name: "node-a".into(),
                device_name: device.into(),
                share_id: None,
            }],
        };
        let resp = pr::ListPodResourcesResponse {
            pod_resources: vec![pr::PodResources {
                name: "trainer-0".into(),
                namespace: "ml".into(),
                containers: vec![
                    pr::ContainerResources {
                        name: "main".into(),
                        dynamic_resources: vec![
                            claim("trainer-0-gpu-x2k", "ml", "gpu.nvidia.com", "gpu-0"),
                            claim("nic", "ml", "net.example.com", "eth1"),
                        ],
                        ..Default::default()
                    },
                    pr::ContainerResources {
                        name: "sidecar".into(),
                        dynamic_resources: vec![claim("trainer-0-gpu-x2k", "", "gpu.nvidia.com", "gpu-0")],
                        ..Default::default()
                    },
                ],
            }],
        };
        let got = claimed_devices(&resp, "gpu.nvidia.com");
        let short: Vec<_> =
            got.iter().map(|c| (c.container.as_str(), c.claim_namespace.as_str(), c.device.as_str())).collect();
        assert_eq!(short, [("main", "ml", "gpu-0"), ("sidecar", "ml", "gpu-0")]);
    }
}

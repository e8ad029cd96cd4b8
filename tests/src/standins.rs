//! Stand-ins for the peers that cannot run here, each speaking the real protocol with real-format data:
//! the Kubernetes API server (pod and namespace list + watch, honouring `fieldSelector=spec.nodeName=`;
//! DRA's ResourceSlices, list + watch honouring `spec.nodeName` and `spec.driver`, and ResourceClaims, get;
//! it records every request, and can refuse some as a role without them would, for the RBAC checks),
//! the ECS agent's introspection API (`/v1/tasks`), and the kubelet's pod-resources gRPC service over a
//! real Unix socket (device-plugin allocations and DRA claims, `List` and `Get`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gpucost_agent::sim::{World, WorldAllocation};
use gpucost_proto::podresources::v1 as pr;
use gpucost_proto::podresources::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use serde_json::{Value, json};
use tokio_stream::wrappers::UnixListenerStream;

/// A tokio runtime on its own thread, kept alive as long as the stand-ins it serves.
pub struct Background {
    runtime: tokio::runtime::Runtime,
}

impl Default for Background {
    fn default() -> Self {
        Self::new()
    }
}

impl Background {
    pub fn new() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        Self { runtime }
    }

    /// Serves the Kubernetes API (pods of every node, namespaces) and the ECS introspection API on a
    /// loopback port; returns its address.
    pub fn kube_and_ecs(&self, worlds: &[World]) -> SocketAddr {
        self.kube_api(worlds, &[]).0
    }

    /// [`kube_and_ecs`](Self::kube_and_ecs), recording every Kubernetes API request, and answering
    /// `403 Forbidden` (the API server's Status) to the `(verb, resource)` pairs in `forbid`.
    pub fn kube_api(&self, worlds: &[World], forbid: &[(&str, &str)]) -> (SocketAddr, ApiLog) {
        self.kube_api_with_dra(worlds, &[], forbid)
    }

    /// [`kube_api`](Self::kube_api), also serving `dra`: ResourceSlice and ResourceClaim objects
    /// (resource.k8s.io/v1).
    pub fn kube_api_with_dra(&self, worlds: &[World], dra: &[Value], forbid: &[(&str, &str)]) -> (SocketAddr, ApiLog) {
        let mut pods = Vec::new();
        let mut namespaces: HashMap<String, Value> = HashMap::new();
        let mut tasks = Vec::new();
        for w in worlds {
            pods.extend(w.pods.iter().cloned());
            for n in &w.namespaces {
                namespaces.insert(n["metadata"]["name"].as_str().unwrap_or_default().to_string(), n.clone());
            }
            tasks.extend(w.ecs_tasks.iter().cloned());
        }
        let nodes = worlds
            .iter()
            .map(|w| (w.node["metadata"]["name"].as_str().unwrap_or_default().to_string(), w.node.clone()))
            .collect();
        let log = ApiLog::default();
        let forbid = forbid.iter().map(|(v, r)| (v.to_string(), r.to_string())).collect();
        let state = Arc::new(Objects {
            pods,
            namespaces: namespaces.into_values().collect(),
            tasks,
            nodes,
            slices: dra.iter().filter(|o| o["kind"] == "ResourceSlice").cloned().collect(),
            claims: dra.iter().filter(|o| o["kind"] == "ResourceClaim").cloned().collect(),
            log: log.clone(),
            forbid,
        });
        let app = Router::new()
            .route("/api/v1/pods", get(list_pods))
            .route("/api/v1/namespaces", get(list_namespaces))
            .route("/api/v1/nodes/{name}", get(get_node))
            .route("/apis/resource.k8s.io/v1/resourceslices", get(list_resource_slices))
            .route("/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}", get(get_resource_claim))
            .route("/v1/tasks", get(|State(s): State<Arc<Objects>>| async move { Json(json!({ "Tasks": s.tasks })) }))
            .fallback(unserved)
            .with_state(state);
        let addr = self.runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the API stand-in");
            let addr = listener.local_addr().expect("address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        (addr, log)
    }

    /// Serves `v1.PodResourcesLister` on a Unix socket at `socket`.
    pub fn pod_resources(&self, socket: &Path, allocations: &[WorldAllocation]) {
        self.pod_resources_with_claims(socket, allocations, &[]);
    }

    /// [`pod_resources`](Self::pod_resources), also naming the devices each container uses through DRA
    /// claims (`dynamic_resources`).
    pub fn pod_resources_with_claims(&self, socket: &Path, allocations: &[WorldAllocation], claims: &[ClaimUse]) {
        let service =
            PodResourcesListerServer::new(Kubelet { allocations: allocations.to_vec(), claims: claims.to_vec() });
        let socket: PathBuf = socket.to_path_buf();
        self.runtime.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&socket).expect("bind the pod-resources socket");
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(UnixListenerStream::new(listener)),
            );
        });
    }
}

/// A kubeconfig pointing at the API stand-in.
pub fn kubeconfig(path: &Path, api: SocketAddr) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{api}\nusers:\n- name: standin\n  user:\n    token: standin-token\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\ncurrent-context: standin\n"
    );
    std::fs::write(path, text).expect("write kubeconfig");
}

/// A container's use of a device allocated to a ResourceClaim, as the kubelet reports it.
#[derive(Debug, Clone)]
pub struct ClaimUse {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub claim: String,
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// One request to the Kubernetes API stand-in, in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiRequest {
    /// `get`, `list` or `watch` (`unserved <METHOD>` for a path the stand-in does not serve).
    pub verb: String,
    /// The API group: empty for the core group (`/api/v1`).
    pub group: String,
    pub resource: String,
    /// Empty for a cluster-wide request.
    pub namespace: String,
    pub field_selector: String,
}

/// Every request the stand-in received, in order.
pub type ApiLog = Arc<Mutex<Vec<ApiRequest>>>;

struct Objects {
    pods: Vec<Value>,
    namespaces: Vec<Value>,
    tasks: Vec<Value>,
    nodes: HashMap<String, Value>,
    slices: Vec<Value>,
    claims: Vec<Value>,
    log: ApiLog,
    forbid: Vec<(String, String)>,
}

impl Objects {
    /// Records a request to a core-group resource; the API server's 403 when the role lacks it.
    fn record(&self, verb: &str, resource: &str, params: &HashMap<String, String>) -> Option<Response> {
        self.record_in("", "", verb, resource, params)
    }

    /// Records a request to `resource` of API `group` (in `namespace`, empty for cluster-wide); the API
    /// server's 403 when the role lacks it.
    fn record_in(
        &self,
        group: &str,
        namespace: &str,
        verb: &str,
        resource: &str,
        params: &HashMap<String, String>,
    ) -> Option<Response> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(ApiRequest {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            field_selector: params.get("fieldSelector").cloned().unwrap_or_default(),
        });
        self.forbid.iter().any(|(v, r)| v == verb && r == resource).then(|| {
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{namespace}\"")
            };
            let message = format!(
                "{resource} is forbidden: User \"system:serviceaccount:gpucost:gpucost-agent\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            );
            (
                axum::http::StatusCode::FORBIDDEN,
                Json(json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": message, "reason": "Forbidden", "details": { "kind": resource, "group": group }, "code": 403 })),
            )
                .into_response()
        })
    }
}

fn verb(params: &HashMap<String, String>) -> &'static str {
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") { "watch" } else { "list" }
}

/// A path the stand-in does not serve: recorded (so a test sees the agent asked for it) and answered 404.
async fn unserved(State(s): State<Arc<Objects>>, method: axum::http::Method, uri: axum::http::Uri) -> Response {
    s.log.lock().unwrap_or_else(|e| e.into_inner()).push(ApiRequest {
        verb: format!("unserved {method}"),
        group: String::new(),
        resource: uri.path().to_string(),
        namespace: String::new(),
        field_selector: String::new(),
    });
    (
        axum::http::StatusCode::NOT_FOUND,
        Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                    "reason": "NotFound", "code": 404 })),
    )
        .into_response()
}

async fn get_node(State(s): State<Arc<Objects>>, axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    if let Some(refused) = s.record("get", "nodes", &HashMap::new()) {
        return refused;
    }
    match s.nodes.get(&name) {
        Some(n) => Json(n.clone()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": format!("nodes \"{name}\" not found") })),
        )
            .into_response(),
    }
}

/// A list answer, or — for `watch=true` — a watch that stays open with nothing new to say.
fn list_or_watch(params: &HashMap<String, String>, kind: &str, items: Vec<Value>) -> Response {
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let never = tokio_stream::pending::<Result<Bytes, std::io::Error>>();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(never))
            .expect("response");
    }
    Json(json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "100" }, "items": items }))
        .into_response()
}

async fn list_pods(State(s): State<Arc<Objects>>, Query(params): Query<HashMap<String, String>>) -> Response {
    if let Some(refused) = s.record(verb(&params), "pods", &params) {
        return refused;
    }
    let node = params.get("fieldSelector").and_then(|f| f.strip_prefix("spec.nodeName=")).map(str::to_string);
    let items = s.pods.iter().filter(|p| node.as_deref().is_none_or(|n| p["spec"]["nodeName"] == n)).cloned().collect();
    list_or_watch(&params, "PodList", items)
}

async fn list_namespaces(State(s): State<Arc<Objects>>, Query(params): Query<HashMap<String, String>>) -> Response {
    if let Some(refused) = s.record(verb(&params), "namespaces", &params) {
        return refused;
    }
    list_or_watch(&params, "NamespaceList", s.namespaces.clone())
}

/// The field selector's `field=value` pairs (comma-separated, as the API server takes them).
fn field_selector(params: &HashMap<String, String>) -> HashMap<String, String> {
    let text = params.get("fieldSelector").map(String::as_str).unwrap_or_default();
    text.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn list_resource_slices(
    State(s): State<Arc<Objects>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.record_in("resource.k8s.io", "", verb(&params), "resourceslices", &params) {
        return refused;
    }
    let fields = field_selector(&params);
    let items = s
        .slices
        .iter()
        .filter(|o| {
            fields.iter().all(|(k, v)| match k.as_str() {
                "spec.nodeName" => o["spec"]["nodeName"] == v.as_str(),
                "spec.driver" => o["spec"]["driver"] == v.as_str(),
                _ => false,
            })
        })
        .cloned()
        .collect();
    if verb(&params) == "watch" {
        return list_or_watch(&params, "ResourceSliceList", items);
    }
    Json(json!({ "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
                 "metadata": { "resourceVersion": "100" }, "items": items }))
    .into_response()
}

async fn get_resource_claim(
    State(s): State<Arc<Objects>>,
    axum::extract::Path((namespace, name)): axum::extract::Path<(String, String)>,
) -> Response {
    if let Some(refused) = s.record_in("resource.k8s.io", &namespace, "get", "resourceclaims", &HashMap::new()) {
        return refused;
    }
    let found = s
        .claims
        .iter()
        .find(|c| c["metadata"]["namespace"] == namespace.as_str() && c["metadata"]["name"] == name.as_str());
    match found {
        Some(c) => Json(c.clone()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": format!("resourceclaims.resource.k8s.io \"{name}\" not found") })),
        )
            .into_response(),
    }
}

struct Kubelet {
    allocations: Vec<WorldAllocation>,
    claims: Vec<ClaimUse>,
}

impl Kubelet {
    /// Every pod with an allocation, as `List` answers.
    fn pods(&self) -> Vec<pr::PodResources> {
        fn container<'a>(
            pods: &'a mut Vec<pr::PodResources>,
            namespace: &str,
            pod: &str,
            name: &str,
        ) -> &'a mut pr::ContainerResources {
            let p = match pods.iter().position(|p| p.namespace == namespace && p.name == pod) {
                Some(i) => i,
                None => {
                    pods.push(pr::PodResources { name: pod.into(), namespace: namespace.into(), containers: vec![] });
                    pods.len() - 1
                }
            };
            let containers = &mut pods[p].containers;
            let c = match containers.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    containers.push(pr::ContainerResources { name: name.into(), ..Default::default() });
                    containers.len() - 1
                }
            };
            &mut containers[c]
        }
        let mut pods: Vec<pr::PodResources> = Vec::new();
        for a in &self.allocations {
            container(&mut pods, &a.namespace, &a.pod, &a.container).devices.push(pr::ContainerDevices {
                resource_name: "nvidia.com/gpu".into(),
                device_ids: vec![a.device_id.clone()],
                topology: None,
            });
        }
        for u in &self.claims {
            let c = container(&mut pods, &u.namespace, &u.pod, &u.container);
            let resource = pr::ClaimResource {
                // The CDI device the driver's kubelet plugin names for the claim's device.
                cdi_devices: vec![pr::CdiDevice { name: format!("k8s.{}/claim={}-{}", u.driver, u.claim, u.device) }],
                driver_name: u.driver.clone(),
                pool_name: u.pool.clone(),
                device_name: u.device.clone(),
                share_id: None,
            };
            match c.dynamic_resources.iter_mut().find(|d| d.claim_name == u.claim) {
                Some(d) => d.claim_resources.push(resource),
                None => c.dynamic_resources.push(pr::DynamicResource {
                    claim_name: u.claim.clone(),
                    claim_namespace: u.namespace.clone(),
                    claim_resources: vec![resource],
                }),
            }
        }
        pods
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Kubelet {
    async fn list(
        &self,
        _: tonic::Request<pr::ListPodResourcesRequest>,
    ) -> Result<tonic::Response<pr::ListPodResourcesResponse>, tonic::Status> {
        Ok(tonic::Response::new(pr::ListPodResourcesResponse { pod_resources: self.pods() }))
    }

    async fn get_allocatable_resources(
        &self,
        _: tonic::Request<pr::AllocatableResourcesRequest>,
    ) -> Result<tonic::Response<pr::AllocatableResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used by the agent"))
    }

    async fn get(
        &self,
        req: tonic::Request<pr::GetPodResourcesRequest>,
    ) -> Result<tonic::Response<pr::GetPodResourcesResponse>, tonic::Status> {
        let req = req.into_inner();
        // Like the kubelet: a pod it does not run is an error; a pod it runs with no devices has none.
        match self.pods().into_iter().find(|p| p.namespace == req.pod_namespace && p.name == req.pod_name) {
            Some(p) => Ok(tonic::Response::new(pr::GetPodResourcesResponse { pod_resources: Some(p) })),
            None => Err(tonic::Status::not_found(format!(
                "pod {} in namespace {} not found",
                req.pod_name, req.pod_namespace
            ))),
        }
    }
}

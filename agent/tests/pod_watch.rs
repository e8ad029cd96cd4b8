//! The pod watcher against a Kubernetes API stand-in speaking the real list/watch protocol: it fills
//! the cache from the first list, and when the watch expires (`410 Gone`, as after an API-server
//! restart or a compaction) it re-lists and drops the pods deleted meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gpucost_agent::identify::labels::{CollectorKeys, LabelAllow};
use gpucost_agent::identify::pods::{PodCache, watch};
use serde_json::{Value, json};

struct Api {
    pods: Mutex<Vec<Value>>,
    /// Set by the test: the open watch then answers 410 Gone and ends (once).
    expire: tokio::sync::watch::Sender<bool>,
    lists: Mutex<u32>,
}

fn pod(name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "ml", "uid": uid, "resourceVersion": "5",
                      "labels": { "team": "nlp", "pod-template-hash": "6b9c7d" },
                      "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-6b9c7d"),
                                            "uid": "rs-1", "controller": true }] },
        "spec": { "nodeName": "node-a", "containers": [{ "name": "main", "image": "x" }] },
        "status": { "phase": "Running", "containerStatuses": [{ "name": "main", "ready": true, "restartCount": 0,
                    "image": "x", "imageID": "x@sha256:00", "containerID": format!("containerd://{uid}cid") }] },
    })
}

async fn pods(State(api): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(
        q.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a"),
        "the watcher asks for this node's pods only"
    );
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        // The watch stays open until the test expires it: then one 410 event, and the server closes it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let api = api.clone();
        tokio::spawn(async move {
            let mut expired = api.expire.subscribe();
            if expired.wait_for(|e| *e).await.is_err() {
                return;
            }
            api.expire.send_replace(false);
            let event = json!({ "type": "ERROR", "object": { "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "too old resource version: 5 (9)", "reason": "Expired", "code": 410 } });
            let _ = tx.send(Ok(Bytes::from(format!("{event}\n")))).await;
        });
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        return Response::builder().header("content-type", "application/json").body(body).unwrap();
    }
    *api.lists.lock().unwrap() += 1;
    let items = api.pods.lock().unwrap().clone();
    Json(json!({ "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "9" }, "items": items }))
        .into_response()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_relists_and_forgets_pods_deleted_meanwhile() {
    let api = Arc::new(Api {
        pods: Mutex::new(vec![pod("ranker-7f9c", "uid-a")]),
        expire: tokio::sync::watch::Sender::new(false),
        lists: Mutex::new(0),
    });
    let app = Router::new().route("/api/v1/pods", get(pods)).with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cache = PodCache::default();
    tokio::spawn(watch::pods(client, "node-a".into(), cache.clone(), LabelAllow::default(), CollectorKeys::default()));

    eventually("the first list", || cache.by_uid("uid-a").is_some()).await;
    let (a, _) = cache.by_uid("uid-a").unwrap();
    assert_eq!((a.controller_kind.as_str(), a.controller_name.as_str()), ("Deployment", "ranker-7f9c"));
    assert_eq!(a.labels.get("team").map(String::as_str), Some("nlp"));
    assert!(!a.labels.contains_key("pod-template-hash"), "only allow-listed labels are kept");
    assert_eq!(a.containers.get("uid-acid").map(String::as_str), Some("main"));

    // While the watch is down, pod A is deleted and pod B scheduled; then the watch expires.
    *api.pods.lock().unwrap() = vec![pod("trainer-1", "uid-b")];
    api.expire.send_replace(true);
    eventually("the re-list", || cache.by_uid("uid-b").is_some()).await;
    assert!(cache.by_uid("uid-a").is_none(), "a pod deleted while the watch was down is forgotten");
    assert!(*api.lists.lock().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_keys_the_collector_asks_for_are_kept_after_a_relist() {
    let api = Arc::new(Api {
        pods: Mutex::new(vec![pod("ranker-7f9c", "uid-a")]),
        expire: tokio::sync::watch::Sender::new(false),
        lists: Mutex::new(0),
    });
    let app = Router::new().route("/api/v1/pods", get(pods)).with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cache = PodCache::default();
    let keys = CollectorKeys::default();
    tokio::spawn(watch::pods(client, "node-a".into(), cache.clone(), LabelAllow::default(), keys.clone()));
    eventually("the first list", || cache.by_uid("uid-a").is_some()).await;
    assert!(!cache.by_uid("uid-a").unwrap().0.labels.contains_key("pod-template-hash"));

    // The collector's stream opens asking for a key the flags leave out: the pods are listed again with it.
    keys.hear(gpucost_proto::label_keys::parse_header("pod-template-hash"));
    eventually("the re-list", || *api.lists.lock().unwrap() >= 2).await;
    eventually("the asked-for label", || {
        cache
            .by_uid("uid-a")
            .is_some_and(|(p, _)| p.labels.get("pod-template-hash").map(String::as_str) == Some("6b9c7d"))
    })
    .await;
    let (a, _) = cache.by_uid("uid-a").unwrap();
    assert_eq!(a.labels.get("team").map(String::as_str), Some("nlp"), "the flags' keys stay");
}

//! IMDSv2 against a stand-in speaking the real protocol on loopback: a token first (PUT with a TTL
//! header), then metadata reads that must carry it.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use gpucost_agent::identify::imds;
use gpucost_agent::reading::{CapacityType, IntervalReport, NodeInfo};

async fn metadata(headers: HeaderMap, axum::extract::Path(path): axum::extract::Path<String>) -> (StatusCode, String) {
    if headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok()) != Some("tok-123") {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    match path.as_str() {
        "instance-id" => (StatusCode::OK, "i-0abc1234def567890".into()),
        "instance-type" => (StatusCode::OK, "g6.xlarge".into()),
        "instance-life-cycle" => (StatusCode::OK, "spot".into()),
        "placement/availability-zone" => (StatusCode::OK, "us-west-2b".into()),
        "placement/region" => (StatusCode::OK, "us-west-2".into()),
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_type_lifecycle_and_placement_come_from_imdsv2() {
    let app = Router::new()
        .route(
            "/latest/api/token",
            put(|headers: HeaderMap| async move {
                match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(_) => (StatusCode::OK, "tok-123".to_string()),
                    None => (StatusCode::BAD_REQUEST, String::new()),
                }
            }),
        )
        .route("/latest/meta-data/{*path}", get(metadata));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let facts =
        tokio::task::spawn_blocking(move || imds::read(&endpoint, Duration::from_secs(2))).await.unwrap().unwrap();
    assert_eq!(facts.instance_id, "i-0abc1234def567890");
    assert_eq!(facts.instance_type, "g6.xlarge");
    assert_eq!(facts.capacity_type, CapacityType::Spot);
    assert_eq!((facts.region.as_str(), facts.zone.as_str()), ("us-west-2", "us-west-2b"));
    // The node reports the instance id on the wire (NodeInfo.instance_id) unless something set it first.
    let mut node = NodeInfo {
        cluster: "c".into(),
        node_name: "n".into(),
        instance_type: String::new(),
        capacity_type: CapacityType::Unspecified,
        region: String::new(),
        zone: String::new(),
        devices: vec![],
        labels: Default::default(),
        instance_id: String::new(),
    };
    imds::apply(&mut node, &facts);
    assert_eq!((node.instance_id.as_str(), node.instance_type.as_str()), ("i-0abc1234def567890", "g6.xlarge"));
    let wire = gpucost_agent::wire::Framer::new("n".into(), "b".into()).frame(&node, empty_report());
    assert_eq!(wire.node.expect("node").instance_id, "i-0abc1234def567890");
    // What is not an instance id is not taken for one.
    node.instance_id.clear();
    imds::apply(&mut node, &imds::InstanceFacts { instance_id: "i-0abc123".into(), ..facts });
    assert_eq!(node.instance_id, "");
}

fn empty_report() -> IntervalReport {
    IntervalReport {
        interval_start_unix_nanos: 0,
        interval_end_unix_nanos: 1,
        sample_interval_nanos: 1,
        sample_count: 0,
        gpus: vec![],
        processes: vec![],
        allocations: vec![],
    }
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = imds::read(&format!("http://127.0.0.1:{port}"), Duration::from_millis(500)).unwrap_err();
    assert!(e.to_string().starts_with("EC2 instance metadata at http://127.0.0.1:"), "{e}");
    assert!(e.to_string().contains("token"), "{e}");
}

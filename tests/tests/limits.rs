//! Limits: too many streams, or an agent over its batch rate, get RESOURCE_EXHAUSTED saying which limit,
//! are counted on /metrics, and lose nothing (a batch over the rate is not stored and is sent again later).

use std::time::Duration;

use gpucost_e2e::{Collector, free_port, g5_batch, try_send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;

fn batches(node: &str, n: u64) -> Vec<pb::UsageBatch> {
    let now = gpucost_types::clock::now_ns() / NS * NS;
    (0..n)
        .map(|i| {
            let start = now - (n - i) * 60 * NS;
            g5_batch(node, i + 1, start, start + 60 * NS, vec![(0, 50.0, pb::WorkloadIdentity::default())])
        })
        .collect()
}

fn breaches(c: &Collector, limit: &str) -> u64 {
    let (_, text) = c.get_text("/metrics");
    let line = format!("gpucost_limit_breaches_total{{limit=\"{limit}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |v| v.parse().unwrap())
}

#[test]
fn an_agent_over_its_batch_rate_is_told_so_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--max-agent-batches-per-minute", "3"],
        &[],
    );
    let all = batches("n1", 5);
    let e = try_send_batches(&c.grpc_url(), None, all.clone()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("more than 3 batches a minute per stream"), "{e:?}");
    assert!(e.message().contains("seq=4"), "the first three were taken: {e:?}");
    assert_eq!(breaches(&c, "agent_rate"), 1);
    // The agent sends the rest again once its bucket refills (one batch per 20 s here): nothing lost.
    std::thread::sleep(Duration::from_secs(21));
    let acks = try_send_batches(&c.grpc_url(), None, all[3..4].to_vec()).unwrap();
    assert_eq!(acks.len(), 1);
    let (_, usage) = c.get("/api/v1/usage?group_by=node");
    assert_eq!(
        usage["totals"]["held_ns"].as_u64().unwrap(),
        4 * 60 * NS,
        "four one-minute batches, one GPU held: {usage}"
    );
}

#[test]
fn streams_past_the_maximum_are_refused_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with(&dir.path().join("l.db"), free_port(), free_port(), &["--max-streams", "1"], &[]);
    let url = c.grpc_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let mut client = pb::ingest_client::IngestClient::new(channel);
        // One stream held open: it sends nothing yet.
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::UsageBatch>(1);
        let _open = client.report(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
        let e = client.clone().report(tokio_stream::iter(batches("n2", 1))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("1 agent streams are open"), "{e:?}");
        drop(tx);
    });
    drop(rt);
    assert_eq!(breaches(&c, "streams"), 1);
    // Once the first stream is gone, a new one is taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match try_send_batches(&url, None, batches("n3", 1)) {
            Ok(acks) => {
                assert_eq!(acks.len(), 1);
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "no stream taken after the first ended: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

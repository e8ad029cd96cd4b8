//! The agent's uplink hears the label keys a collector asks for, against stand-in collectors on loopback:
//! the `gpucost-label-keys` header as the stream opens and an ack's `label_keys` later; an older collector,
//! which says nothing, leaves the agent with its flags.

use std::pin::Pin;
use std::time::Duration;

use gpucost_agent::identify::labels::{Asked, CollectorKeys};
use gpucost_agent::spool::Spool;
use gpucost_agent::uplink::{UplinkConfig, run};
use gpucost_proto::label_keys::LABEL_KEYS_HEADER;
use gpucost_proto::v1::ingest_server::{Ingest, IngestServer};
use gpucost_proto::v1::{Ack, AckStatus, LabelKeys, UsageBatch};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Acks every batch; opens the stream with `header` (none: an older collector) and tells the ack of batch
/// 3 about `later` keys.
#[derive(Clone)]
struct StandIn {
    header: Option<&'static str>,
    later: Option<Vec<String>>,
}

#[tonic::async_trait]
impl Ingest for StandIn {
    type ReportStream = Pin<Box<dyn Stream<Item = Result<Ack, Status>> + Send + 'static>>;

    async fn report(&self, request: Request<Streaming<UsageBatch>>) -> Result<Response<Self::ReportStream>, Status> {
        let later = self.later.clone();
        let acks = request.into_inner().take_while(|m| m.is_ok()).map(move |m| {
            let b = m.expect("taken while ok");
            let label_keys = later.clone().filter(|_| b.seq == 3).map(|keys| LabelKeys { keys });
            Ok(Ack { boot_id: b.boot_id, seq: b.seq, status: AckStatus::Stored as i32, label_keys })
        });
        let mut response: Response<Self::ReportStream> = Response::new(Box::pin(acks));
        if let Some(h) = self.header {
            response.metadata_mut().insert(LABEL_KEYS_HEADER, h.parse().unwrap());
        }
        Ok(response)
    }
}

/// Streams five batches through the real uplink to `standin`; what the agent then knows of the keys.
fn keys_after(standin: StandIn) -> Asked {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IngestServer::new(standin))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for seq in 1..=5 {
            tx.send(UsageBatch { boot_id: "boot".into(), seq, ..Default::default() }).await.unwrap();
        }
        drop(tx);
        let keys = CollectorKeys::default();
        let config = UplinkConfig { label_keys: Some(keys.clone()), ..UplinkConfig::new(url) };
        tokio::time::timeout(Duration::from_secs(30), run(config, Spool::memory(64), rx))
            .await
            .expect("the uplink finishes")
            .expect("a good endpoint");
        server.abort();
        keys.now()
    })
}

#[test]
fn the_keys_a_collector_announces_as_the_stream_opens_and_in_a_later_ack_are_heard() {
    let opened = keys_after(StandIn { header: Some("tier,backstage.io/owner"), later: None });
    assert!(opened.heard);
    assert_eq!(&*opened.keys, ["tier".to_string(), "backstage.io/owner".into()]);
    let changed = keys_after(StandIn { header: Some("tier"), later: Some(vec!["zone".into(), "Not A Key".into()]) });
    assert_eq!((changed.generation, &*changed.keys), (2, &["zone".to_string()][..]), "the ack's set replaces it");
}

#[test]
fn an_older_collector_that_says_nothing_leaves_the_agent_its_flags() {
    let old = keys_after(StandIn { header: None, later: None });
    assert!(old.heard, "the stream opened");
    assert!(old.keys.is_empty());
}

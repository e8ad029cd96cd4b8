//! `gpucost-agent`: reads what each GPU process did (NVML, or the simulator), names the workload behind
//! it, folds samples into intervals and streams them to the collector.
//!
//! Data flow: `source` (nvml | sim) → `sampler` (clock) → `interval` (fold) → `identify` →
//! `wire` (frame) → `uplink` (gRPC, acked).

pub mod fit;
pub mod identify;
pub mod interval;
pub mod node_metrics;
#[cfg(feature = "node")]
pub mod nvml;
pub mod reading;
pub mod sampler;
pub mod sim;
pub mod source;
pub mod spool;
pub mod uplink;
pub mod wire;

use tokio::sync::{mpsc, watch};

/// Samples `sampler` and streams every interval through the uplink until `intervals` have been sent
/// (if given) or `shutdown` turns true; then ends the current interval, waits until everything sent is
/// acked and returns what the uplink saw.
pub async fn stream_node(
    sampler: sampler::Sampler,
    framer: wire::Framer,
    uplink: uplink::UplinkConfig,
    spool: spool::Spool,
    intervals: Option<u64>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<uplink::UplinkStats> {
    stream_node_observed(sampler, framer, uplink, spool, intervals, shutdown, None).await
}

/// [`stream_node`], showing every framed interval to `observe` (the node's `/metrics`).
pub async fn stream_node_observed(
    mut sampler: sampler::Sampler,
    mut framer: wire::Framer,
    uplink: uplink::UplinkConfig,
    spool: spool::Spool,
    intervals: Option<u64>,
    mut shutdown: watch::Receiver<bool>,
    observe: Option<std::sync::Arc<node_metrics::NodeMetrics>>,
) -> anyhow::Result<uplink::UplinkStats> {
    let (tx, rx) = mpsc::channel(16);
    let sender = tokio::spawn(uplink::run(uplink, spool, rx));
    let mut produced = 0u64;
    while intervals.is_none_or(|n| produced < n) {
        tokio::select! {
            r = sampler.next_interval() => {
                let report = r?;
                let batch = framer.frame(sampler.source().node(), report);
                if let Some(m) = &observe {
                    m.observe(&batch);
                }
                if tx.send(batch).await.is_err() {
                    break;
                }
                produced += 1;
            }
            _ = stopped(&mut shutdown) => {
                if let Some(report) = sampler.close_now() {
                    let _ = tx.send(framer.frame(sampler.source().node(), report)).await;
                }
                break;
            }
        }
    }
    drop(tx);
    Ok(sender.await??)
}

/// Resolves once `rx` reads true; never, if its sender is gone without saying so.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

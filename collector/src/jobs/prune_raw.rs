//! Deletes raw per-interval rows past `--raw-retention` (the rollups are kept for good), on the collector
//! leading the job.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Run};
use gpucost_ledger::Ledger;

pub struct PruneRaw {
    ledger: Arc<dyn Ledger>,
    retention_ns: u64,
}

impl PruneRaw {
    pub fn new(ledger: Arc<dyn Ledger>, retention: Duration) -> Self {
        Self { ledger, retention_ns: retention.as_nanos() as u64 }
    }
}

impl Job for PruneRaw {
    fn name(&self) -> &'static str {
        "prune-raw"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(300)
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let (ledger, retention) = (self.ledger.clone(), self.retention_ns);
            let n = tokio::task::spawn_blocking(move || {
                ledger.prune_raw(gpucost_types::clock::now_ns().saturating_sub(retention))
            })
            .await?
            .map_err(|e| anyhow::anyhow!("pruning raw intervals failed: {e}"))?;
            if n > 0 {
                tracing::info!(rows = n, "pruned raw intervals past retention");
            }
            Ok(())
        })
    }
}

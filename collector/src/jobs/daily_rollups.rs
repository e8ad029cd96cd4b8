//! Builds the daily rollups of days that have ended, 8 a run, so that a ledger with a long history (each day
//! summed while holding the writer) catches up without stalling ingest (`ledger/sqlite/days.rs`); on the
//! collector leading the job.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Run};
use gpucost_ledger::Ledger;

pub struct DailyRollups {
    ledger: Arc<dyn Ledger>,
}

impl DailyRollups {
    pub fn new(ledger: Arc<dyn Ledger>) -> Self {
        Self { ledger }
    }
}

impl Job for DailyRollups {
    fn name(&self) -> &'static str {
        "daily-rollups"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(300)
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let ledger = self.ledger.clone();
            let n = tokio::task::spawn_blocking(move || ledger.build_daily_rollups(gpucost_types::clock::now_ns(), 8))
                .await?
                .map_err(|e| anyhow::anyhow!("building daily rollups failed: {e}"))?;
            if n > 0 {
                tracing::info!(days = n, "built daily rollups");
            }
            Ok(())
        })
    }
}

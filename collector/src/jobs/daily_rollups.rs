//! Builds the daily rollups of days that have ended, 8 a run, so that a ledger with a long history (each day
//! summed while holding the writer) catches up without stalling ingest (`ledger/src/store/days.rs`); on the
//! collector leading the job. While days are left to build (a run built its 8) the next run follows after a few
//! seconds instead of the usual 5 minutes, so a month of backfilled history is summed within a minute or two rather
//! than over 20 minutes of slower reports.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Run};
use gpucost_ledger::Ledger;

/// Days summed a run, at most.
const DAYS_A_RUN: usize = 8;
/// The time between runs once caught up, and while catching up.
const PERIOD: Duration = Duration::from_secs(300);
const CATCHING_UP: Duration = Duration::from_secs(2);

pub struct DailyRollups {
    ledger: Arc<dyn Ledger>,
    /// The last run built as many days as a run may: more may be waiting.
    behind: bool,
}

impl DailyRollups {
    pub fn new(ledger: Arc<dyn Ledger>) -> Self {
        Self { ledger, behind: false }
    }
}

impl Job for DailyRollups {
    fn name(&self) -> &'static str {
        "daily-rollups"
    }

    fn period(&self) -> Duration {
        if self.behind { CATCHING_UP } else { PERIOD }
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let ledger = self.ledger.clone();
            self.behind = false;
            let n = tokio::task::spawn_blocking(move || {
                ledger.build_daily_rollups(gpucost_types::clock::now_ns(), DAYS_A_RUN)
            })
            .await?
            .map_err(|e| anyhow::anyhow!("building daily rollups failed: {e}"))?;
            self.behind = n == DAYS_A_RUN;
            if n > 0 {
                tracing::info!(days = n, "built daily rollups");
            }
            Ok(())
        })
    }
}

//! Delivers the budget alerts due from the ledger's outbox (webhook, Slack, Alertmanager), every second or as
//! soon as an evaluation queued one; each failure is retried with backoff. One collector delivers: several
//! sharing a ledger would send each notification more than once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Job, Run};
use crate::budget::engine::{self, BudgetConfig};
use gpucost_ledger::Ledger;

pub struct AlertDelivery {
    ledger: Arc<dyn Ledger>,
    config: Arc<BudgetConfig>,
    generator_url: String,
    due: Arc<Notify>,
}

impl AlertDelivery {
    /// `due` wakes it before its second is over.
    pub fn new(ledger: Arc<dyn Ledger>, config: Arc<BudgetConfig>, generator_url: String, due: Arc<Notify>) -> Self {
        Self { ledger, config, generator_url, due }
    }
}

impl Job for AlertDelivery {
    fn name(&self) -> &'static str {
        "alert-delivery"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn at_start(&self) -> bool {
        false
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(self.due.clone())
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let (ledger, config, url) = (self.ledger.clone(), self.config.clone(), self.generator_url.clone());
            tokio::task::spawn_blocking(move || {
                engine::deliver_due(ledger.as_ref(), &config, &url, gpucost_types::clock::now_ns())
            })
            .await?
            .map_err(|e| anyhow::anyhow!("cannot read the alert outbox: {e}"))?;
            Ok(())
        })
    }
}

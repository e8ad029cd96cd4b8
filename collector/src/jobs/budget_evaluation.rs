//! Evaluates every budget (spend, forecast, thresholds) every `--budget-eval-interval`, and at once when a
//! budget changes through the API. On a shared ledger the collector leading `budget-evaluation` records the
//! transitions and keeps Alertmanager's firing alerts alive; the others only read the statuses for /metrics.
//! A transition wakes alert delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Job, Run};
use crate::budget::engine::{self, BudgetConfig};
use crate::budget::notify::{self, Notifier};
use crate::metrics::Metrics;
use gpucost_ledger::{Ledger, LedgerError};

pub struct BudgetEvaluation {
    ledger: Arc<dyn Ledger>,
    config: Arc<BudgetConfig>,
    generator_url: String,
    metrics: Arc<Metrics>,
    poke: Arc<Notify>,
    delivery: Arc<Notify>,
}

impl BudgetEvaluation {
    /// `poke` starts an evaluation now; `delivery` is woken when one records a transition.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        config: Arc<BudgetConfig>,
        generator_url: String,
        metrics: Arc<Metrics>,
        poke: Arc<Notify>,
        delivery: Arc<Notify>,
    ) -> Self {
        Self { ledger, config, generator_url, metrics, poke, delivery }
    }
}

impl Job for BudgetEvaluation {
    fn name(&self) -> &'static str {
        "budget-evaluation"
    }

    fn period(&self) -> Duration {
        self.config.every
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(self.poke.clone())
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let (l, c, url) = (self.ledger.clone(), self.config.clone(), self.generator_url.clone());
            let (statuses, transitions, pending) = tokio::task::spawn_blocking(move || {
                let now = gpucost_types::clock::now_ns();
                // One collector evaluates (and records transitions); the others only read the status.
                if !l.lead("budget-evaluation") {
                    return Ok((engine::statuses_only(l.as_ref(), &c, now)?, 0, l.pending_notifications()?));
                }
                let (statuses, events) = engine::evaluate_once(l.as_ref(), &c, now)?;
                // Keep Alertmanager's firing alerts alive (it dedups them by labels).
                if let Some(am) = c.notifiers.iter().find(|n| matches!(n, Notifier::Alertmanager { .. })) {
                    for e in engine::firing(l.as_ref(), &statuses)? {
                        if let Err(err) = notify::send(am, &e, &url, c.firing_for(), c.timeout) {
                            tracing::warn!(error = %err, budget = e.budget, "cannot refresh the alert in Alertmanager");
                        }
                    }
                }
                let pending = l.pending_notifications()?;
                Ok::<_, LedgerError>((statuses, events.len(), pending))
            })
            .await?
            .map_err(|e| anyhow::anyhow!("budget evaluation failed: {e}"))?;
            self.metrics.set_budgets(&statuses, pending);
            if transitions > 0 {
                self.delivery.notify_one();
            }
            Ok(())
        })
    }
}

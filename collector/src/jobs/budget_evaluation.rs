//! Evaluates every budget (spend, forecast, thresholds) every `--budget-eval-interval`, and at once when a
//! budget changes through the API. On a shared ledger the collector leading `budget-evaluation` records the
//! transitions and keeps Alertmanager's firing alerts alive; the others only read the statuses for /metrics.
//! A transition wakes alert delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Job, Run};
use crate::budget::alerts::{self, Memo};
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
    /// Which bucket each anomaly rule was last evaluated for.
    memo: Arc<std::sync::Mutex<Memo>>,
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
        Self { ledger, config, generator_url, metrics, poke, delivery, memo: Arc::default() }
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
            let memo = self.memo.clone();
            let (statuses, transitions, pending) = tokio::task::spawn_blocking(move || {
                let now = gpucost_types::clock::now_ns();
                // One collector evaluates (and records transitions); the others only read the status.
                if !l.lead("budget-evaluation") {
                    return Ok((engine::statuses_only(l.as_ref(), &c, now)?, 0, l.pending_notifications()?));
                }
                let (statuses, events) = engine::evaluate_once(l.as_ref(), &c, now)?;
                let mut changed = events.len();
                // Idle-GPU and anomaly alerts: a failure is logged and leaves the budgets' evaluation standing.
                let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
                match alerts::evaluate_once(l.as_ref(), &c, &mut memo, now) {
                    Ok(alerted) => changed += alerted.len(),
                    Err(e) => tracing::warn!(error = %e, "idle-GPU and anomaly alert evaluation failed"),
                }
                // Keep Alertmanager's firing alerts alive (it dedups them by labels).
                if let Some(am) = c.notifiers.iter().find(|n| matches!(n, Notifier::Alertmanager { .. })) {
                    for e in engine::firing(l.as_ref(), &statuses)? {
                        let budget = e.budget.clone();
                        if let Err(err) =
                            notify::send(am, &notify::Outgoing::Budget(e), &url, c.firing_for(), c.timeout)
                        {
                            tracing::warn!(error = %err, budget, "cannot refresh the alert in Alertmanager");
                        }
                    }
                }
                if let Some(am) = c.notifiers.iter().find(|n| matches!(n, Notifier::Alertmanager { .. })) {
                    for e in alerts::firing(l.as_ref(), now)? {
                        let key = e.key.clone();
                        if let Err(err) = notify::send(am, &notify::Outgoing::Alert(e), &url, c.firing_for(), c.timeout)
                        {
                            tracing::warn!(error = %err, key, "cannot refresh the alert in Alertmanager");
                        }
                    }
                }
                let pending = l.pending_notifications()?;
                Ok::<_, LedgerError>((statuses, changed, pending))
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

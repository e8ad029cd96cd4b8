//! Each team's potential monthly saving from right-sizing, for /metrics
//! (`gpucost_recommendation_savings_usd_monthly{team}`): the recommendations of the last 14 days
//! (`http::recommendations`), every 10 minutes once it has savings to show, every 10 s until then. Run on every replica like the efficiency gauge: the evidence
//! and costs of 14 days are read from daily sums where they exist, and the answer changes slowly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Job, Run};
use crate::metrics::Metrics;
use gpucost_ledger::Ledger;
use gpucost_rules::book::PriceBook;

pub struct RecommendationSavings {
    ledger: Arc<dyn Ledger>,
    prices: Arc<PriceBook>,
    metrics: Arc<Metrics>,
    shown: Option<Instant>,
}

impl RecommendationSavings {
    pub fn new(ledger: Arc<dyn Ledger>, prices: Arc<PriceBook>, metrics: Arc<Metrics>) -> Self {
        Self { ledger, prices, metrics, shown: None }
    }
}

impl Job for RecommendationSavings {
    fn name(&self) -> &'static str {
        "recommendation-savings"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            if self.shown.is_some_and(|at| at.elapsed() < Duration::from_secs(600)) {
                return Ok(());
            }
            let (ledger, prices, metrics) = (self.ledger.clone(), self.prices.clone(), self.metrics.clone());
            let teams = tokio::task::spawn_blocking(move || {
                let teams = crate::http::recommendations::savings_by_team(
                    ledger.as_ref(),
                    &prices,
                    gpucost_types::clock::now_ns(),
                )?;
                metrics.set_savings(&teams);
                anyhow::Ok(teams.len())
            })
            .await??;
            self.shown = (teams > 0).then(Instant::now);
            Ok(())
        })
    }
}

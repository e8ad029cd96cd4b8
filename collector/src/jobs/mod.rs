//! Background work under one supervisor. Each job is a file implementing [`Job`]: its name, its period,
//! whether it runs at start, whether only the collector leading it on a shared ledger runs it, and one run.
//! [`supervise`] runs it on its period until shutdown, logs each failure the same way (`job`, the error, when
//! it runs next) and keeps one family of metrics per job: `gpucost_job_runs_total`,
//! `gpucost_job_failures_total`, `gpucost_job_duration_seconds` (of the last run) and
//! `gpucost_job_last_success_timestamp_seconds`.

pub mod alert_delivery;
#[cfg(feature = "aws")]
pub mod aws_discovery;
pub mod bill_import;
pub mod budget_evaluation;
pub mod catalog_sync;
pub mod daily_rollups;
pub mod mlflow_write_back;
pub mod prune_raw;
pub mod recommendation_savings;
pub mod team_efficiency;
pub mod tls_reload;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use gpucost_ledger::Ledger;

/// One run of a job.
pub type Run<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// A piece of background work the supervisor runs on a period.
pub trait Job: Send + 'static {
    /// Its name, in logs, metrics and leadership (`ledger.lead(name)`).
    fn name(&self) -> &'static str;
    /// The time between the end of one run and the start of the next.
    fn period(&self) -> Duration;
    /// Whether the first run is at start (else after one period).
    fn at_start(&self) -> bool {
        true
    }
    /// Whether, on a ledger shared by several collectors, only the one leading this job runs it.
    fn leader_only(&self) -> bool {
        false
    }
    /// A signal that starts the next run before its period is over (a budget changed through the API).
    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// One run. Blocking work (the ledger) goes to `spawn_blocking` inside it.
    fn run(&mut self) -> Run<'_>;
}

/// Runs `job` on its period until `stop` turns true, as a task of `tasks`.
pub fn supervise(
    mut job: Box<dyn Job>,
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) {
    tasks.spawn(async move {
        let name = job.name();
        let mut first = job.at_start();
        let wake = job.wake();
        loop {
            if !first {
                let woken = async {
                    match &wake {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(job.period()) => {}
                    _ = woken => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
            }
            first = false;
            if job.leader_only() {
                let ledger = ledger.clone();
                if !tokio::task::spawn_blocking(move || ledger.lead(name)).await.unwrap_or(false) {
                    continue;
                }
            }
            let began = Instant::now();
            let outcome = tokio::select! {
                r = job.run() => r,
                _ = stopped(&mut stop) => return Ok(()),
            };
            metrics.job_ran(name, began.elapsed(), outcome.is_ok());
            if let Err(e) = outcome {
                tracing::warn!(job = name, error = %format!("{e:#}"), next_in = ?job.period(), "job failed; it runs again after its period");
            }
        }
    });
}

/// Resolves once `rx` reads true; never, if its sender is gone without saying so.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The latest cloud inventory, shared between the discovery job, ingest and the API.
pub type SharedInventory = std::sync::Arc<std::sync::RwLock<gpucost_rules::inventory::Inventory>>;

/// AWS discovery (`aws_discovery`, with the `aws` feature): where and how often.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// An AWS-compatible endpoint instead of AWS's (an emulator in tests).
    pub endpoint_url: Option<String>,
    pub every: Duration,
}

/// Bill import (`bill_import`): where the Data Exports deliveries are and how often to look.
#[derive(Debug, Clone)]
pub struct BillConfig {
    pub source: BillSource,
    /// Only this export.
    pub export: Option<String>,
    pub every: Duration,
}

#[derive(Debug, Clone)]
pub enum BillSource {
    Dir(std::path::PathBuf),
    /// `s3://bucket/prefix`, and an S3-compatible endpoint instead of AWS's (an emulator in tests).
    S3 {
        uri: String,
        endpoint_url: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flaky {
        runs: Arc<std::sync::atomic::AtomicU32>,
    }

    impl Job for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn period(&self) -> Duration {
            Duration::from_millis(10)
        }
        fn run(&mut self) -> Run<'_> {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                anyhow::ensure!(n % 2 == 1, "run {n} fails");
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_job_runs_on_its_period_its_failures_are_counted_and_it_stops_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Arc<dyn Ledger> = Arc::new(
            gpucost_ledger::SqliteLedger::open(&dir.path().join("l.db"), 3_600_000_000_000, u64::MAX).unwrap(),
        );
        let metrics = Arc::new(Metrics::default());
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (tx, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        supervise(Box::new(Flaky { runs: runs.clone() }), ledger, metrics.clone(), rx, &mut tasks);
        while runs.load(std::sync::atomic::Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).unwrap();
        tasks.join_next().await.unwrap().unwrap().unwrap();
        let text = metrics.render();
        let value = |family: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(&format!("{family}{{job=\"flaky\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{family} missing:\n{text}"))
        };
        let (ran, failed) = (value("gpucost_job_runs_total"), value("gpucost_job_failures_total"));
        assert!(ran >= 4.0 && (failed - ran / 2.0).abs() <= 1.0, "runs {ran}, failures {failed}");
        assert!(value("gpucost_job_last_success_timestamp_seconds") > 1.7e9);
        let after = runs.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), after, "no run after shutdown");
    }
}

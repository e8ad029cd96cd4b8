//! Writes GPU cost back to MLflow (tags on runs and model versions), on the collector leading the job.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Job, Run};
use crate::enrich::mlflow::MlflowConfig;
use crate::enrich::mlflow::{MlflowClient, WriteBack};
use crate::metrics::Metrics;
use gpucost_ledger::Ledger;

pub struct MlflowWriteBack {
    ledger: Arc<dyn Ledger>,
    client: Arc<MlflowClient>,
    state: Arc<Mutex<WriteBack>>,
    metrics: Arc<Metrics>,
    every: Duration,
}

impl MlflowWriteBack {
    pub fn new(config: &MlflowConfig, ledger: Arc<dyn Ledger>, metrics: Arc<Metrics>) -> Self {
        let client = Arc::new(MlflowClient::new(&config.url, config.auth.clone(), Duration::from_secs(10)));
        Self { ledger, client, state: Arc::default(), metrics, every: config.every }
    }
}

impl Job for MlflowWriteBack {
    fn name(&self) -> &'static str {
        "mlflow-write-back"
    }

    fn period(&self) -> Duration {
        self.every
    }

    fn at_start(&self) -> bool {
        false
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            let (ledger, client, state) = (self.ledger.clone(), self.client.clone(), self.state.clone());
            let pass = tokio::task::spawn_blocking(move || {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                crate::enrich::mlflow::write_back(ledger.as_ref(), &client, &mut state)
            })
            .await;
            match pass {
                Ok(Ok(s)) => {
                    self.metrics.sync("mlflow", s.failed == 0);
                    if s.written + s.failed > 0 {
                        tracing::info!(written = s.written, refused = s.failed, "wrote GPU cost to MLflow");
                    }
                    Ok(())
                }
                Ok(Err(e)) => {
                    self.metrics.sync("mlflow", false);
                    Err(anyhow::anyhow!("MLflow write-back failed: {e}"))
                }
                Err(e) => {
                    self.metrics.sync("mlflow", false);
                    Err(anyhow::anyhow!("MLflow write-back panicked: {e}"))
                }
            }
        })
    }
}

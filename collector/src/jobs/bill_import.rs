//! Bill import (issue 25): every `--bill-import-interval`, the Data Exports deliveries in `--bill-dir` or
//! `--bill-s3` that are new or restated go into the ledger (`bill::import`); those already stored are skipped
//! without reading their files. Leader-only: on a shared ledger one collector imports. A delivery refused
//! (a bad file) fails the run, naming it, and is tried again next time; the others are imported.

use std::sync::Arc;
use std::time::Duration;

use super::{BillConfig, BillSource, Job, Run};
use crate::bill::import::import_all;
use crate::bill::source::Source;
use gpucost_ledger::Ledger;
use gpucost_ledger::bill::BillImport;

pub struct BillImportJob {
    source: Source,
    ledger: Arc<dyn Ledger>,
    export: Option<String>,
    every: Duration,
}

impl BillImportJob {
    pub async fn new(config: &BillConfig, ledger: Arc<dyn Ledger>) -> anyhow::Result<Self> {
        let source = match &config.source {
            BillSource::Dir(dir) => Source::Dir(dir.clone()),
            #[cfg(feature = "aws")]
            BillSource::S3 { uri, endpoint_url } => {
                Source::s3(uri, endpoint_url.as_deref()).await.map_err(|e| anyhow::anyhow!("--bill-s3: {e}"))?
            }
            #[cfg(not(feature = "aws"))]
            BillSource::S3 { .. } => {
                anyhow::bail!("--bill-s3: this collector was built without AWS (cargo feature `aws`)")
            }
        };
        Ok(Self { source, ledger, export: config.export.clone(), every: config.every })
    }

    async fn import(&self) -> anyhow::Result<()> {
        let results =
            import_all(&self.source, &self.ledger, self.export.as_deref(), gpucost_types::clock::now_ns()).await?;
        let mut refused = Vec::new();
        for (manifest, r) in results {
            match r {
                Ok(i) => match i.outcome {
                    BillImport::Unchanged => {}
                    BillImport::Imported { lines } => {
                        tracing::info!(export = %i.export, period = %i.billing_period, lines, manifest, "bill imported")
                    }
                    BillImport::Replaced { lines, old_lines } => {
                        tracing::info!(export = %i.export, period = %i.billing_period, lines, old_lines, manifest, "restated bill replaced")
                    }
                },
                Err(e) => refused.push(format!("{manifest}: {e}")),
            }
        }
        anyhow::ensure!(refused.is_empty(), "bill deliveries refused, nothing of them stored: {}", refused.join("; "));
        Ok(())
    }
}

impl Job for BillImportJob {
    fn name(&self) -> &'static str {
        "bill-import"
    }

    fn period(&self) -> Duration {
        self.every
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(self.import())
    }
}

//! The catalog from Backstage (owners, teams, components).
//!
//! Syncs the catalog from Backstage now (bounded) and then every `every`. Every catalog fetched is kept in the
//! ledger as the last good copy (`enrich::backstage`); a failed sync keeps the catalog in force, so attribution
//! goes on while Backstage is down, and a collector that starts while Backstage cannot be reached (or answers an
//! error) starts from the kept copy. This returns before ingest starts: no batch is attributed with an empty
//! catalog while a kept one exists. An empty answer after a catalog that named owners is refused as suspect. On
//! a ledger shared by several collectors one of them (the `catalog-sync` leader) fetches; the others take the
//! copy it keeps.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Run};
use crate::enrich::backstage;
use crate::enrich::backstage::BackstageConfig;
use crate::metrics::Metrics;
use gpucost_ledger::Ledger;
use gpucost_rules::catalog::Catalog;

/// What one pass found: a catalog fetched by this collector (and when), the kept copy when it is newer
/// than the catalog in force, or nothing new.
enum Found {
    Fetched(Result<(Catalog, u64), String>),
    Kept(Result<Option<(Catalog, u64)>, String>),
}
fn take(owners: &crate::enrich::SharedOwners, catalog: Catalog) {
    owners.write().unwrap_or_else(|e| e.into_inner()).catalog = catalog;
}
/// One pass; `Err` says why this collector, due to fetch, has no new catalog.
async fn sync(
    b: &BackstageConfig,
    owners: &crate::enrich::SharedOwners,
    ledger: &Arc<dyn Ledger>,
    metrics: &Metrics,
    applied_ns: &mut u64,
    fetched_at: &mut Option<std::time::Instant>,
) -> Result<(), String> {
    let (url, token, l, o, applied) = (b.url.clone(), b.token.clone(), ledger.clone(), owners.clone(), *applied_ns);
    let fetch_due = fetched_at.is_none_or(|t| t.elapsed() >= b.every);
    let found = tokio::task::spawn_blocking(move || {
        if !l.lead("catalog-sync") {
            return Found::Kept(backstage::kept(l.as_ref()).map(|k| k.filter(|(_, at)| *at > applied)));
        }
        if !fetch_due {
            return Found::Kept(Ok(None));
        }
        let fetched = backstage::fetch(&url, token.as_deref(), Duration::from_secs(20)).and_then(|catalog| {
            if catalog.is_empty() {
                let in_force = o.read().unwrap_or_else(|e| e.into_inner()).catalog.clone();
                let kept = backstage::kept(l.as_ref()).ok().flatten().map(|(c, _)| c);
                if let Some(why) = backstage::suspect(&catalog, Some(&in_force))
                    .or_else(|| backstage::suspect(&catalog, kept.as_ref()))
                {
                    return Err(format!("{why}; keeping the last good copy"));
                }
            }
            let at = gpucost_types::clock::now_ns();
            if let Err(e) = backstage::keep(l.as_ref(), &catalog, at) {
                tracing::warn!(error = %e, "cannot keep the catalog in the ledger");
            }
            Ok((catalog, at))
        });
        Found::Fetched(fetched)
    })
    .await;
    if matches!(found, Ok(Found::Fetched(_))) {
        *fetched_at = Some(std::time::Instant::now());
    }
    match found {
        Ok(Found::Fetched(Ok((catalog, at)))) => {
            tracing::debug!(
                groups = catalog.groups.len(),
                components = catalog.components.len(),
                "catalog synced from Backstage"
            );
            take(owners, catalog);
            *applied_ns = at;
            metrics.sync("backstage", true);
            metrics.catalog_synced("backstage", at);
            Ok(())
        }
        Ok(Found::Fetched(Err(e))) => {
            metrics.sync("backstage", false);
            Err(e)
        }
        Ok(Found::Kept(Ok(Some((catalog, at))))) => {
            tracing::debug!(groups = catalog.groups.len(), "catalog taken from the shared ledger");
            take(owners, catalog);
            *applied_ns = at;
            metrics.sync("backstage", true);
            metrics.catalog_synced("ledger", at);
            Ok(())
        }
        Ok(Found::Kept(Ok(None))) => Ok(()),
        Ok(Found::Kept(Err(e))) => {
            tracing::warn!(error = %e, "cannot take the shared catalog from the ledger; keeping ours");
            Ok(())
        }
        Err(e) => {
            metrics.sync("backstage", false);
            Err(format!("Backstage sync panicked: {e}"))
        }
    }
}

/// The sync, once started: what it keeps between runs.
pub struct CatalogSync {
    b: BackstageConfig,
    owners: crate::enrich::SharedOwners,
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    applied_ns: u64,
    fetched_at: Option<std::time::Instant>,
}

impl CatalogSync {
    /// Syncs now (at most 30 s), or takes the copy kept in the ledger, before ingest starts.
    pub async fn start(
        b: BackstageConfig,
        owners: crate::enrich::SharedOwners,
        ledger: Arc<dyn Ledger>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (mut applied_ns, mut fetched_at) = (0, None);
        let first = tokio::time::timeout(
            Duration::from_secs(30),
            sync(&b, &owners, &ledger, &metrics, &mut applied_ns, &mut fetched_at),
        )
        .await
        .unwrap_or_else(|_| {
            metrics.sync("backstage", false);
            Err(format!("Backstage at {} did not answer within 30 s", b.url))
        });
        if let Err(error) = first {
            let l = ledger.clone();
            match tokio::task::spawn_blocking(move || backstage::kept(l.as_ref())).await {
                Ok(Ok(Some((catalog, at)))) => {
                    let age = Duration::from_secs(gpucost_types::clock::now_ns().saturating_sub(at) / 1_000_000_000);
                    tracing::warn!(
                        %error,
                        fetched = %gpucost_types::period::utc(at),
                        age = %humantime::format_duration(age),
                        age_s = age.as_secs(),
                        "cannot sync the catalog from Backstage at start-up; attributing with the last good copy, kept in the ledger"
                    );
                    take(&owners, catalog);
                    applied_ns = at;
                    metrics.catalog_synced("ledger", at);
                }
                Ok(Ok(None)) => tracing::warn!(
                    %error,
                    "cannot sync the catalog from Backstage at start-up, and the ledger keeps no copy of it; attributing \
                     without it (with --catalog-dir's, if given) until a sync succeeds"
                ),
                Ok(Err(kept)) => tracing::warn!(
                    %error,
                    %kept,
                    "cannot sync the catalog from Backstage at start-up, nor read the copy kept in the ledger; attributing \
                     without it (with --catalog-dir's, if given) until a sync succeeds"
                ),
                Err(e) => tracing::warn!(%error, panic = %e, "reading the kept catalog panicked"),
            }
        }
        Self { b, owners, ledger, metrics, applied_ns, fetched_at }
    }
}

impl Job for CatalogSync {
    fn name(&self) -> &'static str {
        "catalog-sync"
    }

    /// Followers look for a newer copy in the ledger more often than the leader fetches one.
    fn period(&self) -> Duration {
        self.b.every.min(Duration::from_secs(15))
    }

    fn at_start(&self) -> bool {
        false
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            sync(&self.b, &self.owners, &self.ledger, &self.metrics, &mut self.applied_ns, &mut self.fetched_at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot sync the catalog from Backstage; keeping the last good copy: {e}"))
        })
    }
}

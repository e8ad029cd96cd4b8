//! AWS discovery: EKS node groups and ECS GPU container instances and tasks, to price nodes whose agent
//! reported no instance type. Runs once at start (at most 60 s), then every `--aws-discovery-interval`,
//! keeping the last good inventory.

use std::sync::Arc;
use std::time::Duration;

use super::DiscoveryConfig;
use super::{Job, Run};
use crate::discover::AwsDiscovery;
use crate::jobs::SharedInventory;
use crate::metrics::Metrics;
use gpucost_rules::book::PriceBook;

pub struct AwsDiscoveryJob {
    aws: AwsDiscovery,
    shared: SharedInventory,
    prices: Arc<PriceBook>,
    metrics: Arc<Metrics>,
    every: Duration,
}

impl AwsDiscoveryJob {
    /// Discovers once now (at most 60 s); returns the job and the inventory it keeps up to date.
    pub async fn start(
        prices: Arc<PriceBook>,
        config: &DiscoveryConfig,
        metrics: Arc<Metrics>,
    ) -> (Self, SharedInventory) {
        let inventory = SharedInventory::default();
        let aws = AwsDiscovery::new(config.endpoint_url.as_deref()).await;
        let mut job = Self { aws, shared: inventory.clone(), prices, metrics, every: config.every };
        match tokio::time::timeout(Duration::from_secs(60), job.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "AWS discovery at start-up failed; going on without an inventory until it works")
            }
            Err(_) => {
                job.metrics.sync("aws", false);
                tracing::warn!("AWS discovery took over 60 s at start-up; going on without it for now");
            }
        }
        (job, inventory)
    }

    async fn refresh(&mut self) -> anyhow::Result<()> {
        let prices = self.prices.clone();
        match self.aws.inventory(&|t| prices.gpus_of(t)).await {
            Ok(inv) => {
                tracing::info!(
                    node_groups = inv.node_groups.len(),
                    ecs_instances = inv.ecs_instances.len(),
                    ecs_tasks = inv.ecs_tasks.len(),
                    "AWS discovery"
                );
                *self.shared.write().unwrap_or_else(|e| e.into_inner()) = inv;
                self.metrics.sync("aws", true);
                Ok(())
            }
            Err(e) => {
                self.metrics.sync("aws", false);
                Err(anyhow::anyhow!("AWS discovery failed, keeping the last inventory: {e}"))
            }
        }
    }
}

impl Job for AwsDiscoveryJob {
    fn name(&self) -> &'static str {
        "aws-discovery"
    }

    fn period(&self) -> Duration {
        self.every
    }

    fn at_start(&self) -> bool {
        false
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(self.refresh())
    }
}

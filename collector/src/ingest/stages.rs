//! One batch's way from the wire to the ledger, top to bottom: the README's picture is this file.
//!
//! ```text
//! UsageBatch ─validate→ Batch ─hold→ Held ─price→ Priced ─attribute→ Attributed ─store→ Recorded
//! ```
//!
//! Each stage is a plain function from one type to the next (`gpucost_types::stage`); the rules behind them are
//! pure code in `gpucost-rules`. The stream handler (`service`) calls [`Stages::prepare`] for each batch it
//! reads and [`Stages::store`] to hand it to the ledger's writer, and keeps only the flow control: the window,
//! the limits, the acks. Re-pricing and re-attribution price and attribute stored GPU time with the same
//! functions: [`gpu_price`] and [`owner_of`].

use std::sync::Arc;

use gpucost_ledger::writer::WriterHandle;
use gpucost_ledger::{LedgerError, Recorded};
use gpucost_proto::v1 as pb;
use gpucost_rules::attribute::Owners;
use gpucost_rules::book::{PriceBook, Unpriced};
use gpucost_rules::inventory::Inventory;
use gpucost_types::batch::{Batch, Identity, Node};
use gpucost_types::money::GpuPrice;
use gpucost_types::ownership::Ownership;
use gpucost_types::stage::{Attributed, Held, Priced};
use tokio::sync::oneshot;

use super::refs::StreamWorkloads;
use super::validate::{Limits, ValidationError, validate_on_stream};
use crate::enrich::SharedOwners;
use crate::jobs::SharedInventory;

/// 1. Validated: every field checked against the wire contract and the limits, identities keyed, workloads
///    declared on the stream resolved (`validate`).
pub fn validate(
    wire: &pb::UsageBatch,
    now_ns: u64,
    limits: &Limits,
    workloads: &mut StreamWorkloads,
) -> Result<Batch, ValidationError> {
    validate_on_stream(wire, now_ns, limits, workloads)
}

/// 2. Held: which workloads held each GPU over the interval, and the GPU time each used
///    (`gpucost_rules::share`).
pub fn hold(batch: Batch) -> Held {
    gpucost_rules::share::hold(batch)
}

/// 3. Priced: each device's cost over the interval, and each holding's part under every split policy; a node
///    without an instance type is resolved from the cloud inventory (`gpucost_rules::priced`).
pub fn price(book: &PriceBook, inventory: Option<&Inventory>, held: Held) -> Priced {
    gpucost_rules::priced::price(book, inventory, held)
}

/// 4. Attributed: the owner of each holding, by the owner rules against the catalog
///    (`gpucost_rules::attribute`); every holding `unattributed` when no owners are configured.
pub fn attribute(owners: Option<&Owners>, inventory: Option<&Inventory>, priced: Priced) -> Attributed {
    gpucost_rules::attribute::attribute(owners, inventory, priced)
}

/// 5. Stored: handed to the ledger's single writer, which stores it in its next group commit; the answer
///    comes once that transaction is durable (or the batch was refused).
pub async fn store(writer: &WriterHandle, batch: Attributed) -> oneshot::Receiver<Result<Recorded, LedgerError>> {
    writer.submit(batch).await
}

/// The price the price stage charges a node's GPUs at a time: what re-pricing prices stored buckets with.
pub fn gpu_price(book: &PriceBook, node: &Node, gpu_model: &str, gpus: u32, at_ns: u64) -> Result<GpuPrice, Unpriced> {
    book.price(node, gpu_model, gpus, at_ns)
}

/// The owner the attribution stage gives a workload: what re-attribution gives a stored one.
pub fn owner_of(owners: &Owners, inventory: Option<&Inventory>, identity: &Identity) -> Ownership {
    gpucost_rules::attribute::owner_of(owners, inventory, identity)
}

/// What every stream's batches go through: the prices, the inventory and the owners in force, and the writer.
/// Cheap to clone.
#[derive(Clone)]
pub struct Stages {
    pub limits: Limits,
    pub prices: Arc<PriceBook>,
    pub inventory: Option<SharedInventory>,
    pub owners: Option<SharedOwners>,
    pub writer: WriterHandle,
}

impl Stages {
    /// Stages 1 to 4 for one batch read from a stream: validated, held, priced and attributed with the
    /// inventory and owners of now. A batch refused by validation is not stored.
    pub fn prepare(
        &self,
        wire: &pb::UsageBatch,
        now_ns: u64,
        workloads: &mut StreamWorkloads,
    ) -> Result<Attributed, ValidationError> {
        let batch = validate(wire, now_ns, &self.limits, workloads)?;
        let held = hold(batch);
        let inventory = self.inventory.as_ref().map(|i| i.read().unwrap_or_else(|e| e.into_inner()));
        let priced = price(&self.prices, inventory.as_deref(), held);
        let owners = self.owners.as_ref().map(|o| o.read().unwrap_or_else(|e| e.into_inner()));
        Ok(attribute(owners.as_deref(), inventory.as_deref(), priced))
    }

    /// Stage 5.
    pub async fn store(&self, batch: Attributed) -> oneshot::Receiver<Result<Recorded, LedgerError>> {
        store(&self.writer, batch).await
    }
}

#[cfg(test)]
mod tests {
    use gpucost_ledger::SqliteLedger;
    use gpucost_rules::catalog::Catalog;
    use gpucost_rules::owner::Rule;

    use super::*;

    const NOW: u64 = 1_800_000_000 * 1_000_000_000;
    const LEN: u64 = 15_000_000_000;

    /// One g5.12xlarge spot node, two A10Gs; a pod of namespace `ml` (owned by `vision`) on the first at 60 %.
    fn wire() -> pb::UsageBatch {
        let device = |uuid: &str| pb::GpuDevice {
            uuid: uuid.into(),
            model: "NVIDIA A10G".into(),
            memory_total_bytes: 24 << 30,
            ..Default::default()
        };
        let pod = pb::WorkloadIdentity {
            kind: pb::WorkloadKind::KubernetesPod as i32,
            namespace: "ml".into(),
            pod: "train-0".into(),
            namespace_labels: [("backstage.io/owner".to_string(), "group:default/vision".to_string())].into(),
            ..Default::default()
        };
        pb::UsageBatch {
            agent_id: "node-1".into(),
            boot_id: "b1".into(),
            seq: 1,
            node: Some(pb::NodeInfo {
                cluster: "prod".into(),
                node_name: "node-1".into(),
                instance_type: "g5.12xlarge".into(),
                capacity_type: pb::CapacityType::OnDemand as i32,
                region: "us-east-1".into(),
                devices: vec![device("GPU-a"), device("GPU-b")],
                ..Default::default()
            }),
            interval_start_unix_nanos: NOW - LEN,
            interval_end_unix_nanos: NOW,
            processes: vec![pb::ProcessUsage {
                pid: 42,
                gpu_uuid: "GPU-a".into(),
                sm_util_percent: 60.0,
                used_memory_bytes: 1 << 30,
                sample_count: 15,
                workload: Some(pod),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_batch_goes_through_every_stage_and_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("l.db"), 3_600_000_000_000, u64::MAX).unwrap();
        let owners = Owners { catalog: Catalog::example(), rules: Rule::DEFAULT_ORDER.to_vec() };
        let book = Arc::new(PriceBook::catalogue_only());
        let stages = Stages {
            limits: Limits::default(),
            prices: book.clone(),
            inventory: None,
            owners: Some(Arc::new(std::sync::RwLock::new(owners.clone()))),
            writer: WriterHandle::spawn(Arc::new(ledger)),
        };

        // Each stage by hand, then `prepare`, which must be the same batch.
        let batch = validate(&wire(), NOW, &Limits::default(), &mut StreamWorkloads::default()).unwrap();
        let held = hold(batch);
        assert_eq!(held.holdings.len(), 1, "one pod holds GPU-a, nobody GPU-b");
        assert_eq!(held.holdings[0].used_ns, LEN * 6 / 10);
        let priced = price(&book, None, held);
        let gpu =
            gpu_price(&book, &priced.node, "NVIDIA A10G", 2, NOW - LEN).expect("the catalogue prices a g5.12xlarge");
        let each = gpu.cost(NOW - LEN, NOW);
        assert!(each > 0);
        assert_eq!(priced.cost.devices.iter().map(|d| d.cost).collect::<Vec<_>>(), vec![each, each]);
        assert_eq!(priced.cost.holdings[0].used, each * 6 / 10, "used share × cost, under utilization");
        let attributed = attribute(Some(&owners), None, priced);
        assert_eq!(attributed.owners.len(), 1);
        assert_eq!(attributed.owners[0].team, "vision");
        assert_eq!(attributed.owners[0], owner_of(&owners, None, &attributed.holdings[0].workload.identity));
        let prepared = stages.prepare(&wire(), NOW, &mut StreamWorkloads::default()).unwrap();
        assert_eq!(prepared, attributed);

        // Stored once; the same batch again is a duplicate.
        assert_eq!(stages.store(prepared).await.await.unwrap().unwrap(), Recorded::Stored);
        let again = stages.prepare(&wire(), NOW, &mut StreamWorkloads::default()).unwrap();
        assert_eq!(stages.store(again).await.await.unwrap().unwrap(), Recorded::Duplicate);
    }

    #[test]
    fn a_batch_refused_by_validation_names_the_field_and_yields_no_batch() {
        let mut bad = wire();
        bad.seq = 0;
        let e = validate(&bad, NOW, &Limits::default(), &mut StreamWorkloads::default()).unwrap_err();
        assert_eq!(e.field, "seq");
    }
}

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
use gpucost_rules::inventory::{Inventory, SharedInventory};
use gpucost_types::batch::{Batch, Identity, Node};
use gpucost_types::money::GpuPrice;
use gpucost_types::ownership::Ownership;
use gpucost_types::stage::{Attributed, Held, Priced};
use tokio::sync::oneshot;

use super::refs::StreamWorkloads;
use super::validate::{Limits, ValidationError, validate_on_stream};
use crate::enrich::SharedOwners;

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

//! What each ingest stage adds to a batch: a validated [`Batch`] is *held* (which workloads held each GPU,
//! and the time they used), then *priced* (each device's cost and each holding's part), then *attributed*
//! (who owns each holding). The ledger stores an [`Attributed`] batch. Each stage derefs to the one before,
//! so that a later stage reads every earlier field by its name (`attributed.node`, `attributed.holdings`);
//! mutably too, for a fixture that edits a batch after the fact (a stage's own functions never do).

use std::ops::{Deref, DerefMut};

use crate::batch::{Batch, Holding};
use crate::cost::BatchCost;
use crate::ownership::Ownership;

/// A validated batch with its holdings: one per (GPU, workload), with the time the workload used.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub batch: Batch,
    pub holdings: Vec<Holding>,
}

/// A held batch with what it cost: devices in `batch.devices` order, holdings in `holdings` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub held: Held,
    pub cost: BatchCost,
}

/// A priced batch with the owner of each holding (parallel to `holdings`): what the ledger stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed {
    pub priced: Priced,
    pub owners: Vec<Ownership>,
}

impl Deref for Held {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        &self.batch
    }
}

impl Deref for Priced {
    type Target = Held;
    fn deref(&self) -> &Held {
        &self.held
    }
}

impl Deref for Attributed {
    type Target = Priced;
    fn deref(&self) -> &Priced {
        &self.priced
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Batch {
        &mut self.batch
    }
}

impl DerefMut for Priced {
    fn deref_mut(&mut self) -> &mut Held {
        &mut self.held
    }
}

impl DerefMut for Attributed {
    fn deref_mut(&mut self) -> &mut Priced {
        &mut self.priced
    }
}

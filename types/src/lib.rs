//! `gpucost-types`: the collector's own types, at the bottom of its crates (`docs/architecture.md`).
//!
//! A validated [`batch::Batch`] becomes a [`stage::Held`], [`stage::Priced`] and [`stage::Attributed`] batch on its
//! way to the ledger; [`money`] is integer micro-dollars, [`period`] UTC calendar windows, [`dimension`] what
//! reports group by, [`policy`] how a GPU's cost is split. Data and arithmetic only: no I/O, no async runtime.

pub mod batch;
pub mod clock;
pub mod cost;
pub mod dimension;
pub mod money;
pub mod ownership;
pub mod period;
pub mod policy;
pub mod stage;

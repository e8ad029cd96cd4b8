//! `gpucost-rules`: the collector's rules as pure code: no I/O, no clock, no async runtime.
//!
//! In the order a batch meets them: [`share`] (which workloads held each GPU, the time each used),
//! [`priced`] (what each device cost, from the [`book`] of prices, divided among holders by [`split`], MIG
//! slices by [`price`]), [`attribute`] (who owns each holding: [`owner`] rules against the Backstage
//! [`catalog`]). After the fact: [`reprice`] and [`reconcile`] (new prices over stored buckets, and the check
//! that a node's fleet line is its GPUs' price × time), [`budget_spec`] and [`budget_status`] (what a budget
//! says, and where spend stands against it), [`alert_spec`] and [`idle_gpu`] (idle-GPU and spend-anomaly alert
//! rules, and which GPUs are held unused), [`alert`] (their episodes: what fires, what resolves), [`recommend`] (right-sizing: a cheaper GPU, a MIG slice, sharing, release, with the monthly saving). [`inventory`] is what cloud discovery found.

pub mod alert;
pub mod alert_spec;
pub mod attribute;
pub mod book;
pub mod budget_spec;
pub mod budget_status;
pub mod catalog;
pub mod fetched;
pub mod idle_gpu;
pub mod inventory;
pub mod owner;
pub mod price;
pub mod priced;
pub mod recommend;
pub mod reconcile;
pub mod reprice;
pub mod share;
pub mod split;

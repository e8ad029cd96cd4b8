//! GPU dollars: what each GPU costs (`price`, `catalogue`) and how its cost is divided among the
//! workloads that held it (`split`). Pure: no clock, no I/O.

pub mod book;
pub mod price;
pub mod priced;
pub mod reconcile;
pub mod reprice;
pub mod split;

//! Helpers for the end-to-end tests: the real `gpucost-collector` and `gpucost-agent` binaries run as
//! separate processes, on loopback only, and are killed when a test ends.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// One module per real peer, and one for our own processes.
pub mod alertmanager;
pub mod backstage;
pub mod browser;
pub mod fixtures;
pub mod focus;
pub mod helm;
pub mod mlflow;
pub mod moto;
pub mod nvml_rig;
pub mod peers;
pub mod pki;
pub mod postgres;
pub mod processes;
pub mod prometheus;
pub mod standins;
pub mod webhook;

pub use alertmanager::*;
pub use backstage::*;
pub use fixtures::*;
pub use focus::*;
pub use helm::*;
pub use mlflow::*;
pub use moto::*;
pub use peers::*;
pub use processes::*;
pub use webhook::*;

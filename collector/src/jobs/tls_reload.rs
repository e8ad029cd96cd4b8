//! Reloads the gRPC port's TLS certificate and key when their files change (a renewed certificate), keeping
//! the last good ones when the new files do not load.

use std::time::Duration;

use super::{Job, Run};
use crate::tls::Reloading;

pub struct TlsReload {
    tls: std::sync::Arc<Reloading>,
}

impl TlsReload {
    pub fn new(tls: std::sync::Arc<Reloading>) -> Self {
        Self { tls }
    }
}

impl Job for TlsReload {
    fn name(&self) -> &'static str {
        "tls-reload"
    }

    fn period(&self) -> Duration {
        crate::tls::RELOAD_EVERY
    }

    fn at_start(&self) -> bool {
        false
    }

    fn run(&mut self) -> Run<'_> {
        Box::pin(async move {
            match self.tls.reload_if_changed() {
                Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
                Some(Err(e)) => anyhow::bail!("TLS files changed but do not load; keeping the last good ones: {e}"),
                None => {}
            }
            Ok(())
        })
    }
}

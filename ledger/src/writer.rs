//! The single writer in front of the ledger. Ingest streams hand it validated batches; it stores
//! whatever has queued up in one transaction (group commit) on its own thread, and answers each batch
//! only after that transaction is durable. Many agents streaming at once therefore cost one commit per
//! round, not one per batch.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Ledger, LedgerError, Recorded};
use gpucost_types::stage::Attributed;

type Reply = oneshot::Sender<Result<Recorded, LedgerError>>;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<(Attributed, Reply)>,
}

/// Most batches stored in one transaction.
const MAX_GROUP: usize = 256;
/// How long the writer waits for more batches before committing what it has.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

impl WriterHandle {
    pub fn spawn(ledger: Arc<dyn Ledger>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Attributed, Reply)>(4 * MAX_GROUP);
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut group = vec![first];
                    // Gather for a moment: a commit writes every page it touched and syncs, once for the
                    // group, so a fleet's batches arriving one by one cost far less together (BENCHMARKS.md).
                    // One sleep, then take what came: polling in short sleeps woke the thread twenty times a
                    // commit (a tenth of the collector's CPU went to switching to it).
                    std::thread::sleep(GATHER);
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let (batches, replies): (Vec<Attributed>, Vec<Reply>) = group.into_iter().unzip();
                    match ledger.record(&batches, gpucost_types::clock::now_ns()) {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(outcome);
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, batches = batches.len(), "ledger transaction failed; nothing of it was stored");
                            let msg = e.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(LedgerError::Io(msg.clone())));
                            }
                        }
                    }
                }
            })
            .expect("spawning the ledger writer thread");
        Self { tx }
    }

    /// Queues `batch`; the returned receiver resolves once it is stored (or refused).
    pub async fn submit(&self, batch: Attributed) -> oneshot::Receiver<Result<Recorded, LedgerError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((batch, reply)).await {
            let _ = reply.send(Err(LedgerError::Io("the ledger writer has stopped".into())));
        }
        rx
    }
}

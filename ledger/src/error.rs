//! Why the ledger refused a batch or a request, or could not answer.

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The batch claims GPU time the ledger already holds: storing it would bill a GPU-second twice.
    #[error(
        "batch {batch}: GPU {gpu} already has usage recorded over [{covered_from_ns}, {covered_until_ns}) ns, which this interval [{start_ns}, {end_ns}) overlaps; an interval is billed once (is another agent reporting this GPU, or did an agent restart and resend old intervals under a new boot id?)"
    )]
    Overlap { batch: String, gpu: String, start_ns: u64, end_ns: u64, covered_from_ns: u64, covered_until_ns: u64 },
    /// A batch standing for several (merged by its agent) of which some, not all, were stored before.
    #[error(
        "batch {batch}: it merges sequence numbers from {first_seq}, and {stored_from}..={stored_to} of this boot were stored before; storing it would bill those twice"
    )]
    SeqOverlap { batch: String, first_seq: u64, stored_from: u64, stored_to: u64 },
    #[error(
        "the ledger was created with {stored} buckets; it cannot be opened with {configured} (use the ledger's bucket size, or a new database)"
    )]
    BucketMismatch { stored: String, configured: String },
    #[error("ledger storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("ledger storage failed: {0}")]
    Db(#[from] crate::sql::DbError),
    #[error("ledger storage failed: {0}")]
    Io(String),
    /// A request the ledger's state does not allow (closing a running month, changing a closed one).
    #[error("{0}")]
    Refused(String),
}

impl LedgerError {
    /// Whether the batch itself is at fault (rather than the storage).
    pub fn is_batch_fault(&self) -> bool {
        matches!(self, Self::Overlap { .. } | Self::SeqOverlap { .. })
    }
}

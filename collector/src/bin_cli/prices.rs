//! Warnings about a prices file's entries that match nothing.

use gpucost_rules::book::PriceBook;

/// Warns, naming the file, about every entry of the prices file at `path` that matches nothing known (the
/// catalogue, and `ledger`'s nodes where given); returns them.
pub(crate) fn warn_unmatched(
    path: Option<&std::path::Path>,
    book: &PriceBook,
    ledger: Option<&gpucost_rules::book::Subjects>,
) -> Vec<gpucost_rules::book::Unmatched> {
    let Some(path) = path else { return Vec::new() };
    let unmatched = book.unmatched(ledger);
    for u in &unmatched {
        // Logged with the binary's target, as the other CLI messages.
        tracing::warn!(
            target: "gpucost_collector",
            file = %path.display(),
            entry = %u.at,
            "prices file {}: {u}: the entry applies to no node unless one reports exactly this",
            path.display()
        );
    }
    unmatched
}

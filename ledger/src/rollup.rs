//! Cutting an interval into the ledger's fixed time buckets. An interval that crosses a bucket boundary
//! is split at it; amounts (used time, energy) are split in proportion to the time in each bucket with
//! largest-remainder rounding, so the parts add up to exactly the whole. Pure.

use gpucost_rules::share::split_proportionally;

/// The buckets [start, end) touches, as (bucket start, nanoseconds of the interval inside it).
pub fn buckets(start_ns: u64, end_ns: u64, bucket_ns: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut t = start_ns;
    while t < end_ns {
        let bucket = t / bucket_ns * bucket_ns;
        let next = (bucket + bucket_ns).min(end_ns);
        out.push((bucket, next - t));
        t = next;
    }
    out
}

/// Splits `amount` over `parts` (as returned by `buckets`) in proportion to their lengths.
pub fn spread(amount: u64, parts: &[(u64, u64)]) -> Vec<u64> {
    if parts.len() == 1 {
        return vec![amount];
    }
    let weights: Vec<u64> = parts.iter().map(|&(_, len)| len).collect();
    split_proportionally(amount, &weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_inside_one_bucket_stays_whole() {
        assert_eq!(buckets(3_600 + 10, 3_600 + 25, 3_600), vec![(3_600, 15)]);
    }

    #[test]
    fn an_interval_across_a_boundary_is_cut_there_and_amounts_still_add_up() {
        let parts = buckets(3_590, 3_605, 3_600);
        assert_eq!(parts, vec![(0, 10), (3_600, 5)]);
        let used = spread(7, &parts);
        assert_eq!(used.iter().sum::<u64>(), 7);
        assert_eq!(used, vec![5, 2]);
    }

    #[test]
    fn a_long_interval_spans_every_bucket_it_touches() {
        let parts = buckets(50, 350, 100);
        assert_eq!(parts, vec![(0, 50), (100, 100), (200, 100), (300, 50)]);
        assert_eq!(spread(300, &parts), vec![50, 100, 100, 50]);
    }
}

//! MIG slices: what share of its parent GPU a MIG device is, and a parent's cost divided among its slices.

use gpucost_types::money::Micros;

/// Compute slices of a MIG profile (`3g.40gb` → 3) and how many the GPU has (7; 4 on an A30).
pub fn mig_slices(profile: &str, model: &str) -> Option<(u64, u64)> {
    let n: u64 = profile.split_once('g')?.0.parse().ok()?;
    let total = if model.contains("A30") { 4 } else { 7 };
    (n >= 1 && n <= total).then_some((n, total))
}

/// A physical GPU's cost `full` divided between its MIG slices (each `(compute slices, of total)`, as
/// `mig_slices` gives them) by their compute slices, with largest-remainder rounding: the slices' parts in
/// order, then what no slice covers (the parent GPU's own part). The parts add up to `full` exactly, so
/// a GPU in MIG mode never costs more than the GPU.
pub fn mig_parts(full: Micros, slices: &[(u64, u64)]) -> (Vec<Micros>, Micros) {
    let Some(&(_, total)) = slices.first() else { return (Vec::new(), full) };
    let covered: u64 = slices.iter().map(|s| s.0).sum::<u64>().min(total);
    let mut weights: Vec<u64> = slices.iter().map(|s| s.0).collect();
    weights.push(total - covered);
    let mut parts = crate::share::split_proportionally(full, &weights);
    let parent = parts.pop().unwrap_or(0);
    (parts, parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_are_their_share_of_the_gpu() {
        assert_eq!(mig_slices("1g.10gb", "NVIDIA A100-SXM4-80GB"), Some((1, 7)));
        assert_eq!(mig_slices("3g.40gb", "NVIDIA H100 80GB HBM3"), Some((3, 7)));
        assert_eq!(mig_slices("2g.12gb", "NVIDIA A30"), Some((2, 4)));
        assert_eq!(mig_slices("weird", "NVIDIA A100"), None);
    }

    #[test]
    fn mig_slices_divide_their_parents_cost_and_never_add_to_it() {
        assert_eq!(mig_parts(7_000, &[(3, 7), (4, 7)]), (vec![3_000, 4_000], 0));
        assert_eq!(mig_parts(7_000, &[(1, 7)]), (vec![1_000], 6_000), "the parent keeps what no slice covers");
        assert_eq!(mig_parts(7_000, &[]), (vec![], 7_000));
        let (slices, parent) = mig_parts(1_001, &[(3, 7), (3, 7)]);
        assert_eq!(slices.iter().sum::<u64>() + parent, 1_001);
    }
}

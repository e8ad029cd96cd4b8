//! Which rollup rows a report reads: the live ones, what closing a period froze, or what arrived late
//! for closed periods and is not booked yet. Each renders as the SQL `FROM` source of the usage and the
//! GPU rollups (same columns as `usage_buckets` and `gpu_buckets`).

/// Which rollup rows a report reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// The live rollups.
    Live,
    /// What closing `period` froze: its own rows, or (`corrections`) the late rows of earlier closed
    /// periods booked in it.
    Booked { period: String, corrections: bool },
    /// Late rows of closed periods ([from_ns, to_ns) each) that no closing has booked yet: the live rollups
    /// minus everything booked for the same bucket, GPU and workload.
    Outstanding { closed: Vec<(u64, u64)> },
}

/// A usage row is also keyed by the owner its GPU time was billed to (migration 0014).
const USAGE_KEY: [&str; 5] = ["bucket_start_ns", "gpu_id", "workload_id", "node_id", "owner_from"];
pub(crate) const USAGE_VALUES: [&str; 9] = [
    "held_ns",
    "used_ns",
    "used_micros",
    "hybrid_idle_micros",
    "allocation_used_micros",
    "allocation_idle_micros",
    "energy_millijoules",
    "co2e_mg",
    "co2e_known_ns",
];
const GPU_KEY: [&str; 3] = ["bucket_start_ns", "gpu_id", "node_id"];
pub(crate) const GPU_VALUES: [&str; 8] = [
    "observed_ns",
    "held_ns",
    "used_ns",
    "energy_millijoules",
    "cost_micros",
    "idle_micros",
    "unallocated_micros",
    "unpriced_ns",
];

/// A period label as it may appear in SQL (`2026-11`): digits, `-` and `W` only.
pub(crate) fn safe(label: &str) -> &str {
    assert!(label.chars().all(|c| c.is_ascii_digit() || c == '-' || c == 'W'), "period label {label:?}");
    label
}

fn source(rows: &Rows, live: &str, booked: &str, key: &[&str], values: &[&str]) -> String {
    match rows {
        Rows::Live => live.to_string(),
        Rows::Booked { period, corrections } => format!(
            "(SELECT * FROM {booked} WHERE booked_period = '{}' AND correction = {})",
            safe(period),
            i32::from(*corrections)
        ),
        Rows::Outstanding { closed } => {
            let keys = key.join(", ");
            let sums: Vec<String> = values.iter().map(|v| format!("SUM({v}) AS {v}")).collect();
            let diffs: Vec<String> = values.iter().map(|v| format!("l.{v} - COALESCE(k.{v}, 0) AS {v}")).collect();
            let on: Vec<String> = key.iter().map(|k| format!("k.{k} = l.{k}")).collect();
            let changed: Vec<String> = values.iter().map(|v| format!("l.{v} <> COALESCE(k.{v}, 0)")).collect();
            let windows: Vec<String> =
                closed.iter().map(|(f, t)| format!("(l.bucket_start_ns >= {f} AND l.bucket_start_ns < {t})")).collect();
            let windows = if windows.is_empty() { "0 = 1".to_string() } else { windows.join(" OR ") };
            format!(
                "(SELECT {}, {} FROM {live} l LEFT JOIN (SELECT {keys}, {} FROM {booked} GROUP BY {keys}) k ON {}
                  WHERE ({windows}) AND ({}))",
                key.iter().map(|k| format!("l.{k}")).collect::<Vec<_>>().join(", "),
                diffs.join(", "),
                sums.join(", "),
                on.join(" AND "),
                changed.join(" OR "),
            )
        }
    }
}

impl Rows {
    /// The `FROM` source of the per-workload rollup.
    pub fn usage(&self) -> String {
        source(self, "usage_buckets", "booked_usage", &USAGE_KEY, &USAGE_VALUES)
    }

    /// The `FROM` source of the per-GPU rollup.
    pub fn gpu(&self) -> String {
        source(self, "gpu_buckets", "booked_gpu", &GPU_KEY, &GPU_VALUES)
    }
}

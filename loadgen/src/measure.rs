//! What the load test measures besides its own counts: CPU time and memory of other processes (the
//! collector, Prometheus) from /proc, and latency percentiles.

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // USER_HZ is 100 on Linux (sysconf(_SC_CLK_TCK)).
    Some((utime + stime) / 100.0)
}

/// The parent of process `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of `root` and its children so far: a PostgreSQL server's postmaster and its backends (a live
/// backend's time is not in its parent's until it exits).
pub fn tree_cpu_seconds(root: u32) -> Option<f64> {
    let mut total = cpu_seconds(root)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
            && parent(pid) == Some(root)
        {
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Percentiles of `values` (sorted in place): p50, p90, p99, p99.9, max.
pub fn percentiles(values: &mut [f64]) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if values.is_empty() {
            return serde_json::Value::Null;
        }
        let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        serde_json::json!((values[i] * 1000.0).round() / 1000.0)
    };
    serde_json::json!({ "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": at(1.0), "count": values.len() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_tree_has_used_at_least_its_roots_cpu() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while :; do i=$((i+1)); done"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let (tree, root) = (tree_cpu_seconds(me).unwrap(), cpu_seconds(me).unwrap());
        let kid = cpu_seconds(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(kid > 0.0, "the child counted some CPU");
        assert!(tree >= root + kid - 0.02, "tree {tree} < root {root} + child {kid}");
    }

    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p["p50"].as_f64(), p["p99"].as_f64(), p["max"].as_f64()), (Some(500.0), Some(990.0), Some(1000.0)));
        assert!(percentiles(&mut []).get("p50").unwrap().is_null());
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let busy: u64 = (0..5_000_000u64).map(|i| i ^ (i >> 3)).sum();
        assert!(busy > 0);
        assert!(own_cpu_seconds() >= 0.0);
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
        assert!(status_kib(std::process::id(), "VmHWM").unwrap() > 0);
    }
}

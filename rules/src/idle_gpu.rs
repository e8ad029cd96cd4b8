//! Which GPUs are held and unused: per GPU and bucket, each holder's held and used time (the ledger's
//! allocations). A workload holds a GPU unused when, in the GPU's latest bucket and in every bucket before
//! it back to the start of the run, it held the GPU (held time > 0) and used none of it (used time = 0: no
//! process of it had SM activity; `docs/cost-model.md`). The run is its idle episode; it is in force from
//! `after` on, and over when the workload uses the GPU or stops holding it. Pure.

use std::collections::BTreeMap;

use gpucost_types::dimension::Dimension;
use gpucost_types::period::utc;

use crate::alert::{Firing, IDLE_GPU, Open};
use crate::alert_spec::IdleRule;

/// One holder's time on a GPU in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderTime {
    /// The workload key (`pod:<cluster>/<namespace>/<pod>/<container>`, …).
    pub workload: String,
    pub pod: String,
    pub namespace: String,
    pub team: String,
    pub held_ns: u128,
    pub used_ns: u128,
}

/// One GPU in one bucket, and who held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuBucket {
    pub cluster: String,
    pub node: String,
    pub gpu: String,
    pub start_ns: u64,
    pub holders: Vec<HolderTime>,
}

/// A workload holding a GPU unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    pub cluster: String,
    pub node: String,
    pub gpu: String,
    pub holder: HolderTime,
    /// The start of the first unused bucket of the run (or of the window, if the run is older).
    pub since_ns: u64,
    /// The end of the GPU's latest bucket (or now, if sooner).
    pub until_ns: u64,
}

/// Every workload holding a GPU unused at `now_ns`, from `buckets` (any order) of length `bucket_ns`.
pub fn idle(buckets: &[GpuBucket], bucket_ns: u64, now_ns: u64) -> Vec<Idle> {
    let mut by_gpu: BTreeMap<(&str, &str, &str), Vec<&GpuBucket>> = BTreeMap::new();
    for b in buckets {
        by_gpu.entry((&b.cluster, &b.node, &b.gpu)).or_default().push(b);
    }
    let mut out = Vec::new();
    for ((cluster, node, gpu), mut list) in by_gpu {
        list.sort_by_key(|b| std::cmp::Reverse(b.start_ns));
        let latest = list[0];
        for h in latest.holders.iter().filter(|h| h.held_ns > 0 && h.used_ns == 0) {
            // Back through contiguous buckets while this workload held the GPU without using it.
            let mut since = latest.start_ns;
            for b in &list[1..] {
                let unused = b.holders.iter().any(|x| x.workload == h.workload && x.held_ns > 0 && x.used_ns == 0);
                let used = b.holders.iter().any(|x| x.workload == h.workload && x.used_ns > 0);
                if b.start_ns + bucket_ns != since || !unused || used {
                    break;
                }
                since = b.start_ns;
            }
            out.push(Idle {
                cluster: cluster.to_string(),
                node: node.to_string(),
                gpu: gpu.to_string(),
                holder: h.clone(),
                since_ns: since,
                until_ns: (latest.start_ns + bucket_ns).min(now_ns),
            });
        }
    }
    out
}

fn hours(ns: u64) -> String {
    format!("{:.1} h", ns as f64 / 3.6e12)
}

/// The idle-GPU alerts in force for `rule`: the idle holdings in its scope unused for at least its `after`.
pub fn firing(rule: &IdleRule, idle: &[Idle]) -> Vec<Firing> {
    let after = rule.after.as_nanos() as u64;
    idle.iter()
        .filter(|i| match &rule.scope {
            None => true,
            Some((Dimension::Team, t)) => &i.holder.team == t,
            Some((Dimension::Namespace, n)) => &i.holder.namespace == n,
            Some(_) => false,
        })
        .filter(|i| i.until_ns.saturating_sub(i.since_ns) >= after)
        .map(|i| {
            let labels = BTreeMap::from([
                ("alertname".to_string(), "GpuCostIdleGpu".to_string()),
                ("rule".to_string(), rule.name.clone()),
                ("cluster".to_string(), i.cluster.clone()),
                ("node".to_string(), i.node.clone()),
                ("gpu".to_string(), i.gpu.clone()),
                ("workload".to_string(), i.holder.workload.clone()),
                ("pod".to_string(), i.holder.pod.clone()),
                ("namespace".to_string(), i.holder.namespace.clone()),
                ("team".to_string(), i.holder.team.clone()),
                ("severity".to_string(), "warning".to_string()),
            ]);
            Firing {
                kind: IDLE_GPU,
                key: format!("{}/{}/{}/{}/{}", rule.name, i.cluster, i.node, i.gpu, i.holder.workload),
                subject: i.holder.workload.clone(),
                labels,
                summary: format!(
                    "GPU {} on {}/{} held by {} (team {}, namespace {}) with no use for {} since {} (rule {}: {})",
                    i.gpu,
                    i.cluster,
                    i.node,
                    i.holder.workload,
                    i.holder.team,
                    i.holder.namespace,
                    hours(i.until_ns - i.since_ns),
                    utc(i.since_ns),
                    rule.name,
                    humantime::format_duration(rule.after)
                ),
                since_ns: i.since_ns,
            }
        })
        .collect()
}

/// Why an open idle-GPU alert is over, from the latest `buckets`: used, released, or its rule gone.
pub fn why_over(o: &Open, buckets: &[GpuBucket], rules: &[IdleRule]) -> String {
    let label = |k: &str| o.labels.get(k).map(String::as_str).unwrap_or_default();
    if !rules.iter().any(|r| r.name == label("rule")) {
        return format!("the idle_gpu rule {:?} was removed", label("rule"));
    }
    let latest = buckets
        .iter()
        .filter(|b| b.cluster == label("cluster") && b.node == label("node") && b.gpu == label("gpu"))
        .max_by_key(|b| b.start_ns);
    match latest.and_then(|b| b.holders.iter().find(|h| h.workload == label("workload") && h.held_ns > 0)) {
        Some(h) if h.used_ns > 0 => format!("{} used GPU {} again", label("workload"), label("gpu")),
        Some(_) => "no longer in the rule's scope".to_string(),
        None => format!("{} no longer holds GPU {}", label("workload"), label("gpu")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const H: u64 = 3_600_000_000_000;

    fn holder(w: &str, used: u128) -> HolderTime {
        HolderTime {
            workload: w.into(),
            pod: w.into(),
            namespace: "notebooks".into(),
            team: "vision".into(),
            held_ns: H as u128,
            used_ns: used,
        }
    }

    fn bucket(hour: u64, holders: Vec<HolderTime>) -> GpuBucket {
        GpuBucket { cluster: "c".into(), node: "n1".into(), gpu: "GPU-1".into(), start_ns: hour * H, holders }
    }

    fn rule(hours: u64) -> IdleRule {
        IdleRule {
            name: "nb".into(),
            scope: Some((Dimension::Namespace, "notebooks".into())),
            after: Duration::from_secs(hours * 3600),
        }
    }

    #[test]
    fn a_gpu_held_unused_for_longer_than_the_rule_fires_and_its_use_ends_it() {
        // Used at hour 10, then held unused from hour 11 to 15 (now: 15:30).
        let mut b = vec![bucket(10, vec![holder("nb-0", 5)])];
        b.extend((11..=15).map(|h| bucket(h, vec![holder("nb-0", 0)])));
        let now = 15 * H + H / 2;
        let i = idle(&b, H, now);
        assert_eq!(i.len(), 1);
        assert_eq!((i[0].since_ns, i[0].until_ns), (11 * H, now));
        let f = firing(&rule(4), &i);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key, "nb/c/n1/GPU-1/nb-0");
        assert_eq!(f[0].labels["alertname"], "GpuCostIdleGpu");
        assert_eq!(f[0].labels["gpu"], "GPU-1");
        assert!(f[0].summary.contains("no use for 4.5 h"), "{}", f[0].summary);
        assert!(firing(&rule(5), &i).is_empty(), "not yet 5 h");
        let mut other_team = rule(1);
        other_team.scope = Some((Dimension::Team, "nlp".into()));
        assert!(firing(&other_team, &i).is_empty(), "out of scope");

        // Used in the next hour: not idle any more, and the open alert says why.
        b.push(bucket(16, vec![holder("nb-0", 7)]));
        assert!(idle(&b, H, 16 * H + 1).is_empty());
        let open = Open {
            kind: IDLE_GPU.into(),
            key: f[0].key.clone(),
            subject: f[0].subject.clone(),
            labels: f[0].labels.clone(),
            summary: f[0].summary.clone(),
            fired_ns: 11 * H,
        };
        assert_eq!(why_over(&open, &b, &[rule(4)]), "nb-0 used GPU GPU-1 again");
        // Released instead: nobody holds it in the latest bucket.
        b.pop();
        b.push(bucket(16, vec![]));
        assert!(idle(&b, H, 16 * H + 1).is_empty());
        assert_eq!(why_over(&open, &b, &[rule(4)]), "nb-0 no longer holds GPU GPU-1");
        assert!(why_over(&open, &b, &[]).contains("rule \"nb\" was removed"));
    }

    #[test]
    fn a_gap_or_a_used_hour_breaks_the_run() {
        let b = vec![bucket(1, vec![holder("w", 0)]), bucket(3, vec![holder("w", 0)]), bucket(4, vec![holder("w", 0)])];
        assert_eq!(idle(&b, H, 5 * H)[0].since_ns, 3 * H, "hour 2 has no data");
        let b = vec![bucket(3, vec![holder("w", 0), holder("x", 9)]), bucket(4, vec![holder("w", 0)])];
        let i = idle(&b, H, 5 * H);
        assert_eq!((i.len(), i[0].since_ns), (1, 3 * H), "another holder's use does not end w's run");
    }
}

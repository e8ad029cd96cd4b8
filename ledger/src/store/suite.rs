//! The storage suite: the ledger's own behaviour (deduplication, billing each interval once, rollups,
//! grouping, owners, closing, re-pricing, re-attribution, raw retention, budgets and the alert outbox),
//! written once and run on every engine (issue 10). SQLite runs it as unit tests of this crate; the
//! PostgreSQL run (`tests/tests/ledger_postgres.rs`) gives each case a fresh database on a server the test
//! starts.
//!
//! Each case takes the [`Stores`] it opens ledgers from: the same name opens the same store again.

use gpucost_rules::owner::Ownership;
use gpucost_types::batch::{Device, Node, Workload};
use gpucost_types::dimension::Dimension;
use gpucost_types::policy::Policy;
use gpucost_types::stage::Attributed;

use super::{Engine, NS, SqlLedger, SqliteEngine, SqliteLedger, days};
use crate::budgets::{AlertFilter, BudgetStore, StoredBudget};
use crate::rows::Rows;
use crate::{
    CostQuery, CostReport, GpuTime, LedgerError, OriginCharge, Recorded, RepriceOptions, UsageQuery, UsageRow,
    sql_params,
};

use crate::prelude::*;
use crate::sql::Db;
use gpucost_rules::budget_status::{AlertState, Event, Transition};
use gpucost_rules::share;
use gpucost_types::batch::{Batch, GpuReading, Identity, ProcessReading, WorkloadKind};
use gpucost_types::period::{Cadence, Period};
use gpucost_types::stage::Priced;
use std::sync::Arc;

/// Where a case's ledgers live.
pub trait Stores {
    type E: Engine;
    /// Opens (creating it when new) the store named `name` with these settings.
    fn open(&self, name: &str, bucket_ns: u64, raw_retention_ns: u64) -> Result<SqlLedger<Self::E>, LedgerError>;
}

/// SQLite files in a temporary folder of their own.
pub struct SqliteStores(tempfile::TempDir);

impl SqliteStores {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("a temporary folder"))
    }
}

impl Default for SqliteStores {
    fn default() -> Self {
        Self::new()
    }
}

impl Stores for SqliteStores {
    type E = SqliteEngine;
    fn open(&self, name: &str, bucket_ns: u64, raw_retention_ns: u64) -> Result<SqliteLedger, LedgerError> {
        SqliteLedger::open(&self.0.path().join(format!("{name}.db")), bucket_ns, raw_retention_ns)
    }
}

/// A case of the suite.
pub type Case<S> = (&'static str, fn(&S));

/// Calls macro `$m` with the name of every case: the one list of them.
macro_rules! every_case {
    ($m:ident) => {
        $m! {
            a_batch_at_or_below_the_boots_last_sequence_is_a_duplicate_and_changes_nothing,
            a_batch_arriving_after_later_ones_fills_its_hole_and_a_resend_of_it_is_a_duplicate,
            a_merged_batch_is_new_whole_a_resend_whole_and_refused_when_partly_stored,
            an_overlapping_batch_is_rolled_back_alone_and_its_neighbours_commit,
            an_interval_across_an_hour_is_split_between_two_buckets_and_adds_up,
            usage_groups_by_namespace_pod_controller_and_any_label,
            a_relabelled_workload_is_written_again,
            repricing_history_halves_every_line_and_still_reconciles,
            repricing_a_mig_node_bills_its_physical_gpus_and_never_silently_unprices,
            usage_groups_by_mlflow_model_version_run_and_experiment,
            a_cost_line_keeps_the_owner_in_force_when_its_gpu_time_was_used,
            an_owner_change_mid_hour_splits_the_hour_at_the_change_in_every_report,
            reattributing_moves_the_window_to_the_new_owner_and_keeps_the_rest,
            reopening_with_another_bucket_size_is_refused,
            raw_rows_are_kept_within_the_retention_and_pruned_after_it,
            closing_freezes_a_month_books_late_rows_in_the_next_and_guards_history,
            daily_rollups_answer_exactly_as_the_hourly_rows_and_follow_every_change,
            arrival_order_and_resends_change_nothing,
            the_outbox_retries_a_failure_after_its_backoff_and_never_redelivers,
            fired_alerts_are_kept_with_their_resolution_and_each_notifications_delivery,
            an_idle_or_anomaly_episode_opens_one_alert_and_its_resolution_closes_it,
            budgets_are_created_replaced_and_deleted,
            a_gpu_another_cluster_claims_moves_or_erases_none_of_its_clusters_time,
            a_boot_id_another_cluster_learnt_cannot_make_a_batch_a_duplicate,
            a_gpus_nodes_and_workloads_history_comes_from_the_raw_rows_and_the_rollups,
            evidence_gives_exact_percentiles_peaks_and_busy_shares_over_any_window,
            evidence_groups_a_controllers_pods_and_each_node_hours_instance_ids_are_kept,
            fetched_prices_are_kept_per_source_zone_and_effective_time_and_a_refetch_refreshes_them,
        }
    };
}
#[allow(unused_imports)] // used by the SQLite unit tests (`ledger::sqlite::tests`)
pub(crate) use every_case;

/// Every case, by name.
pub fn cases<S: Stores>() -> Vec<Case<S>> {
    macro_rules! named {
        ($($case:ident),* $(,)?) => { vec![$((stringify!($case), $case::<S> as fn(&S))),*] };
    }
    let all = every_case!(named);
    all
}

pub(super) const HOUR: u64 = 3_600 * NS;
const WEEK: u64 = 7 * 24 * HOUR;
pub(super) const T0: u64 = 1_800_000_000 * NS / HOUR * HOUR;

fn node() -> Node {
    Node {
        cluster: "prod".into(),
        name: "n1".into(),
        instance_type: "g5.xlarge".into(),
        capacity_type: "on_demand".into(),
        region: "us-east-1".into(),
        zone: "us-east-1a".into(),
        labels: Default::default(),
    }
}

pub(super) fn batch(boot: &str, seq: u64, start: u64, len: u64, share_ppm: u32) -> Attributed {
    let node = node();
    let w = Workload::new(
        &node,
        Identity { kind: WorkloadKind::KubernetesPod, namespace: "ml".into(), pod: "p".into(), ..Default::default() },
    );
    let processes = vec![ProcessReading {
        gpu_uuid: "GPU-1".into(),
        pid: 7,
        workload: Arc::new(w),
        sm_share_ppm: share_ppm,
        memory_util_ppm: 0,
        used_memory_bytes: 1 << 30,
        peak_memory_bytes: Some(2 << 30),
        samples: 15,
        busy_samples: Some(if share_ppm > 0 { 15 } else { 0 }),
    }];
    stage(Batch {
        agent_id: "n1".into(),
        boot_id: boot.into(),
        seq,
        first_seq: seq,
        devices: vec![Device {
            uuid: "GPU-1".into(),
            index: 0,
            model: "NVIDIA A10G".into(),
            memory_total_bytes: 24 << 30,
            mig_parent_uuid: None,
            mig_profile: None,
        }],
        start_ns: start,
        end_ns: start + len,
        gpus: vec![GpuReading {
            uuid: "GPU-1".into(),
            utilization_ppm: share_ppm,
            memory_used_bytes: 1 << 30,
            power_milliwatts: 100_000,
            energy_millijoules: Some(len / NS * 100_000),
        }],
        processes,
        node,
        allocations: Vec::new(),
        instance_id: Some("i-0123456789abcdef0".into()),
    })
}

/// A validated batch as the ledger takes it: held, not priced, no owner rules.
pub(super) fn stage(b: Batch) -> Attributed {
    Attributed { priced: Priced { held: share::hold(b), cost: Default::default() }, owners: Vec::new() }
}

/// `b` as an agent of `cluster` sends it: its node in that cluster, its workloads keyed under it.
fn in_cluster(mut b: Attributed, cluster: &str) -> Attributed {
    b.node.cluster = cluster.into();
    let node = b.node.clone();
    for p in &mut b.processes {
        p.workload = Arc::new(Workload::new(&node, p.workload.identity.clone()));
    }
    b.holdings = share::holdings(b.end_ns - b.start_ns, &b.processes, &[]);
    b
}

pub(super) fn totals<E: Engine>(l: &SqlLedger<E>) -> GpuTime {
    l.usage(&UsageQuery { from_ns: T0 - HOUR, to_ns: T0 + 4 * HOUR, group_by: vec![] }).unwrap().totals
}

pub fn a_batch_at_or_below_the_boots_last_sequence_is_a_duplicate_and_changes_nothing<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let out =
        l.record(&[batch("b", 1, T0, 15 * NS, 500_000), batch("b", 2, T0 + 15 * NS, 15 * NS, 500_000)], T0).unwrap();
    assert!(out.iter().all(|r| matches!(r, Ok(Recorded::Stored))));
    let before = totals(&l);
    assert_eq!(before.used_ns, 15 * u128::from(NS));
    let again = l.record(&[batch("b", 2, T0 + 15 * NS, 15 * NS, 500_000)], T0).unwrap();
    assert!(matches!(again[0], Ok(Recorded::Duplicate)));
    assert_eq!(totals(&l), before);
}

pub fn a_batch_arriving_after_later_ones_fills_its_hole_and_a_resend_of_it_is_a_duplicate<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let b = |seq: u64| batch("b", seq, T0 + (seq - 1) * 15 * NS, 15 * NS, 500_000);
    // 1, 3, 4 first; 2 late; then everything again, in another order.
    let out = l.record(&[b(1), b(3), b(4)], T0).unwrap();
    assert!(out.iter().all(|r| matches!(r, Ok(Recorded::Stored))), "{out:?}");
    let late = l.record(&[b(2)], T0).unwrap();
    assert!(matches!(late[0], Ok(Recorded::Stored)), "the hole is filled, not taken for a resend: {late:?}");
    let again = l.record(&[b(4), b(2), b(1), b(3)], T0).unwrap();
    assert!(again.iter().all(|r| matches!(r, Ok(Recorded::Duplicate))), "{again:?}");
    let t = totals(&l);
    assert_eq!(t.observed_ns, Some(60 * u128::from(NS)));
    assert_eq!(t.used_ns, 30 * u128::from(NS));
    // Coverage and sequence ranges coalesced back to one row each.
    let rows = |sql: &str| l.writer.lock().unwrap().conn.one(sql, sql_params![], |r| r.get::<i64>(0)).unwrap();
    assert_eq!(rows("SELECT count(*) FROM gpu_coverage"), 1);
    assert_eq!(rows("SELECT count(*) FROM boot_seqs"), 1);
}

pub fn a_merged_batch_is_new_whole_a_resend_whole_and_refused_when_partly_stored<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let mut merged = batch("b", 3, T0, 45 * NS, 500_000);
    merged.first_seq = 1;
    assert!(matches!(l.record(std::slice::from_ref(&merged), T0).unwrap()[0], Ok(Recorded::Stored)));
    assert!(matches!(l.record(&[batch("b", 2, T0 + 15 * NS, 15 * NS, 0)], T0).unwrap()[0], Ok(Recorded::Duplicate)));
    let mut straddling = batch("b", 5, T0 + 45 * NS, 15 * NS, 0);
    straddling.first_seq = 3;
    assert!(matches!(
        l.record(&[straddling], T0).unwrap()[0],
        Err(LedgerError::SeqOverlap { stored_from: 1, stored_to: 3, .. })
    ));
    assert_eq!(totals(&l).observed_ns, Some(45 * u128::from(NS)));
}

pub fn an_overlapping_batch_is_rolled_back_alone_and_its_neighbours_commit<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    l.record(&[batch("b", 1, T0, 15 * NS, 100_000)], T0).unwrap();
    let out = l
        .record(
            &[
                batch("b", 2, T0 + 15 * NS, 15 * NS, 100_000),
                batch("other-boot", 1, T0 + 20 * NS, 15 * NS, 900_000),
                batch("b", 3, T0 + 30 * NS, 15 * NS, 100_000),
            ],
            T0,
        )
        .unwrap();
    assert!(matches!(out[0], Ok(Recorded::Stored)));
    assert!(
        matches!(&out[1], Err(LedgerError::Overlap { covered_from_ns, covered_until_ns, .. }) if (*covered_from_ns, *covered_until_ns) == (T0, T0 + 30 * NS))
    );
    assert!(matches!(out[2], Ok(Recorded::Stored)));
    let t = totals(&l);
    assert_eq!(t.observed_ns, Some(45 * u128::from(NS)));
    assert_eq!(t.used_ns, 45 * u128::from(NS) / 10);
    // The refused batch's boot left no trace: its seq 1 is still new.
    let retry = l.record(&[batch("other-boot", 1, T0 + 45 * NS, 15 * NS, 0)], T0).unwrap();
    assert!(matches!(retry[0], Ok(Recorded::Stored)));
}

pub fn an_interval_across_an_hour_is_split_between_two_buckets_and_adds_up<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    l.record(&[batch("b", 1, T0 + HOUR - 5 * NS, 15 * NS, 333_333)], T0).unwrap();
    let first = l.usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: vec![Dimension::Workload] }).unwrap();
    let second =
        l.usage(&UsageQuery { from_ns: T0 + HOUR, to_ns: T0 + 2 * HOUR, group_by: vec![Dimension::Workload] }).unwrap();
    assert_eq!(first.rows[0].time.held_ns, 5 * u128::from(NS));
    assert_eq!(second.rows[0].time.held_ns, 10 * u128::from(NS));
    let used = 15 * u128::from(NS) * 333_333 / 1_000_000;
    assert_eq!(first.rows[0].time.used_ns + second.rows[0].time.used_ns, used);
}

pub fn usage_groups_by_namespace_pod_controller_and_any_label<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let mut b = batch("b", 1, T0, 15 * NS, 400_000);
    let identity = Identity {
        kind: WorkloadKind::KubernetesPod,
        namespace: "team-nlp".into(),
        pod: "llama-0".into(),
        container: "trainer".into(),
        controller_kind: "Job".into(),
        controller_name: "llama".into(),
        labels: [("team".to_string(), "nlp".to_string())].into(),
        ..Default::default()
    };
    // A pod of the same name in another namespace, the next interval.
    let mut other = batch("b", 2, T0 + 15 * NS, 15 * NS, 400_000);
    let twin = Identity { namespace: "team-cv".into(), ..identity.clone() };
    other.processes[0].workload = Arc::new(Workload::new(&other.node, twin));
    other.holdings = share::holdings(15 * NS, &other.processes, &[]);
    b.processes[0].workload = Arc::new(Workload::new(&b.node, identity));
    b.holdings = share::holdings(15 * NS, &b.processes, &[]);
    l.record(&[b, other], T0).unwrap();
    let q = |dims: Vec<Dimension>| l.usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: dims }).unwrap().rows;
    let rows = q(vec![Dimension::Namespace, Dimension::Pod, Dimension::Controller, Dimension::Container]);
    assert_eq!(rows[1].group, vec!["team-nlp", "prod/team-nlp/llama-0", "Job/llama", "trainer"]);
    assert_eq!(rows[1].time.used_ns, 6 * u128::from(NS));
    // Same-named pods of two namespaces are two pods, in usage and in costs.
    let pods: Vec<String> = q(vec![Dimension::Pod]).into_iter().map(|r| r.group[0].clone()).collect();
    assert_eq!(pods, ["prod/team-cv/llama-0", "prod/team-nlp/llama-0"]);
    let costs = l
        .costs(&CostQuery {
            from_ns: T0,
            to_ns: T0 + HOUR,
            group_by: vec![Dimension::Pod],
            filters: vec![],
            policy: Policy::Hybrid,
        })
        .unwrap();
    assert_eq!(costs.rows.len(), 2, "{costs:?}");
    assert_eq!(q(vec![Dimension::Label("team".into())])[0].group, vec!["nlp"]);
    assert_eq!(q(vec![Dimension::Label("cost-center".into())])[0].group, vec![""], "a missing label groups as empty");
    assert_eq!(q(vec![Dimension::Kind, Dimension::User])[0].group, vec!["kubernetes_pod", ""]);
}

pub fn a_relabelled_workload_is_written_again<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let labelled = |seq: u64, team: &str| {
        let mut b = batch("b", seq, T0 + (seq - 1) * 15 * NS, 15 * NS, 400_000);
        let identity = Identity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "ml".into(),
            pod: "p".into(),
            labels: [("team".to_string(), team.to_string())].into(),
            ..Default::default()
        };
        b.processes[0].workload = Arc::new(Workload::new(&b.node, identity));
        b.holdings = share::holdings(15 * NS, &b.processes, &[]);
        b
    };
    l.record(&[labelled(1, "nlp")], T0).unwrap();
    l.record(&[labelled(2, "speech")], T0).unwrap();
    let rows = l
        .usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: vec![Dimension::Label("team".into())] })
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].group, vec!["speech"], "the workload's current labels");
}

pub fn repricing_history_halves_every_line_and_still_reconciles<S: Stores>(s: &S) {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::priced::price_batch;
    let l = s.open("l", HOUR, WEEK).unwrap();
    let batches: Vec<Attributed> = (1..=8)
        .map(|seq| {
            let mut b = batch("b", seq, T0 + (seq - 1) * 600 * NS, 600 * NS, 300_000);
            b.cost = price_batch(&PriceBook::catalogue_only(), &b);
            b
        })
        .collect();
    l.record(&batches, T0).unwrap();
    let totals = |l: &SqlLedger<S::E>, p: Policy| {
        let r = l
            .costs(&CostQuery {
                from_ns: T0,
                to_ns: T0 + 2 * HOUR,
                group_by: vec![Dimension::Workload],
                filters: vec![],
                policy: p,
            })
            .unwrap();
        (r.rows.iter().map(|x| x.used + x.idle).sum::<u128>(), r.idle.unwrap(), r.unallocated.unwrap(), r.fleet)
    };
    let before = totals(&l, Policy::Hybrid);
    let half = |node: &Node, model: &str, gpus: u32, at: u64| {
        PriceBook::catalogue_only().price(node, model, gpus, at).map(|mut p| {
            p.instance_micros_per_hour /= 2;
            p
        })
    };
    let dry = l.reprice(T0, T0 + 2 * HOUR, &half, RepriceOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!(totals(&l, Policy::Hybrid), before, "a dry run writes nothing");
    let report = l.reprice(T0, T0 + 2 * HOUR, &half, RepriceOptions::default()).unwrap();
    assert_eq!(report, dry);
    assert_eq!(report.old_micros, before.3);
    assert!(report.new_micros.abs_diff(before.3 / 2) <= 2, "{report:?}");
    for p in Policy::ALL {
        let (charged, idle, unallocated, fleet) = totals(&l, p);
        assert_eq!(fleet, report.new_micros);
        assert_eq!(charged + idle + unallocated, fleet, "{p:?}");
    }
    let recorded: i64 =
        l.with_reader(|c| Ok(c.one("SELECT COUNT(*) FROM repricings", sql_params![], |r| r.get(0))?)).unwrap();
    assert_eq!(recorded, 1);
    // Re-pricing again at the same prices changes nothing: it scales from what was charged.
    let again = l.reprice(T0, T0 + 2 * HOUR, &half, RepriceOptions::default()).unwrap();
    assert_eq!(again.buckets, 0, "{again:?}");
    assert_eq!(totals(&l, Policy::Hybrid).3, report.new_micros);
}

/// A batch of `node` with `devices` (a MIG slice named `MIG…` under its parent), the `(GPU, pod, SM ppm)`
/// holders, priced by `book`.
fn priced_batch(
    book: &gpucost_rules::book::PriceBook,
    node: &Node,
    devices: &[Device],
    holders: &[(&str, &str, u32)],
    seq: u64,
    start: u64,
    len: u64,
) -> Attributed {
    let processes: Vec<ProcessReading> = holders
        .iter()
        .enumerate()
        .map(|(i, (gpu, pod, ppm))| ProcessReading {
            gpu_uuid: gpu.to_string(),
            pid: i as u32,
            workload: Arc::new(Workload::new(
                node,
                Identity {
                    kind: WorkloadKind::KubernetesPod,
                    namespace: "ml".into(),
                    pod: pod.to_string(),
                    ..Default::default()
                },
            )),
            sm_share_ppm: *ppm,
            memory_util_ppm: 0,
            used_memory_bytes: 1 << 30,
            peak_memory_bytes: None,
            samples: 0,
            busy_samples: None,
        })
        .collect();
    let mut b = stage(Batch {
        agent_id: node.name.clone(),
        boot_id: "b".into(),
        seq,
        first_seq: seq,
        devices: devices.to_vec(),
        start_ns: start,
        end_ns: start + len,
        gpus: devices
            .iter()
            .map(|d| GpuReading {
                uuid: d.uuid.clone(),
                utilization_ppm: 0,
                memory_used_bytes: 0,
                power_milliwatts: 0,
                energy_millijoules: None,
            })
            .collect(),
        processes,
        node: node.clone(),
        allocations: Vec::new(),
        instance_id: None,
    });
    b.cost = gpucost_rules::priced::price_batch(book, &b);
    b
}

/// The demo fleet's MIG node (an 8-GPU p4de whose first A100 runs as 3g + 4g slices, which add no time of
/// their own) and an eu-west-1 node priced by the demo's `[[region]]` rule, re-priced with the demo's own
/// prices: every node still costs its physical GPUs × price × time (a per-device re-pricing once billed
/// the p4de's fully sliced parent GPU as a ninth GPU, its unallocated cost doubling), and prices that
/// lose the region rule are refused rather than silently taking the eu-west-1 node to $0.
pub fn repricing_a_mig_node_bills_its_physical_gpus_and_never_silently_unprices<S: Stores>(s: &S) {
    use gpucost_rules::book::PriceBook;
    let l = s.open("l", HOUR, WEEK).unwrap();
    let demo_text = include_str!("../../../rules/data/demo-prices.toml");
    let demo = PriceBook::with_file_text(Some(demo_text)).unwrap();
    let a100 = |uuid: &str, parent: Option<&str>, profile: Option<&str>| Device {
        uuid: uuid.into(),
        index: 0,
        model: "NVIDIA A100-SXM4-80GB".into(),
        memory_total_bytes: 80 << 30,
        mig_parent_uuid: parent.map(String::from),
        mig_profile: profile.map(String::from),
    };
    let mut p4de_devices: Vec<Device> = (0..8).map(|i| a100(&format!("GPU-p{i}"), None, None)).collect();
    p4de_devices.push(a100("MIG-a", Some("GPU-p0"), Some("3g.40gb")));
    p4de_devices.push(a100("MIG-b", Some("GPU-p0"), Some("4g.40gb")));
    let p4de = Node { name: "p4de-1".into(), instance_type: "p4de.24xlarge".into(), ..node() };
    let eu = Node { cluster: "eu".into(), name: "eu-1".into(), region: "eu-west-1".into(), ..node() };
    let a10g = [Device {
        uuid: "GPU-eu".into(),
        index: 0,
        model: "NVIDIA A10G".into(),
        memory_total_bytes: 24 << 30,
        mig_parent_uuid: None,
        mig_profile: None,
    }];
    let mut batches = Vec::new();
    for seq in 1..=4 {
        let start = T0 + (seq - 1) * 1_800 * NS;
        let p4de_holders = [("MIG-a", "slice", 0), ("GPU-p3", "train", 600_000)];
        batches.push(priced_batch(&demo, &p4de, &p4de_devices, &p4de_holders, seq, start, 1_800 * NS));
        batches.push(priced_batch(&demo, &eu, &a10g, &[("GPU-eu", "serve", 300_000)], seq, start, 1_800 * NS));
    }
    assert!(l.record(&batches, T0).unwrap().iter().all(|r| matches!(r, Ok(Recorded::Stored))));
    let (from, to) = (T0, T0 + 2 * HOUR);
    let per_gpu = |n: &Node, model: &str, gpus: u32| demo.price(n, model, gpus, T0).unwrap().cost(from, to);
    let p4de_fleet = 8 * u128::from(per_gpu(&p4de, "NVIDIA A100-SXM4-80GB", 8));
    let eu_fleet = u128::from(per_gpu(&eu, "NVIDIA A10G", 1));
    let node_money = |name: &str, p: Policy| {
        let r = l
            .costs(&CostQuery {
                from_ns: from,
                to_ns: to,
                group_by: vec![Dimension::Workload],
                filters: vec![(Dimension::Node, name.to_string())],
                policy: p,
            })
            .unwrap();
        (r.rows.iter().map(|x| x.used + x.idle).sum::<u128>(), r.idle.unwrap(), r.unallocated.unwrap(), r.fleet)
    };
    let ingested = node_money("p4de-1", Policy::Hybrid);
    assert_eq!(ingested.3, p4de_fleet, "ingest prices eight GPUs");
    assert_eq!(node_money("eu-1", Policy::Hybrid).3, eu_fleet);
    assert!(l.price_check(from, to, &[]).unwrap().iter().all(|c| c.holds()));

    let by = |book: &PriceBook| {
        let book = book.clone();
        move |n: &Node, model: &str, gpus: u32, at: u64| book.price(n, model, gpus, at)
    };
    let report = l.reprice(from, to, &by(&demo), RepriceOptions::default()).unwrap();
    assert_eq!(report.unreconciled().count(), 0, "{report:?}");
    assert_eq!(report.checked.len(), 2);
    for p in Policy::ALL {
        let (charged, idle, unallocated, fleet) = node_money("p4de-1", p);
        assert_eq!(fleet, p4de_fleet, "still eight GPUs × price × time under {p:?}, not nine");
        assert_eq!(charged + idle + unallocated, fleet, "{p:?}");
    }
    assert_eq!(node_money("p4de-1", Policy::Hybrid), ingested, "the same prices change nothing");
    assert_eq!(node_money("eu-1", Policy::Hybrid).3, eu_fleet);

    // The same file without its [[region]] rule would take the eu-west-1 node's priced time to unpriced.
    let start = demo_text.find("[[region]]").unwrap();
    let end = demo_text.find("# Grid carbon").unwrap();
    let no_region = PriceBook::with_file_text(Some(&format!("{}{}", &demo_text[..start], &demo_text[end..]))).unwrap();
    let dry = l.reprice(from, to, &by(&no_region), RepriceOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!(dry.unpriced.keys().collect::<Vec<_>>(), ["eu/eu-1"], "the dry run names the node");
    assert!(dry.unpriced["eu/eu-1"].contains("no price for g5.xlarge in eu-west-1"), "{dry:?}");
    assert!(dry.refusal(RepriceOptions::default()).is_some());
    let refused = l.reprice(from, to, &by(&no_region), RepriceOptions::default()).unwrap_err();
    assert!(matches!(&refused, LedgerError::Refused(m) if m.contains("eu/eu-1")), "{refused}");
    assert_eq!(node_money("eu-1", Policy::Hybrid).3, eu_fleet, "nothing written");
    let allowed = RepriceOptions { allow_unpriced: true, ..Default::default() };
    let report = l.reprice(from, to, &by(&no_region), allowed).unwrap();
    assert_eq!(report.unreconciled().count(), 0, "{report:?}");
    let r = l
        .costs(&CostQuery {
            from_ns: from,
            to_ns: to,
            group_by: vec![],
            filters: vec![(Dimension::Node, "eu-1".into())],
            policy: Policy::Hybrid,
        })
        .unwrap();
    assert_eq!((r.fleet, r.unpriced_ns), (0, u128::from(2 * HOUR)), "allowed: unpriced, and said so");
    assert_eq!(node_money("p4de-1", Policy::Hybrid).3, p4de_fleet);
}

pub fn usage_groups_by_mlflow_model_version_run_and_experiment<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let with = |seq: u64, pod: &str, labels: &[(&str, &str)], env: &[(&str, &str)]| {
        let mut b = batch(pod, seq, T0 + seq * 600 * NS, 600 * NS, 500_000);
        let identity = Identity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "ml".into(),
            pod: pod.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        b.processes[0].workload = Arc::new(Workload::new(&b.node, identity));
        b.devices[0].uuid = format!("GPU-{pod}");
        b.gpus[0].uuid = format!("GPU-{pod}");
        b.processes[0].gpu_uuid = format!("GPU-{pod}");
        b.holdings = share::holdings(600 * NS, &b.processes, &[]);
        b
    };
    l.record(
        &[
            with(1, "serve-v1", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "1")], &[]),
            with(1, "serve-v2", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "2")], &[]),
            with(1, "train", &[], &[("MLFLOW_RUN_ID", "run-abc"), ("MLFLOW_EXPERIMENT_ID", "7")]),
        ],
        T0,
    )
    .unwrap();
    let q = |dims: Vec<Dimension>| l.usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: dims }).unwrap().rows;
    let versions: Vec<Vec<String>> =
        q(vec![Dimension::Model, Dimension::ModelVersion]).into_iter().map(|r| r.group).collect();
    assert_eq!(versions, vec![vec!["", ""], vec!["ranker", "1"], vec!["ranker", "2"]]);
    let runs: Vec<Vec<String>> = q(vec![Dimension::Run, Dimension::Experiment]).into_iter().map(|r| r.group).collect();
    assert_eq!(runs, vec![vec!["", ""], vec!["run-abc", "7"]]);
}

pub fn a_cost_line_keeps_the_owner_in_force_when_its_gpu_time_was_used<S: Stores>(s: &S) {
    use gpucost_rules::owner::Ownership;
    let l = s.open("l", HOUR, WEEK).unwrap();
    let owned = |seq: u64, team: &str| {
        let mut b = batch("b", seq, T0 + (seq - 1) * HOUR, 600 * NS, 500_000);
        b.owners = vec![Ownership {
            owner: format!("group:default/{team}"),
            team: team.into(),
            department: "applied-ml".into(),
            component: "ranker".into(),
            system: "recommendations".into(),
            rule: "kubernetes-id",
        }];
        b
    };
    l.record(&[owned(1, "recsys")], T0).unwrap();
    l.record(&[owned(2, "vision")], T0).unwrap();
    let q = |from: u64, to: u64, dims: Vec<Dimension>| {
        l.usage(&UsageQuery { from_ns: from, to_ns: to, group_by: dims }).unwrap().rows
    };
    let both = q(T0, T0 + 2 * HOUR, vec![Dimension::Team]);
    assert_eq!(both.iter().map(|r| r.group[0].as_str()).collect::<Vec<_>>(), vec!["recsys", "vision"]);
    assert_eq!(
        q(T0, T0 + HOUR, vec![Dimension::Owner])[0].group,
        vec!["group:default/recsys"],
        "the catalog change did not rewrite the first hour"
    );
    let rows = q(T0, T0 + 2 * HOUR, vec![Dimension::Department, Dimension::System, Dimension::Component]);
    assert_eq!(rows[0].group, vec!["applied-ml", "recommendations", "ranker"]);
    // A workload with no owner recorded is unattributed (docs/chargeback.md), in every owner dimension.
    let mut other = batch("c", 1, T0 + 3 * HOUR, 600 * NS, 1);
    let identity =
        Identity { kind: WorkloadKind::KubernetesPod, namespace: "ml".into(), pod: "q".into(), ..Default::default() };
    other.processes[0].workload = Arc::new(Workload::new(&other.node, identity));
    other.holdings = share::holdings(600 * NS, &other.processes, &[]);
    l.record(&[other], T0).unwrap();
    assert_eq!(
        q(T0 + 3 * HOUR, T0 + 4 * HOUR, vec![Dimension::Owner, Dimension::Team, Dimension::Department])[0].group,
        vec!["unattributed", "unattributed", "unattributed"]
    );
}

pub fn an_owner_change_mid_hour_splits_the_hour_at_the_change_in_every_report<S: Stores>(s: &S) {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::owner::Ownership;
    use gpucost_rules::priced::price_batch;
    let l = s.open("l", HOUR, WEEK).unwrap();
    let owner = |team: &str| Ownership {
        owner: format!("group:default/{team}"),
        team: team.into(),
        department: "applied-ml".into(),
        component: String::new(),
        system: String::new(),
        rule: "namespace-owner",
    };
    // A minute per batch; the namespace moves from recsys to vision at :46.
    let minute = |seq: u64| {
        let mut b = batch("b", seq, T0 + (seq - 1) * 60 * NS, 60 * NS, 250_000 + 10_000 * seq as u32);
        b.cost = price_batch(&PriceBook::catalogue_only(), &b);
        b.owners = vec![owner(if seq <= 46 { "recsys" } else { "vision" })];
        b
    };
    let charged = |b: &Attributed| u128::from(b.cost.holdings[0].used + b.cost.holdings[0].hybrid_idle);
    let expected =
        |team: &str| (1..=60).map(minute).filter(|b| b.owners[0].team == team).map(|b| charged(&b)).sum::<u128>();
    // Minute 10 arrives after the change, still under its own owner.
    l.record(&(1..=60).filter(|&s| s != 10).map(minute).collect::<Vec<_>>(), T0).unwrap();
    l.record(&[minute(10)], T0 + HOUR).unwrap();
    let by_team = |l: &SqlLedger<S::E>, from: u64, to: u64| -> Vec<(String, u128, u128)> {
        l.costs(&CostQuery {
            from_ns: from,
            to_ns: to,
            group_by: vec![Dimension::Team],
            filters: vec![],
            policy: Policy::Hybrid,
        })
        .unwrap()
        .rows
        .into_iter()
        .map(|r| (r.group[0].clone(), r.used + r.idle, r.held_ns))
        .collect()
    };
    let want = vec![
        ("recsys".to_string(), expected("recsys"), 46 * 60 * u128::from(NS)),
        ("vision".to_string(), expected("vision"), 14 * 60 * u128::from(NS)),
    ];
    assert!(want[0].1 > 0 && want[1].1 > 0);
    assert_eq!(by_team(&l, T0, T0 + HOUR), want, "the hour is split at the change, not billed to the owner at its end");
    let usage = l.usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: vec![Dimension::Owner] }).unwrap();
    let held: Vec<(String, u128)> = usage.rows.into_iter().map(|r| (r.group[0].clone(), r.time.held_ns)).collect();
    assert_eq!(held, vec![("group:default/recsys".into(), want[0].2), ("group:default/vision".into(), want[1].2)]);
    // FOCUS's allocated rows: one per owner of the GPU's day.
    let origins = l
        .allocations(T0 / days::DAY * days::DAY, T0 / days::DAY * days::DAY + days::DAY, days::DAY, Policy::Hybrid)
        .unwrap();
    let mut allocated: Vec<(String, u128)> =
        origins.iter().flat_map(|o| o.allocations.iter().map(|a| (a.team.clone(), a.cost))).collect();
    allocated.sort();
    assert_eq!(allocated, vec![("recsys".into(), want[0].1), ("vision".into(), want[1].1)]);
    // The day's daily rollup keeps the split, and the fleet line still checks against the price history.
    let day = T0 / days::DAY * days::DAY;
    let hourly_check = l.price_check(day, day + days::DAY, &[]).unwrap();
    assert!(hourly_check.iter().all(|c| c.holds()) && !hourly_check.is_empty(), "{hourly_check:?}");
    assert_eq!(l.build_daily_rollups(day + days::DAY, 8).unwrap(), 1);
    let daily_check = l.price_check(day, day + days::DAY, &[]).unwrap();
    assert_eq!(
        daily_check.iter().map(|c| (c.fleet, c.expected_min, c.expected_max)).collect::<Vec<_>>(),
        hourly_check.iter().map(|c| (c.fleet, c.expected_min, c.expected_max)).collect::<Vec<_>>()
    );
    assert!(daily_check.iter().all(|c| c.holds()), "{daily_check:?}");
    assert_eq!(by_team(&l, day, day + days::DAY), want, "read from the built day");
    let from_days = l.allocations(day, day + days::DAY, days::DAY, Policy::Hybrid).unwrap();
    assert_eq!(
        from_days, origins,
        "FOCUS allocations read from the built day are the hourly rows' to the micro-dollar"
    );
}

pub fn reattributing_moves_the_window_to_the_new_owner_and_keeps_the_rest<S: Stores>(s: &S) {
    use gpucost_rules::catalog::Catalog;
    use gpucost_rules::owner::{Rule, resolve};
    let l = s.open("l", HOUR, WEEK).unwrap();
    let labelled = |seq: u64| {
        let mut b = batch("b", seq, T0 + (seq - 1) * HOUR, 600 * NS, 500_000);
        let identity = Identity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "ml".into(),
            pod: "p".into(),
            labels: [("backstage.io/kubernetes-id".to_string(), "ranker".to_string())].into(),
            ..Default::default()
        };
        b.processes[0].workload = Arc::new(Workload::new(&b.node, identity));
        b.holdings = share::holdings(600 * NS, &b.processes, &[]);
        b.owners = vec![Ownership {
            owner: "unallocated".into(),
            team: String::new(),
            department: String::new(),
            component: String::new(),
            system: String::new(),
            rule: "unallocated",
        }];
        b
    };
    l.record(&[labelled(1), labelled(2), labelled(3)], T0).unwrap();
    let catalog = Catalog::example();
    let by_catalog = |i: &Identity| resolve(&catalog, &Rule::DEFAULT_ORDER, i, None);
    // Only the second hour is re-attributed.
    let report = l.reattribute(T0 + HOUR, T0 + 2 * HOUR, &by_catalog, false).unwrap();
    assert_eq!(report.moved.get("unattributed -> group:default/recsys"), Some(&1), "{report:?}");
    let team = |h: u64| {
        l.usage(&UsageQuery { from_ns: T0 + h * HOUR, to_ns: T0 + (h + 1) * HOUR, group_by: vec![Dimension::Team] })
            .unwrap()
            .rows[0]
            .group[0]
            .clone()
    };
    let none = || "unattributed".to_string();
    assert_eq!((team(0), team(1), team(2)), (none(), "recsys".to_string(), none()));
}

pub fn reopening_with_another_bucket_size_is_refused<S: Stores>(s: &S) {
    drop(s.open("l", HOUR, WEEK).unwrap());
    let err = s.open("l", 300 * NS, HOUR).err().expect("must refuse");
    assert!(err.to_string().contains("created with 1h buckets"), "{err}");
}

pub fn raw_rows_are_kept_within_the_retention_and_pruned_after_it<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let now = T0 + 8 * 24 * HOUR;
    l.record(&[batch("b", 1, T0, 15 * NS, 1), batch("b", 2, now - HOUR, 15 * NS, 1)], now).unwrap();
    let raw = |l: &SqlLedger<S::E>| -> i64 {
        l.with_reader(|c| Ok(c.one("SELECT COUNT(*) FROM gpu_intervals", sql_params![], |r| r.get(0))?)).unwrap()
    };
    assert_eq!(raw(&l), 1, "the week-old batch is rolled up but not kept raw");
    assert_eq!(l.prune_raw(now).unwrap(), 2, "one GPU row and one process row");
    assert_eq!(raw(&l), 0);
    assert_eq!(totals(&l).observed_ns, Some(15 * u128::from(NS)), "rollups are kept");
}

/// Hybrid-policy money of `rows` over [from, to): (charged, idle, unallocated, fleet).
fn money<E: Engine>(l: &SqlLedger<E>, rows: &Rows, from_ns: u64, to_ns: u64) -> (u128, u128, u128, u128) {
    let r = l
        .costs_of(
            rows,
            &CostQuery { from_ns, to_ns, group_by: vec![Dimension::Workload], filters: vec![], policy: Policy::Hybrid },
        )
        .unwrap();
    (r.rows.iter().map(|x| x.used + x.idle).sum(), r.idle.unwrap_or(0), r.unallocated.unwrap_or(0), r.fleet)
}

pub fn closing_freezes_a_month_books_late_rows_in_the_next_and_guards_history<S: Stores>(s: &S) {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::priced::price_batch;
    let l = s.open("l", HOUR, u64::MAX).unwrap();
    let month = Period::containing(Cadence::Monthly, T0);
    let next = month.next(Cadence::Monthly);
    let priced = |boot: &str, seq: u64, start: u64| {
        let mut b = batch(boot, seq, start, 600 * NS, 400_000);
        b.cost = price_batch(&PriceBook::catalogue_only(), &b);
        b
    };
    l.record(&[priced("b", 1, T0), priced("b", 2, T0 + 600 * NS)], T0).unwrap();
    let running = l.close_period(&month, T0).expect_err("a running month is refused");
    assert!(running.to_string().contains("once it has ended"), "{running}");

    let closed = l.close_period(&month, next.from_ns).unwrap();
    assert_eq!(
        (closed.period.as_str(), closed.from_ns, closed.to_ns),
        (month.label.as_str(), month.from_ns, month.to_ns)
    );
    assert_eq!(l.closed_periods().unwrap(), vec![closed.clone()]);
    let booked = Rows::Booked { period: month.label.clone(), corrections: false };
    let frozen = money(&l, &booked, month.from_ns, month.to_ns);
    assert!(frozen.3 > 0, "the month had a cost: {frozen:?}");
    assert_eq!(frozen, money(&l, &Rows::Live, month.from_ns, month.to_ns), "booked as it stood");
    // The closed month is read from the days its closing summed: the same under any grouping and policy.
    for group_by in [vec![], vec![Dimension::Namespace, Dimension::Model], vec![Dimension::Day, Dimension::Owner]] {
        for policy in Policy::ALL {
            let q = CostQuery {
                from_ns: month.from_ns,
                to_ns: month.to_ns,
                group_by: group_by.clone(),
                filters: vec![],
                policy,
            };
            assert_eq!(
                l.costs_of(&booked, &q).unwrap(),
                l.costs_of(&Rows::Live, &q).unwrap(),
                "{group_by:?} {policy:?}"
            );
        }
    }
    assert!(l.close_period(&month, next.to_ns).unwrap_err().to_string().contains("already closed"));
    let after_next = next.next(Cadence::Monthly);
    let skipped = l.close_period(&after_next, after_next.to_ns).unwrap_err();
    assert!(skipped.to_string().contains("in order"), "{skipped}");

    // A batch of the closed month arrives late (another boot of the node, another GPU time): the live rows
    // grow, the booked ones do not; it is outstanding until the next month closes and books it.
    let mut late = priced("late", 1, T0 + HOUR);
    late.devices[0].uuid = "GPU-2".into();
    late.gpus[0].uuid = "GPU-2".into();
    late.processes[0].gpu_uuid = "GPU-2".into();
    late.holdings = share::holdings(600 * NS, &late.processes, &[]);
    late.cost = price_batch(&PriceBook::catalogue_only(), &late);
    assert!(matches!(l.record(&[late], next.from_ns + HOUR).unwrap()[0], Ok(Recorded::Stored)));
    assert_eq!(money(&l, &booked, month.from_ns, month.to_ns), frozen, "a closed month's report never changes");
    let live = money(&l, &Rows::Live, month.from_ns, month.to_ns);
    let outstanding = Rows::Outstanding { closed: vec![(month.from_ns, month.to_ns)] };
    let pending = money(&l, &outstanding, month.from_ns, month.to_ns);
    assert!(pending.3 > 0);
    assert_eq!(pending.3 + frozen.3, live.3, "outstanding = live - booked");

    l.close_period(&next, next.to_ns).unwrap();
    let corrections = Rows::Booked { period: next.label.clone(), corrections: true };
    assert_eq!(money(&l, &corrections, month.from_ns, month.to_ns), pending, "booked as the next month's correction");
    assert_eq!(money(&l, &outstanding, month.from_ns, month.to_ns).3, 0, "nothing outstanding any more");

    // History inside closed months is not re-priced or re-attributed.
    let same = |node: &Node, model: &str, gpus: u32, at: u64| PriceBook::catalogue_only().price(node, model, gpus, at);
    let err = l.reprice(T0, T0 + HOUR, &same, RepriceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    let nobody = |_: &Identity| Ownership {
        owner: "unallocated".into(),
        team: String::new(),
        department: String::new(),
        component: String::new(),
        system: String::new(),
        rule: "unallocated",
    };
    assert!(l.reattribute(T0, T0 + HOUR, &nobody, false).unwrap_err().to_string().contains("closed"));
}

/// Whatever order batches from several nodes arrive in, and however often they are resent, the ledger
/// ends up with the same usage and money, and every policy reconciles to the fleet's cost. (A fixed
/// interleaving here, to run on every engine; the SQLite unit tests also try random ones.)
pub fn arrival_order_and_resends_change_nothing<S: Stores>(s: &S) {
    let per_node: Vec<Vec<Attributed>> =
        [5, 3, 7].iter().enumerate().map(|(n, &c)| node_batches(n, c, &[0, 250_000, 1_000_000, 333_333])).collect();
    let in_order: Vec<Attributed> = per_node.iter().flatten().cloned().collect();
    let mut shuffled = Vec::new();
    let mut cursors = [0usize; 3];
    for step in 0.. {
        let open: Vec<usize> = (0..3).filter(|&n| cursors[n] < per_node[n].len()).collect();
        if open.is_empty() {
            break;
        }
        let n = open[(step * 7 + 3) % open.len()];
        shuffled.push(per_node[n][cursors[n]].clone());
        cursors[n] += 1;
        if step % 3 == 1 {
            shuffled.push(shuffled[step / 2].clone());
        }
    }
    let (a, b) = (s.open("a", HOUR, WEEK).unwrap(), s.open("b", HOUR, WEEK).unwrap());
    a.record(&in_order, T0).unwrap();
    for chunk in shuffled.chunks(3) {
        for r in b.record(chunk, T0).unwrap() {
            assert!(r.is_ok(), "{r:?}");
        }
    }
    assert_eq!(snapshot(&a), snapshot(&b));
}

/// `count` consecutive priced batches of node `node`, its one process's share cycling through `shares`.
pub(super) fn node_batches(node: usize, count: u64, shares: &[u32]) -> Vec<Attributed> {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::priced::price_batch;
    (1..=count)
        .map(|seq| {
            let mut b = batch(
                &format!("boot-{node}"),
                seq,
                T0 + (seq - 1) * 15 * NS,
                15 * NS,
                shares[(seq as usize + node) % shares.len()],
            );
            b.agent_id = format!("n{node}");
            b.node.name = format!("n{node}");
            b.devices[0].uuid = format!("GPU-{node}");
            b.gpus[0].uuid = format!("GPU-{node}");
            b.processes[0].gpu_uuid = format!("GPU-{node}");
            b.holdings = share::holdings(15 * NS, &b.processes, &[]);
            b.cost = price_batch(&PriceBook::catalogue_only(), &b);
            b
        })
        .collect()
}

/// Usage per (GPU, workload), and (charged, fleet) money under each policy, each policy checked to
/// reconcile.
pub(super) fn snapshot<E: Engine>(l: &SqlLedger<E>) -> (Vec<UsageRow>, Vec<(u128, u128)>, u128) {
    let usage = l
        .usage(&UsageQuery {
            from_ns: T0 - HOUR,
            to_ns: T0 + 4 * HOUR,
            group_by: vec![Dimension::Gpu, Dimension::Workload],
        })
        .unwrap()
        .rows;
    let mut money = Vec::new();
    let mut fleet = 0;
    for policy in Policy::ALL {
        let r = l
            .costs(&CostQuery {
                from_ns: T0 - HOUR,
                to_ns: T0 + 4 * HOUR,
                group_by: vec![Dimension::Gpu],
                filters: vec![],
                policy,
            })
            .unwrap();
        let charged: u128 = r.rows.iter().map(|x| x.used + x.idle).sum();
        assert_eq!(charged + r.idle.unwrap() + r.unallocated.unwrap(), r.fleet, "{policy:?} reconciles");
        money.push((charged, r.fleet));
        fleet = r.fleet;
    }
    (usage, money, fleet)
}

fn transition(alarm: bool) -> Transition {
    let e: Event = serde_json::from_value(serde_json::json!({
        "id": "b/actual-80/2026-11/alarm/1", "budget": "b", "threshold": "actual-80", "type": "actual",
        "percent": 80, "state": "ALARM", "reason": "r", "period": "2026-11",
        "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
        "spend_usd": null, "forecast_usd": null, "limit_usd": null, "scope": null,
        "alarm_since": "2026-11-02T00:00:00Z", "at": "2026-11-02T00:00:00Z"
    }))
    .unwrap();
    Transition {
        state: AlertState {
            budget: "b".into(),
            threshold: "actual-80".into(),
            period: "2026-11".into(),
            alarm,
            since_ns: 5,
        },
        event: e,
    }
}

pub fn the_outbox_retries_a_failure_after_its_backoff_and_never_redelivers<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, u64::MAX).unwrap();
    let names = ["webhook".to_string(), "slack".to_string()];
    l.apply_transitions(&[transition(true)], &names, 100).unwrap();
    assert_eq!(l.alert_states().unwrap(), vec![transition(true).state]);
    let due = l.due_notifications(100, 10, &names).unwrap();
    assert_eq!(due.len(), 2);
    assert!(l.due_notifications(100, 10, &["slack".to_string()]).unwrap().iter().all(|n| n.notifier == "slack"));
    l.notification_attempted(due[0].id, Ok(()), 101, 0).unwrap();
    l.notification_attempted(due[1].id, Err("HTTP 500".into()), 101, 200).unwrap();
    assert!(l.due_notifications(150, 10, &names).unwrap().is_empty(), "the failure waits for its backoff");
    let again = l.due_notifications(200, 10, &names).unwrap();
    assert_eq!((again.len(), again[0].id, again[0].attempts), (1, due[1].id, 1));
    assert_eq!(l.pending_notifications().unwrap(), 1);
    l.notification_attempted(again[0].id, Ok(()), 201, 0).unwrap();
    assert_eq!(l.pending_notifications().unwrap(), 0);
    assert!(l.due_notifications(u64::MAX / 2, 10, &names).unwrap().is_empty());
}

pub fn fired_alerts_are_kept_with_their_resolution_and_each_notifications_delivery<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, u64::MAX).unwrap();
    let names = ["webhook".to_string(), "slack".to_string()];
    let all = |firing: Option<bool>, since_ns: Option<u64>| {
        l.alerts(&AlertFilter { firing, since_ns, kind: None, limit: 100 }).unwrap()
    };
    assert!(all(None, None).is_empty());
    // Fires at 100 (its since_ns): one open alert, a notification to each notifier.
    let mut fire = transition(true);
    fire.state.since_ns = 100;
    fire.event.reason = "actual spend reached 80 %".into();
    l.apply_transitions(std::slice::from_ref(&fire), &names, 100).unwrap();
    let a = all(None, None);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].kind.as_str(), a[0].key.as_str(), a[0].subject.as_str()), ("budget", "b/actual-80/2026-11", "b"));
    assert_eq!((a[0].fired_ns, a[0].resolved_ns, a[0].summary.as_str()), (100, None, "actual spend reached 80 %"));
    let labels: serde_json::Value = serde_json::from_str(&a[0].labels).unwrap();
    assert_eq!(labels, serde_json::json!({ "budget": "b", "threshold": "actual-80", "period": "2026-11" }));
    assert_eq!(a[0].notifications.iter().map(|n| n.notifier.as_str()).collect::<Vec<_>>(), ["webhook", "slack"]);
    assert!(a[0].notifications.iter().all(|n| n.attempts == 0 && n.delivered_ns.is_none() && n.created_ns == 100));
    // The webhook delivers; Slack fails once and waits for its retry.
    let due = l.due_notifications(100, 10, &names).unwrap();
    l.notification_attempted(due[0].id, Ok(()), 101, 0).unwrap();
    l.notification_attempted(due[1].id, Err("HTTP 500".into()), 102, 300).unwrap();
    let n = &all(Some(true), None)[0].notifications;
    assert_eq!((n[0].attempts, n[0].delivered_ns, n[0].last_error.as_deref()), (1, Some(101), None));
    assert_eq!((n[1].attempts, n[1].delivered_ns, n[1].last_error.as_deref()), (1, None, Some("HTTP 500")));
    assert_eq!(n[1].next_attempt_ns, 300);
    assert!(all(Some(false), None).is_empty());
    // Resolves at 200: the same alert closes, with the resolution's notifications beside the firing's.
    let mut resolve = transition(false);
    resolve.state.since_ns = 100;
    resolve.event.state = "OK".into();
    resolve.event.reason = "the budget was raised".into();
    l.apply_transitions(&[resolve], &names, 200).unwrap();
    let a = all(None, None);
    assert_eq!(a.len(), 1, "a resolution closes the alert, it opens none");
    assert_eq!((a[0].resolved_ns, a[0].resolution.as_deref()), (Some(200), Some("the budget was raised")));
    assert_eq!(a[0].notifications.len(), 4);
    assert!(a[0].notifications[2].event.contains("\"state\":\"OK\""));
    assert!(all(Some(true), None).is_empty());
    assert_eq!(all(Some(false), None).len(), 1);
    // Fires again at 400: a second alert, the latest first; `since` keeps what fired or resolved since.
    fire.state.since_ns = 400;
    l.apply_transitions(&[fire], &names, 400).unwrap();
    let a = all(None, None);
    assert_eq!(a.iter().map(|a| (a.fired_ns, a.resolved_ns)).collect::<Vec<_>>(), [(400, None), (100, Some(200))]);
    assert_eq!(a[0].notifications.len(), 2);
    assert_eq!(all(None, Some(201)).len(), 1);
    assert_eq!(all(None, Some(200)).len(), 2);
    assert_eq!(l.alerts(&AlertFilter { kind: Some("idle".into()), limit: 100, ..AlertFilter::default() }).unwrap(), []);
    assert_eq!(l.alerts(&AlertFilter { limit: 1, ..AlertFilter::default() }).unwrap()[0].fired_ns, 400);
    // A resolution of an alarm the history does not hold (older than it) is kept too.
    let mut old = transition(false);
    old.state.period = "2026-10".into();
    old.state.since_ns = 50;
    l.apply_transitions(&[old], &[], 500).unwrap();
    let a = all(Some(false), None);
    assert_eq!(
        a.iter().map(|a| (a.key.as_str(), a.fired_ns, a.resolved_ns)).collect::<Vec<_>>(),
        [("b/actual-80/2026-11", 100, Some(200)), ("b/actual-80/2026-10", 50, Some(500))]
    );
}

pub fn an_idle_or_anomaly_episode_opens_one_alert_and_its_resolution_closes_it<S: Stores>(s: &S) {
    use gpucost_rules::alert::{self, Firing, Open};
    let l = s.open("l", HOUR, u64::MAX).unwrap();
    let names = ["alertmanager".to_string()];
    let open = || -> Vec<Open> {
        l.alerts(&AlertFilter {
            firing: Some(true),
            kind: Some(alert::IDLE_GPU.into()),
            limit: 100,
            ..AlertFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|a| Open {
            kind: a.kind,
            key: a.key,
            subject: a.subject,
            labels: serde_json::from_str(&a.labels).unwrap(),
            summary: a.summary,
            fired_ns: a.fired_ns,
        })
        .collect()
    };
    let idle = Firing {
        kind: alert::IDLE_GPU,
        key: "nb/c/n1/GPU-1/pod:c/notebooks/nb-0/main".into(),
        subject: "pod:c/notebooks/nb-0/main".into(),
        labels: [("alertname".to_string(), "GpuCostIdleGpu".to_string()), ("gpu".to_string(), "GPU-1".to_string())]
            .into_iter()
            .collect(),
        summary: "held unused for 4.5 h".into(),
        since_ns: 100,
    };
    let why = |_: &Open| "used again".to_string();
    let fire = alert::plan(alert::IDLE_GPU, &open(), std::slice::from_ref(&idle), &why, 500);
    l.apply_alert_changes(&fire, &names, 500).unwrap();
    // Applied twice (two evaluations racing, or a retry): still one alert, one notification.
    l.apply_alert_changes(&fire, &names, 501).unwrap();
    let o = open();
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].key.as_str(), o[0].fired_ns, o[0].labels["gpu"].as_str()), (idle.key.as_str(), 100, "GPU-1"));
    assert!(
        alert::plan(alert::IDLE_GPU, &o, std::slice::from_ref(&idle), &why, 600).is_empty(),
        "read back, nothing new"
    );
    let a = &l.alerts(&AlertFilter { limit: 10, ..AlertFilter::default() }).unwrap()[0];
    assert_eq!((a.kind.as_str(), a.notifications.len()), ("idle-gpu", 1));
    assert!(a.notifications[0].event.contains("\"kind\":\"idle-gpu\""));
    // Over: closed with why, its resolution queued; budget alerts untouched by it.
    let over = alert::plan(alert::IDLE_GPU, &o, &[], &why, 700);
    l.apply_alert_changes(&over, &names, 700).unwrap();
    assert!(open().is_empty());
    let a = &l.alerts(&AlertFilter { limit: 10, ..AlertFilter::default() }).unwrap()[0];
    assert_eq!((a.resolved_ns, a.resolution.as_deref(), a.notifications.len()), (Some(700), Some("used again"), 2));
    assert!(a.notifications[1].event.contains("\"state\":\"OK\""));
    assert!(l.alert_states().unwrap().is_empty());
}

pub fn budgets_are_created_replaced_and_deleted<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, u64::MAX).unwrap();
    let b = StoredBudget { name: "b".into(), spec: "{}".into(), source: "api".into() };
    assert!(l.put_budget(&b, 1).unwrap());
    assert!(!l.put_budget(&StoredBudget { spec: "{\"x\":1}".into(), ..b.clone() }, 2).unwrap());
    assert_eq!(l.budgets().unwrap()[0].spec, "{\"x\":1}");
    assert!(l.delete_budget("b").unwrap());
    assert!(!l.delete_budget("b").unwrap());
}

/// Two pods on two GPUs over three days, priced, the first changing team at noon on the second day.
fn three_days() -> Vec<Attributed> {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::priced::price_batch;
    let day0 = T0 / days::DAY * days::DAY;
    let owner = |team: &str| Ownership {
        owner: format!("group:default/{team}"),
        team: team.into(),
        department: "applied-ml".into(),
        component: String::new(),
        system: String::new(),
        rule: "kubernetes-id",
    };
    let mut out = Vec::new();
    for (gpu, pod) in [(1, "p"), (2, "q")] {
        for h in 0..72u64 {
            let start = day0 + h * HOUR + 600 * NS;
            let mut b = batch(&format!("boot-{pod}"), h + 1, start, 1_800 * NS, 250_000 + 100_000 * gpu);
            b.agent_id = format!("n{gpu}");
            b.node.name = format!("n{gpu}");
            let uuid = format!("GPU-{gpu}");
            (b.devices[0].uuid, b.gpus[0].uuid, b.processes[0].gpu_uuid) = (uuid.clone(), uuid.clone(), uuid);
            let identity = Identity {
                kind: WorkloadKind::KubernetesPod,
                namespace: format!("ns-{pod}"),
                pod: pod.into(),
                labels: [("mlflow.org/model-name".to_string(), format!("model-{pod}"))].into(),
                ..Default::default()
            };
            b.processes[0].workload = Arc::new(Workload::new(&b.node, identity));
            b.holdings = share::holdings(1_800 * NS, &b.processes, &[]);
            b.owners = vec![owner(if pod == "p" && h >= 36 { "vision" } else { "recsys" })];
            b.cost = price_batch(&PriceBook::catalogue_only(), &b);
            out.push(b);
        }
    }
    out
}

/// Costs of `l` under every policy for several groupings and windows (whole days and not).
/// FOCUS's origin and allocated charges per GPU-day over whole and partial days, under every policy.
fn allocation_views<E: Engine>(l: &SqlLedger<E>) -> Vec<Vec<OriginCharge>> {
    let day0 = T0 / days::DAY * days::DAY;
    let windows = [(day0, day0 + 4 * days::DAY), (day0 + 5 * HOUR, day0 + 2 * days::DAY + 3 * HOUR)];
    windows
        .iter()
        .flat_map(|&(from, to)| Policy::ALL.into_iter().map(move |p| l.allocations(from, to, days::DAY, p).unwrap()))
        .collect()
}

fn cost_views<E: Engine>(l: &SqlLedger<E>) -> Vec<CostReport> {
    let day0 = T0 / days::DAY * days::DAY;
    let windows = [
        (day0, day0 + 4 * days::DAY),
        (day0 + days::DAY, day0 + 2 * days::DAY),
        (day0 + 5 * HOUR, day0 + 2 * days::DAY + 3 * HOUR),
    ];
    let groupings = [
        vec![],
        vec![Dimension::Team],
        vec![Dimension::Namespace, Dimension::Model],
        vec![Dimension::Day, Dimension::Owner],
        vec![Dimension::Gpu, Dimension::Workload],
    ];
    let mut out = Vec::new();
    for (from_ns, to_ns) in windows {
        for group_by in &groupings {
            for policy in Policy::ALL {
                let q = CostQuery { from_ns, to_ns, group_by: group_by.clone(), filters: vec![], policy };
                out.push(l.costs(&q).unwrap());
            }
        }
        let team = CostQuery {
            from_ns,
            to_ns,
            group_by: vec![Dimension::Namespace],
            filters: vec![(Dimension::Team, "recsys".into())],
            policy: Policy::Hybrid,
        };
        out.push(l.costs(&team).unwrap());
    }
    out
}

pub fn daily_rollups_answer_exactly_as_the_hourly_rows_and_follow_every_change<S: Stores>(s: &S) {
    use gpucost_rules::book::PriceBook;
    use gpucost_rules::catalog::Catalog;
    use gpucost_rules::owner::{Rule, resolve};
    // `a` builds its daily rollups, `b` never does: they must answer alike after every change.
    let (a, b) = (s.open("a", HOUR, WEEK).unwrap(), s.open("b", HOUR, WEEK).unwrap());
    let day0 = T0 / days::DAY * days::DAY;
    let now = day0 + 5 * days::DAY;
    let batches = three_days();
    for l in [&a, &b] {
        assert!(l.record(&batches, now).unwrap().iter().all(|r| matches!(r, Ok(Recorded::Stored))));
    }
    let built = a.build_daily_rollups(now, 400).unwrap();
    assert!(built >= 3, "{built} days built");
    let daily: i64 =
        a.with_reader(|c| Ok(c.one("SELECT COUNT(*) FROM usage_days", sql_params![], |r| r.get(0))?)).unwrap();
    assert!(daily >= 6, "daily rows: {daily}");
    assert_eq!(cost_views(&a), cost_views(&b), "built days answer as their hours");
    assert_eq!(allocation_views(&a), allocation_views(&b), "built days answer as their hours");
    let rebuild_and_compare = |what: &str| {
        assert_eq!(cost_views(&a), cost_views(&b), "{what}: unbuilt days answer from their hours");
        assert_eq!(allocation_views(&a), allocation_views(&b), "{what}: unbuilt days answer from their hours");
        a.build_daily_rollups(now, 400).unwrap();
        assert_eq!(cost_views(&a), cost_views(&b), "{what}: rebuilt");
        assert_eq!(allocation_views(&a), allocation_views(&b), "{what}: rebuilt");
    };

    // Late batches from other nodes' boots: one of the first day (no owner news), then one of the second day
    // that records another team for pod q (in force from then on: the later days change too).
    let late = |of: usize, n: u32, owners: Vec<Ownership>| {
        let mut l = batches[of].clone();
        l.boot_id = format!("late-{n}");
        l.agent_id = format!("n{n}");
        l.node.name = format!("n{n}");
        let uuid = format!("GPU-{n}");
        (l.devices[0].uuid, l.gpus[0].uuid, l.processes[0].gpu_uuid) = (uuid.clone(), uuid.clone(), uuid);
        l.holdings = share::holdings(1_800 * NS, &l.processes, &[]);
        l.owners = owners;
        l.cost = gpucost_rules::priced::price_batch(&PriceBook::catalogue_only(), &l);
        l
    };
    for l in [&a, &b] {
        assert!(matches!(l.record(&[late(3, 3, vec![])], now).unwrap()[0], Ok(Recorded::Stored)));
    }
    rebuild_and_compare("a late batch");
    let mut vision = batches[72 + 30].owners[0].clone();
    vision.team = "vision".into();
    vision.owner = "group:default/vision".into();
    for l in [&a, &b] {
        assert!(matches!(l.record(&[late(72 + 30, 4, vec![vision.clone()])], now).unwrap()[0], Ok(Recorded::Stored)));
    }
    rebuild_and_compare("a late batch with another owner");

    // Re-pricing the second day at half price.
    let half = |node: &Node, model: &str, gpus: u32, at: u64| {
        PriceBook::catalogue_only().price(node, model, gpus, at).map(|mut p| {
            p.instance_micros_per_hour /= 2;
            p
        })
    };
    for l in [&a, &b] {
        l.reprice(day0 + days::DAY, day0 + 2 * days::DAY, &half, RepriceOptions::default()).unwrap();
    }
    rebuild_and_compare("re-pricing");

    // Re-attributing the third day by the catalog.
    let catalog = Catalog::example();
    let by_catalog = |i: &Identity| resolve(&catalog, &Rule::DEFAULT_ORDER, i, None);
    for l in [&a, &b] {
        l.reattribute(day0 + 2 * days::DAY, day0 + 3 * days::DAY, &by_catalog, false).unwrap();
    }
    rebuild_and_compare("re-attribution");
}

/// Issue 19: an agent of cluster alpha reporting a GPU UUID of cluster beta (under beta's agent and boot ids)
/// bills alpha, never beta; beta's batches are stored, the pair is kept for an operator, and no beta GPU-second
/// vanishes or moves, whichever cluster reports first.
pub fn a_gpu_another_cluster_claims_moves_or_erases_none_of_its_clusters_time<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    let forged = in_cluster(batch("b", 1, T0, 30 * NS, 900_000), "alpha");
    assert_eq!(l.record(&[forged], T0).unwrap()[0].as_ref().unwrap(), &Recorded::Stored);
    let beta = |seq: u64| in_cluster(batch("b", seq, T0 + (seq - 1) * 15 * NS, 15 * NS, 500_000), "beta");
    let out = l.record(&[beta(1), beta(2)], T0 + NS).unwrap();
    for (o, seq) in out.iter().zip(1u64..) {
        let Ok(Recorded::Contested(c)) = o else { panic!("beta's batch {seq} is stored, contested: {o:?}") };
        assert_eq!(
            (c[0].gpu_uuid.as_str(), c[0].cluster.as_str(), c[0].other_cluster.as_str()),
            ("GPU-1", "beta", "alpha")
        );
    }
    let per_cluster = |l: &SqlLedger<S::E>| -> Vec<(Vec<String>, GpuTime)> {
        l.usage(&UsageQuery { from_ns: T0, to_ns: T0 + HOUR, group_by: vec![Dimension::Cluster, Dimension::Node] })
            .unwrap()
            .rows
            .into_iter()
            .map(|r| (r.group, r.time))
            .collect()
    };
    let s30 = 30 * u128::from(NS);
    let time = |used_ns: u128| GpuTime { observed_ns: Some(s30), held_ns: s30, used_ns };
    let apart = vec![
        (vec!["alpha".to_string(), "n1".to_string()], time(s30 * 9 / 10)),
        (vec!["beta".to_string(), "n1".to_string()], time(s30 / 2)),
    ];
    assert_eq!(per_cluster(&l), apart, "each cluster has its own GPU time on its own node");
    // Each cluster's resend is a duplicate of its own batch; the next beta batch, beyond alpha's time, is plain.
    assert_eq!(l.record(&[beta(2)], T0).unwrap()[0].as_ref().unwrap(), &Recorded::Duplicate);
    assert_eq!(l.record(&[beta(3)], T0).unwrap()[0].as_ref().unwrap(), &Recorded::Stored);
    let c = l.conflicts().unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].cluster.as_str(), c[0].other_cluster.as_str(), c[0].start_ns, c[0].end_ns, c[0].batches),
        ("beta", "alpha", T0, T0 + 30 * NS, 2)
    );

    // The other order: beta's time is stored first, alpha's claim over it is alpha's own and leaves beta's alone.
    let first = s.open("first", HOUR, WEEK).unwrap();
    assert!(first.record(&[beta(1), beta(2)], T0).unwrap().iter().all(|o| o.as_ref().ok() == Some(&Recorded::Stored)));
    let late = first.record(&[in_cluster(batch("b", 1, T0, 30 * NS, 900_000), "alpha")], T0).unwrap();
    assert!(matches!(&late[0], Ok(Recorded::Contested(c)) if c[0].other_cluster == "beta"), "{late:?}");
    assert_eq!(per_cluster(&first), apart);
    let costs = first
        .costs(&CostQuery {
            from_ns: T0,
            to_ns: T0 + HOUR,
            group_by: vec![Dimension::Cluster],
            filters: vec![],
            policy: Policy::Hybrid,
        })
        .unwrap();
    assert_eq!(
        costs.rows.iter().map(|r| (r.group[0].as_str(), r.held_ns)).collect::<Vec<_>>(),
        [("alpha", s30), ("beta", s30)]
    );
}

/// Issue 19: batch numbers are kept per (cluster, agent, boot), so an agent of another cluster sending under a
/// beta agent's boot id turns none of beta's batches into a duplicate.
pub fn a_boot_id_another_cluster_learnt_cannot_make_a_batch_a_duplicate<S: Stores>(s: &S) {
    let l = s.open("l", HOUR, WEEK).unwrap();
    // alpha's own GPU, beta's agent and boot ids, sequence numbers 1..=5 at once.
    let mut forged = in_cluster(batch("b", 5, T0, 15 * NS, 100_000), "alpha");
    forged.first_seq = 1;
    let readings = &mut forged.priced.held.batch;
    for uuid in readings.devices.iter_mut().map(|d| &mut d.uuid).chain(readings.gpus.iter_mut().map(|g| &mut g.uuid)) {
        *uuid = "GPU-alpha".into();
    }
    for p in &mut forged.processes {
        p.gpu_uuid = "GPU-alpha".into();
    }
    forged.holdings = share::holdings(15 * NS, &forged.processes, &[]);
    assert_eq!(l.record(&[forged], T0).unwrap()[0].as_ref().unwrap(), &Recorded::Stored);
    let beta = in_cluster(batch("b", 3, T0 + 15 * NS, 15 * NS, 500_000), "beta");
    assert_eq!(l.record(std::slice::from_ref(&beta), T0).unwrap()[0].as_ref().unwrap(), &Recorded::Stored);
    assert_eq!(
        l.record(&[beta], T0).unwrap()[0].as_ref().unwrap(),
        &Recorded::Duplicate,
        "beta's own resend still is one"
    );
    assert!(l.conflicts().unwrap().is_empty(), "two GPUs, no conflict");
}

/// A priced batch of node n1 with GPU-1 (held by pod `ml/p` at `share_ppm`, 1 GiB, 100 W) and GPU-2 (nobody on
/// it, 2 GiB, 50 W).
fn two_gpu_batch(seq: u64, start: u64, len: u64, share_ppm: u32) -> Attributed {
    use gpucost_rules::book::PriceBook;
    let mut b = batch("b", seq, start, len, share_ppm);
    let mut raw: Batch = b.held.batch.clone();
    raw.devices.push(Device { uuid: "GPU-2".into(), index: 1, ..raw.devices[0].clone() });
    raw.gpus.push(GpuReading {
        uuid: "GPU-2".into(),
        utilization_ppm: 0,
        memory_used_bytes: 2 << 30,
        power_milliwatts: 50_000,
        energy_millijoules: Some(len / NS * 50_000),
    });
    b = stage(raw);
    b.cost = gpucost_rules::priced::price_batch(&PriceBook::catalogue_only(), &b);
    b
}

/// Issue 22 item 3: a GPU's and a node's history per bucket is its rollup's GPU time, energy and cost (the
/// same cost the costs query gives for that GPU or node and hour), with utilisation, memory and power from its
/// raw intervals (interval-weighted means, maxima; a node's over its GPUs); past the raw retention the mean
/// utilisation and power come from the rollup (used ÷ observed, energy ÷ observed) and the rest is unknown. A
/// workload's history is its held and used time and hybrid charge per bucket and GPU.
pub fn a_gpus_nodes_and_workloads_history_comes_from_the_raw_rows_and_the_rollups<S: Stores>(s: &S) {
    use crate::{HistoryPoint, HistorySource, HistorySubject};
    let batches = vec![
        two_gpu_batch(1, T0, 600 * NS, 300_000),
        two_gpu_batch(2, T0 + 600 * NS, 600 * NS, 600_000),
        two_gpu_batch(3, T0 + HOUR, 900 * NS, 100_000),
    ];
    let workload = batches[0].processes[0].workload.key.clone();
    let gpu = HistorySubject::Gpu { uuid: "GPU-1".into(), cluster: None };
    let node = HistorySubject::Node { cluster: "prod".into(), name: "n1".into() };
    let fleet = |l: &SqlLedger<S::E>, dim: Dimension, value: &str, at: u64| -> (u64, u64) {
        let r = l
            .costs(&CostQuery {
                from_ns: at,
                to_ns: at + HOUR,
                group_by: vec![],
                filters: vec![(dim, value.to_string())],
                policy: Policy::Hybrid,
            })
            .unwrap();
        (r.fleet as u64, r.rows.iter().map(|x| x.used + x.idle).sum::<u128>() as u64)
    };
    for (name, now, raw) in [("recent", T0 + 2 * HOUR, true), ("old", T0 + 8 * 24 * HOUR, false)] {
        let l = s.open(name, HOUR, WEEK).unwrap();
        for r in l.record(&batches, now).unwrap() {
            assert_eq!(r.unwrap(), Recorded::Stored);
        }
        let g = l.history(&gpu, T0 - HOUR, T0 + 3 * HOUR).unwrap();
        assert_eq!(g.iter().map(|p| p.bucket_start_ns).collect::<Vec<_>>(), [T0, T0 + HOUR], "{name}");
        let p: &HistoryPoint = &g[0];
        assert_eq!((p.observed_ns, p.held_ns, p.used_ns), (1200 * NS, 1200 * NS, 540 * NS), "{name}");
        assert_eq!(p.energy_millijoules, 1200 * 100_000);
        let (gpu_cost, _) = fleet(&l, Dimension::Gpu, "GPU-1", T0);
        assert!(gpu_cost > 0);
        assert_eq!(p.cost_micros, gpu_cost, "{name}: the costs query's fleet line for this GPU and hour");
        assert_eq!(p.unallocated_micros, 0, "always held");
        assert!(p.idle_micros.abs_diff(gpu_cost - gpu_cost * 540 / 1200) <= 2, "{name}: {p:?}");
        assert_eq!(p.utilization_mean_ppm, Some(450_000), "{name}: (0.3 × 600 s + 0.6 × 600 s) / 1 200 s");
        assert_eq!(p.power_mean_milliwatts, Some(100_000), "{name}");
        assert_eq!(g[1].utilization_mean_ppm, Some(100_000), "{name}");
        let n = l.history(&node, T0 - HOUR, T0 + 3 * HOUR).unwrap();
        assert_eq!(n.len(), 2, "{name}");
        let q = &n[0];
        assert_eq!((q.observed_ns, q.held_ns, q.used_ns), (2400 * NS, 1200 * NS, 540 * NS), "{name}");
        let (node_cost, _) = fleet(&l, Dimension::Node, "n1", T0);
        assert_eq!(q.cost_micros, node_cost, "{name}");
        assert_eq!(q.unallocated_micros, node_cost - gpu_cost, "{name}: GPU-2 was never held");
        assert_eq!(q.energy_millijoules, 1200 * 150_000);
        if raw {
            assert_eq!((p.source, p.raw_ns), (HistorySource::Raw, 1200 * NS));
            assert_eq!(p.utilization_max_ppm, Some(600_000));
            assert_eq!((p.memory_used_mean_bytes, p.memory_used_max_bytes), (Some(1 << 30), Some(1 << 30)));
            assert_eq!(p.power_max_milliwatts, Some(100_000));
            assert_eq!((q.source, q.raw_ns), (HistorySource::Raw, 2400 * NS));
            assert_eq!(q.utilization_mean_ppm, Some(225_000), "GPU-2 idle beside GPU-1's 45 %");
            assert_eq!(q.utilization_max_ppm, Some(600_000));
            assert_eq!((q.memory_used_mean_bytes, q.memory_used_max_bytes), (Some(3 << 29), Some(2 << 30)));
            assert_eq!((q.power_mean_milliwatts, q.power_max_milliwatts), (Some(75_000), Some(100_000)));
        } else {
            assert_eq!((p.source, p.raw_ns), (HistorySource::Rollup, 0), "past the retention");
            assert_eq!((p.utilization_max_ppm, p.memory_used_mean_bytes, p.memory_used_max_bytes), (None, None, None));
            assert_eq!(p.power_max_milliwatts, None);
            assert_eq!(q.source, HistorySource::Rollup);
            assert_eq!(q.utilization_mean_ppm, Some(225_000), "540 s used of 2 400 s observed");
            assert_eq!(q.power_mean_milliwatts, Some(75_000), "its energy over its observed time");
        }
        // Another cluster's GPU of the same UUID, or another node, has no history here.
        let elsewhere = HistorySubject::Gpu { uuid: "GPU-1".into(), cluster: Some("staging".into()) };
        assert!(l.history(&elsewhere, T0 - HOUR, T0 + 3 * HOUR).unwrap().is_empty());
        let in_prod = HistorySubject::Gpu { uuid: "GPU-1".into(), cluster: Some("prod".into()) };
        assert_eq!(l.history(&in_prod, T0 - HOUR, T0 + 3 * HOUR).unwrap(), g);
        let other = HistorySubject::Node { cluster: "prod".into(), name: "n2".into() };
        assert!(l.history(&other, T0 - HOUR, T0 + 3 * HOUR).unwrap().is_empty());
        assert_eq!(l.history(&gpu, T0 + HOUR, T0 + 2 * HOUR).unwrap().len(), 1, "the window bounds the buckets");
        let w = l.history(&HistorySubject::Workload { key: workload.clone() }, T0 - HOUR, T0 + 3 * HOUR).unwrap();
        assert_eq!(w.len(), 2, "{name}");
        assert_eq!(w[0].gpu.as_deref(), Some("GPU-1"));
        assert_eq!((w[0].held_ns, w[0].used_ns), (1200 * NS, 540 * NS));
        let (_, charged) = fleet(&l, Dimension::Workload, &workload, T0);
        assert_eq!(w[0].cost_micros, charged, "{name}: its hybrid charge in that hour");
        assert_eq!(w[0].cost_micros, gpu_cost, "under hybrid the only holder pays the whole GPU");
        assert_eq!((w[1].bucket_start_ns, w[1].held_ns), (T0 + HOUR, 900 * NS));
        // Its utilisation (used ÷ held), highest interval SM share and peak memory (the evidence), and power (its
        // energy ÷ held time), whether or not the raw intervals are kept.
        assert_eq!(w[0].utilization_mean_ppm, Some(450_000), "{name}: 540 s used of 1 200 s held");
        assert_eq!(w[0].utilization_max_ppm, Some(600_000), "{name}: the busier interval");
        assert_eq!(w[0].memory_used_max_bytes, Some(2 << 30), "{name}: the process's reported peak");
        assert!(w[0].energy_millijoules > 0, "{name}");
        assert_eq!(w[0].power_mean_milliwatts, Some(w[0].energy_millijoules * NS / w[0].held_ns), "{name}");
        assert_eq!((w[1].utilization_mean_ppm, w[1].utilization_max_ppm), (Some(100_000), Some(100_000)), "{name}");
    }
}

/// `batch` with its one process's evidence: its peak and busy samples (of 15), or none (an older agent).
fn evidence_batch(seq: u64, start: u64, len: u64, share_ppm: u32, peak: Option<u64>, busy: Option<u32>) -> Attributed {
    let mut b = batch("ev", seq, start, len, share_ppm);
    let p = &mut b.processes[0];
    (p.peak_memory_bytes, p.busy_samples) = (peak, busy);
    b
}

pub fn evidence_gives_exact_percentiles_peaks_and_busy_shares_over_any_window<S: Stores>(s: &S) {
    use crate::evidence::{EvidenceQuery, EvidenceStore};
    let l = s.open("l", HOUR, WEEK).unwrap();
    // Hour 0: a hundred 36-second intervals at 1 %, 2 %, … 100 % SM (in a scrambled order), peaking at 1..=100
    // MiB, busy in every sample. Hour 1: idle, ten 6-minute intervals at 0 % SM, 3 GiB peak, never busy.
    let mut batches: Vec<Attributed> = (1..=100u64)
        .map(|k| {
            let pct = (k * 37) % 100 + 1;
            evidence_batch(k, T0 + (k - 1) * 36 * NS, 36 * NS, (pct * 10_000) as u32, Some(pct << 20), Some(15))
        })
        .collect();
    batches.extend(
        (0..10u64).map(|i| evidence_batch(101 + i, T0 + HOUR + i * 360 * NS, 360 * NS, 0, Some(3 << 30), Some(0))),
    );
    // Hour 2: an older agent, which says nothing of peaks or busy samples, at 40 % SM.
    batches.push(evidence_batch(111, T0 + 2 * HOUR, HOUR, 400_000, None, None));
    for chunk in batches.chunks(16) {
        assert!(l.record(chunk, T0 + 3 * HOUR).unwrap().iter().all(|r| matches!(r, Ok(Recorded::Stored))));
    }
    let window = |from: u64, to: u64| {
        let mut e = l.evidence(&EvidenceQuery { from_ns: from, to_ns: to, ..Default::default() }).unwrap();
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    };
    let h0 = window(T0, T0 + HOUR);
    assert_eq!(h0.group, "pod:prod/ml/p");
    assert_eq!((h0.buckets_seen, h0.bucket_ns, h0.held_ns), (1, HOUR, HOUR));
    assert_eq!((h0.sm_max_ppm, h0.sm_p95_ppm, h0.sm_p50_ppm), (1_000_000, 950_000, 500_000));
    assert_eq!((h0.peak_memory_bytes, h0.peak_known_ns), (Some(100 << 20), HOUR), "the largest peak, not a mean");
    assert_eq!((h0.busy_ppm, h0.samples), (Some(1_000_000), 1_500));
    assert_eq!(h0.ran_on.len(), 1);
    let on = &h0.ran_on[0];
    assert_eq!((on.gpu_model.as_str(), on.instance_type.as_str(), on.held_ns), ("NVIDIA A10G", "g5.xlarge", HOUR));
    // Two hours merged from their hourly rows: half the time at 0 %, the rest at 1..=100 %; p95 of 7 200 s is
    // reached 3 240 s into the busy hour, at 90 %; p50 is still 0.
    let h01 = window(T0, T0 + 2 * HOUR);
    assert_eq!((h01.buckets_seen, h01.held_ns), (2, 2 * HOUR));
    assert_eq!((h01.sm_max_ppm, h01.sm_p95_ppm, h01.sm_p50_ppm), (1_000_000, 900_000, 0));
    assert_eq!(h01.peak_memory_bytes, Some(3 << 30));
    assert_eq!((h01.busy_ppm, h01.samples), (Some(1_500 * 1_000_000 / 1_650), 1_650));
    // The older agent's hour: SM known, peak and busy share unknown, not 0.
    let h2 = window(T0 + 2 * HOUR, T0 + 3 * HOUR);
    assert_eq!((h2.sm_max_ppm, h2.sm_p95_ppm), (400_000, 400_000));
    assert_eq!((h2.peak_memory_bytes, h2.peak_known_ns, h2.busy_ppm, h2.samples), (None, 0, None, 0));
    let all = window(T0, T0 + 3 * HOUR);
    assert_eq!((all.buckets_seen, all.peak_memory_bytes, all.peak_known_ns), (3, Some(3 << 30), 2 * HOUR));
    // Re-sending changes nothing.
    let again = l.record(&batches[..16], T0 + 3 * HOUR).unwrap();
    assert!(again.iter().all(|r| matches!(r, Ok(Recorded::Duplicate))));
    assert_eq!(window(T0, T0 + 3 * HOUR), all);
    // An interval across the hour is split between the two buckets by time.
    let l2 = s.open("l2", HOUR, WEEK).unwrap();
    l2.record(&[evidence_batch(1, T0 + HOUR - 60 * NS, 120 * NS, 250_000, Some(5 << 20), Some(15))], T0 + 2 * HOUR)
        .unwrap();
    let e = l2.evidence(&EvidenceQuery { from_ns: T0 + HOUR, to_ns: T0 + 2 * HOUR, ..Default::default() }).unwrap();
    assert_eq!((e[0].held_ns, e[0].sm_p95_ppm, e[0].peak_memory_bytes), (60 * NS, 250_000, Some(5 << 20)));
    assert!(
        l.evidence(&EvidenceQuery {
            from_ns: T0,
            to_ns: T0 + 3 * HOUR,
            cluster: Some("other".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
}

pub fn evidence_groups_a_controllers_pods_and_each_node_hours_instance_ids_are_kept<S: Stores>(s: &S) {
    use crate::evidence::{EvidenceQuery, EvidenceStore, NodeInstance};
    let l = s.open("l", HOUR, WEEK).unwrap();
    // Two pods of one Deployment, one after the other on the node's GPU: one workload at the controller level.
    let pod = |seq: u64, start: u64, name: &str, share: u32, peak: u64| {
        let mut b = evidence_batch(seq, start, HOUR, share, Some(peak), Some(15));
        let w = Arc::new(Workload::new(
            &node(),
            Identity {
                kind: WorkloadKind::KubernetesPod,
                namespace: "ml".into(),
                pod: name.into(),
                controller_kind: "Deployment".into(),
                controller_name: "serve".into(),
                ..Default::default()
            },
        ));
        b.processes[0].workload = w.clone();
        b.holdings[0].workload = w;
        b
    };
    let mut late = pod(2, T0 + HOUR, "serve-b", 200_000, 7 << 30);
    // The node name is taken by another instance in the second hour.
    late.instance_id = Some("i-0fedcba9876543210".into());
    assert!(
        l.record(&[pod(1, T0, "serve-a", 100_000, 2 << 30), late], T0 + 2 * HOUR).unwrap().iter().all(|r| r.is_ok())
    );
    let e = l
        .evidence(&EvidenceQuery {
            from_ns: T0,
            to_ns: T0 + 2 * HOUR,
            namespace: Some("ml".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].group, "controller:prod/ml/Deployment/serve");
    assert_eq!((e[0].workloads, e[0].buckets_seen, e[0].peak_memory_bytes), (2, 2, Some(7 << 30)));
    assert_eq!((e[0].sm_max_ppm, e[0].sm_p95_ppm, e[0].sm_p50_ppm), (200_000, 200_000, 100_000));
    assert!(
        l.evidence(&EvidenceQuery {
            from_ns: T0,
            to_ns: T0 + 2 * HOUR,
            namespace: Some("other".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
    let hours = l.node_instances(T0, T0 + 2 * HOUR, None).unwrap();
    let row = |h: u64, id: &str| NodeInstance {
        cluster: "prod".into(),
        node: "n1".into(),
        bucket_start_ns: T0 + h * HOUR,
        instance_id: id.into(),
        seen_ns: HOUR,
    };
    assert_eq!(hours, vec![row(0, "i-0123456789abcdef0"), row(1, "i-0fedcba9876543210")]);
    assert_eq!(
        l.node_instances(T0, T0 + 2 * HOUR, Some("i-0fedcba9876543210")).unwrap(),
        vec![row(1, "i-0fedcba9876543210")]
    );
    assert!(l.node_instances(T0 + 2 * HOUR, T0 + 3 * HOUR, None).unwrap().is_empty());
}

/// Fetched AWS prices (issue 25 item 5): kept per source, region, zone, instance type and effective time, read
/// back in that order; fetching the same price again refreshes it, a new effective time adds a row.
pub fn fetched_prices_are_kept_per_source_zone_and_effective_time_and_a_refetch_refreshes_them<S: Stores>(s: &S) {
    use crate::fetched_prices::{FetchedPrice, FetchedPriceStore, PriceSource};
    let l = s.open("fetched", HOUR, 0).unwrap();
    let price = |source, zone: &str, effective_ns, micros, fetched_ns, provenance: &str| FetchedPrice {
        source,
        region: "us-east-1".into(),
        zone: zone.into(),
        instance_type: "p5.48xlarge".into(),
        effective_ns,
        micros_per_hour: micros,
        fetched_ns,
        provenance: provenance.into(),
    };
    let list = price(PriceSource::PriceList, "", T0, 55_040_000, T0 + HOUR, "SKU1.JRTCKXETXF.6YS6EN2CT7");
    let spot_a = price(PriceSource::Spot, "us-east-1a", T0, 21_123_400, T0 + HOUR, "2026-12-07T10:00:00Z");
    let spot_b = price(PriceSource::Spot, "us-east-1b", T0, 22_000_001, T0 + HOUR, "2026-12-07T10:00:00Z");
    assert_eq!(l.put_fetched_prices(&[spot_b.clone(), list.clone(), spot_a.clone()]).unwrap(), 3);
    assert_eq!(l.fetched_prices().unwrap(), vec![list.clone(), spot_a.clone(), spot_b.clone()]);

    // The next day's fetch: the same on-demand price again (refreshed, not doubled), a new spot price in 1a.
    let list_again = FetchedPrice { fetched_ns: T0 + 25 * HOUR, ..list.clone() };
    let spot_a_later = price(PriceSource::Spot, "us-east-1a", T0 + 20 * HOUR, 19_500_000, T0 + 25 * HOUR, "later");
    l.put_fetched_prices(&[list_again.clone(), spot_a_later.clone()]).unwrap();
    drop(l);
    let l = s.open("fetched", HOUR, 0).unwrap();
    assert_eq!(l.fetched_prices().unwrap(), vec![list_again, spot_a, spot_a_later, spot_b], "kept across a reopen");
}

//! Who pays in the demo fleet: people are paid for by their catalog team, never made up into teams, and a
//! workload no rule names reads as what it is.

use std::collections::BTreeSet;
use std::process::Command;

use gpucost_e2e::{Collector, bin, free_port};
use gpucost_rules::catalog::Catalog;

#[test]
fn in_the_demo_people_are_never_teams_and_ecs_tasks_read_by_their_family() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = Command::new(bin("gpucost-collector"))
        .args(["--log-format", "json", "demo", "--backfill", "1d", "--backfill-only", "--data-dir"])
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = Collector::start_with(&data.join("gpucost.db"), free_port(), free_port(), &[], &[]);
    let from = gpucost_types::clock::now_ns() / 1_000_000_000 - 2 * 86_400;
    let (status, costs) = c.get(&format!("/api/v1/costs?from={from}&group_by=kind,team,user,workload"));
    assert_eq!(status, 200, "{costs}");
    let rows = costs["rows"].as_array().unwrap();
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();

    // Every team is a catalog group (or none), and a host process is its user's catalog team or unattributed.
    let catalog = Catalog::example();
    let groups: BTreeSet<String> = catalog.groups.values().map(|g| g.name.clone()).collect();
    // Money no rule attributes has no team (shown as "unattributed", or "" in ledgers that name it so).
    let unattributed = |team: &str| team.is_empty() || team == "unattributed";
    let (mut hosts, mut paid_by_a_team) = (0, 0);
    for r in rows {
        let (team, user) = (text(r, "team"), text(r, "user"));
        assert!(unattributed(&team) || groups.contains(&team), "team {team:?} is not a catalog group: {r}");
        if text(r, "kind") == "host_process" {
            hosts += 1;
            match catalog.team_of_user(&format!("user:default/{user}")) {
                Some(g) => {
                    assert_eq!(team, g.name, "{r}");
                    paid_by_a_team += 1;
                }
                None => assert!(unattributed(&team), "{r}"),
            }
        }
    }
    assert!(hosts > paid_by_a_team && paid_by_a_team > 0, "host processes of catalog users and of others: {costs}");
    let (_, by_team) = c.get(&format!("/api/v1/costs?from={from}&group_by=team"));
    let teams: BTreeSet<String> = by_team["rows"].as_array().unwrap().iter().map(|r| text(r, "team")).collect();
    for person in ["bob", "erin", "farah", "hana", "dmitri", "gus", "alice", "carol"] {
        assert!(!teams.contains(person), "{person} is a team: {teams:?}");
    }

    // ECS tasks (no task tags in the demo: unattributed) read by their family, the task id kept.
    let ecs: Vec<String> = rows.iter().filter(|r| text(r, "kind") == "ecs_task").map(|r| text(r, "workload")).collect();
    assert!(!ecs.is_empty(), "the demo runs ECS tasks: {costs}");
    for key in &ecs {
        let parts: Vec<&str> = key.trim_start_matches("ecs:").split('/').collect();
        assert!(
            parts.len() == 3 && parts[1].ends_with("-batch-embed") && parts[2].len() == 32,
            "ecs:<cluster>/<family>/<task id>: {key}"
        );
    }
}

/// Issue 18's check, as a client of the wire contract and the HTTP API would make it: a namespace whose
/// `backstage.io/owner` changes at :46 bills 46 minutes to the old owner and 14 to the new, not the hour to one.
#[test]
fn a_namespace_that_changes_owner_mid_hour_bills_each_owner_its_own_minutes() {
    use gpucost_e2e::{g5_batch, send_batches};
    use gpucost_proto::v1 as pb;
    const NS: u64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--catalog-dir", catalog.to_str().unwrap()],
        &[],
    );
    let hour = 1_793_577_600 * NS; // 2026-11-02T00:00:00Z
    let minute = |seq: u64| {
        let owner = if seq <= 46 { "team-a" } else { "team-b" };
        let pod = pb::WorkloadIdentity {
            kind: pb::WorkloadKind::KubernetesPod as i32,
            namespace: "shared".into(),
            pod: "web-0".into(),
            namespace_labels: [("backstage.io/owner".to_string(), owner.to_string())].into(),
            ..Default::default()
        };
        let start = hour + (seq - 1) * 60 * NS;
        g5_batch("n1", seq, start, start + 60 * NS, vec![(0, 40.0, pod)])
    };
    assert_eq!(send_batches(&c.grpc_url(), (1..=60).map(minute).collect()).len(), 60);
    let (status, body) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=owner");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(String, f64)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["owner"].as_str().unwrap().to_string(), r["held_gpu_seconds"].as_f64().unwrap()))
        .collect();
    assert_eq!(rows, [("group:default/team-a".to_string(), 2_760.0), ("group:default/team-b".to_string(), 840.0)]);
    let micros = |r: &serde_json::Value| r["total_micros"].as_u64().unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert!(micros(&rows[0]) > 3 * micros(&rows[1]), "46 minutes cost more than three times 14: {body}");
}

//! Test data in the wire's shapes: a g5.12xlarge batch, a pod of the example catalog, and readers of the
//! collector's money and CSV.

/// A batch from a g5.12xlarge (four A10Gs, on demand, us-east-1) in cluster `prod` over [start_ns, end_ns):
/// one process per (GPU index, SM %, workload), 8 GiB each.
pub fn g5_batch(
    node: &str,
    seq: u64,
    start_ns: u64,
    end_ns: u64,
    processes: Vec<(usize, f64, gpucost_proto::v1::WorkloadIdentity)>,
) -> gpucost_proto::v1::UsageBatch {
    use gpucost_proto::v1 as pb;
    let gpus: Vec<String> = (0..4).map(|i| format!("{node}-GPU-{i}")).collect();
    pb::UsageBatch {
        agent_id: node.into(),
        boot_id: "b".into(),
        seq,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: node.into(),
            instance_type: "g5.12xlarge".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            devices: gpus
                .iter()
                .enumerate()
                .map(|(i, u)| pb::GpuDevice {
                    uuid: u.clone(),
                    model: "NVIDIA A10G".into(),
                    memory_total_bytes: 24 << 30,
                    index: i as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        interval_start_unix_nanos: start_ns,
        interval_end_unix_nanos: end_ns,
        processes: processes
            .into_iter()
            .enumerate()
            .map(|(i, (gpu, sm, workload))| pb::ProcessUsage {
                pid: 10 + i as u32,
                gpu_uuid: gpus[gpu].clone(),
                sm_util_percent: sm,
                used_memory_bytes: 8 << 30,
                sample_count: ((end_ns - start_ns) / 1_000_000_000) as u32,
                workload: Some(workload),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `"12.345678"` (USD as the API writes it) → 12_345_678 micro-dollars.
pub fn usd_micros(usd: &str) -> u128 {
    let (whole, frac) = usd.split_once('.').unwrap_or((usd, "0"));
    whole.parse::<u128>().unwrap() * 1_000_000 + format!("{frac:0<6}")[..6].parse::<u128>().unwrap()
}

/// RFC 4180 CSV rows (no line breaks inside fields) as maps from the header's names.
pub fn parse_csv(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut rows = gpucost_report::chargeback::csv_rows(text).into_iter();
    let header = rows.next().expect("a header");
    rows.map(|fields| {
        assert_eq!(fields.len(), header.len(), "{fields:?}");
        header.iter().cloned().zip(fields).collect()
    })
    .collect()
}

/// A pod of the vision team's `detector` component (examples/catalog), in namespace `vision`.
pub fn detector_pod(name: &str) -> gpucost_proto::v1::WorkloadIdentity {
    gpucost_proto::v1::WorkloadIdentity {
        kind: gpucost_proto::v1::WorkloadKind::KubernetesPod as i32,
        namespace: "vision".into(),
        pod: name.into(),
        container: "main".into(),
        labels: [("backstage.io/kubernetes-id".to_string(), "detector".to_string())].into(),
        ..Default::default()
    }
}

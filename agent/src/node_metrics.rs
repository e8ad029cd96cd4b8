//! The agent's own `/metrics` for its node, for teams that scrape nodes the way they scrape dcgm-exporter:
//! per-GPU utilisation, memory and power, and per-pod (never per-process) GPU use, from the latest interval.
//! Prometheus text format, rendered from the last framed batch (pure), served by a minimal HTTP/1.1 loop on
//! `--metrics-addr`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gpucost_proto::v1::UsageBatch;

/// The latest interval and how many were framed.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    latest: RwLock<Option<UsageBatch>>,
    intervals: AtomicU64,
    /// The spool's counters, kept by the uplink.
    pub spool: std::sync::Arc<crate::spool::SpoolGauges>,
    /// How reading the GPUs goes, kept by the source.
    pub source: std::sync::Arc<crate::source::SourceHealth>,
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl NodeMetrics {
    pub fn observe(&self, b: &UsageBatch) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(b.clone());
        self.intervals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP gpucost_agent_intervals_total Intervals sampled and framed.");
        let _ = writeln!(out, "# TYPE gpucost_agent_intervals_total counter");
        let _ = writeln!(out, "gpucost_agent_intervals_total {}", self.intervals.load(Ordering::Relaxed));
        let sp = &self.spool;
        let src = &self.source;
        let families: [(&str, &str, &str, f64); 12] = [
            (
                "gpucost_agent_gpu_lost_total",
                "counter",
                "Times a GPU fell off the bus (NVML GPU_IS_LOST); it is not reported until it answers again.",
                src.gpus_lost.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_gpu_read_errors_total",
                "counter",
                "Device readings that failed, one per device per sample (the device is left out of that sample).",
                src.read_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_batches",
                "gauge",
                "Batches waiting for the collector's ack.",
                sp.batches.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_bytes",
                "gauge",
                "Bytes of batches waiting for the collector's ack.",
                sp.bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_merged_total",
                "counter",
                "Pairs of old batches merged into one to stay within the spool's bounds.",
                sp.merged.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_dropped_batches_total",
                "counter",
                "Batches dropped unacked (spool full with nothing to merge, or too old).",
                sp.dropped_batches.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_dropped_held_gpu_seconds_total",
                "counter",
                "Held GPU-seconds in dropped batches: billing lost.",
                sp.dropped_held_gpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "gpucost_agent_spool_dropped_observed_gpu_seconds_total",
                "counter",
                "Observed GPU-seconds in dropped batches.",
                sp.dropped_observed_gpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "gpucost_agent_spool_quarantined_total",
                "counter",
                "Spool records that did not read back whole, moved to quarantine/.",
                sp.quarantined.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_spool_write_errors_total",
                "counter",
                "Batches the spool could not write to disk (kept in memory instead).",
                sp.write_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_batches_trimmed_total",
                "counter",
                "Batches sent without their least used processes: over the collector's message limit or the contract's counts.",
                sp.trimmed_batches.load(Ordering::Relaxed) as f64,
            ),
            (
                "gpucost_agent_processes_trimmed_total",
                "counter",
                "Processes left out of trimmed batches (the least used first; their GPUs' time is still sent).",
                sp.trimmed_processes.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        let Some(b) = latest.as_ref() else { return out };
        let node = b.node.as_ref().map(|n| n.node_name.as_str()).unwrap_or_default();
        let model = |uuid: &str| {
            b.node.as_ref().and_then(|n| n.devices.iter().find(|d| d.uuid == uuid)).map_or("", |d| d.model.as_str())
        };
        let _ = writeln!(out, "# HELP gpucost_agent_interval_end_timestamp_seconds End of the latest interval.");
        let _ = writeln!(out, "# TYPE gpucost_agent_interval_end_timestamp_seconds gauge");
        let _ =
            writeln!(out, "gpucost_agent_interval_end_timestamp_seconds {}", b.interval_end_unix_nanos as f64 / 1e9);
        type Pick = fn(&gpucost_proto::v1::GpuUsage) -> f64;
        let gpu_families: [(&str, &str, Pick); 3] = [
            ("gpucost_agent_gpu_utilization_ratio", "GPU utilisation over the latest interval (0..1).", |g| {
                g.utilization_percent / 100.0
            }),
            ("gpucost_agent_gpu_memory_used_bytes", "GPU memory used.", |g| g.memory_used_bytes as f64),
            ("gpucost_agent_gpu_power_watts", "GPU power draw.", |g| g.power_milliwatts as f64 / 1000.0),
        ];
        for (name, help, pick) in gpu_families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for g in &b.gpus {
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{}\",gpu=\"{}\",gpu_model=\"{}\"}} {}",
                    label(node),
                    label(&g.uuid),
                    label(model(&g.uuid)),
                    pick(g)
                );
            }
        }
        // Per pod (or other workload) and GPU: processes summed, so no pid is ever a label.
        let mut pods: BTreeMap<(String, String, String, String), (f64, u64)> = BTreeMap::new();
        for p in &b.processes {
            let w = p.workload.clone().unwrap_or_default();
            let name =
                if w.pod.is_empty() { w.ecs_task_arn.clone() + &w.slurm_job_id + &w.user } else { w.pod.clone() };
            let e = pods.entry((w.namespace.clone(), name, w.container.clone(), p.gpu_uuid.clone())).or_default();
            e.0 += p.sm_util_percent / 100.0;
            e.1 += p.used_memory_bytes;
        }
        for (name, help, which) in [
            ("gpucost_agent_pod_gpu_utilization_ratio", "SM utilisation of a workload's processes on a GPU (0..1).", 0),
            ("gpucost_agent_pod_gpu_memory_used_bytes", "GPU memory a workload's processes hold.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for ((ns, pod, container, gpu), (util, mem)) in &pods {
                let v = if which == 0 { util.min(1.0) } else { *mem as f64 };
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{}\",namespace=\"{}\",pod=\"{}\",container=\"{}\",gpu=\"{}\"}} {v}",
                    label(node),
                    label(ns),
                    label(pod),
                    label(container),
                    label(gpu)
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` (and `/healthz`) on `listener` until the process ends; each connection is
/// bounded by a 5-second read timeout and an 8 KiB request head.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<NodeMetrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                    Ok(Ok(k)) => n += k,
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                _ => ("404 Not Found", "text/plain", "not found: GET /metrics\n".to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_proto::v1 as pb;

    #[test]
    fn per_gpu_and_per_pod_gauges_without_pids() {
        let m = NodeMetrics::default();
        let pod = pb::WorkloadIdentity {
            namespace: "ml".into(),
            pod: "train-0".into(),
            container: "main".into(),
            ..Default::default()
        };
        m.observe(&pb::UsageBatch {
            node: Some(pb::NodeInfo {
                node_name: "n1".into(),
                devices: vec![pb::GpuDevice { uuid: "GPU-0".into(), model: "NVIDIA L4".into(), ..Default::default() }],
                ..Default::default()
            }),
            interval_end_unix_nanos: 15_000_000_000,
            gpus: vec![pb::GpuUsage {
                uuid: "GPU-0".into(),
                utilization_percent: 75.0,
                memory_used_bytes: 1024,
                power_milliwatts: 70_500,
                ..Default::default()
            }],
            processes: [(11, 30.0), (12, 40.0)]
                .iter()
                .map(|(pid, sm)| pb::ProcessUsage {
                    pid: *pid,
                    gpu_uuid: "GPU-0".into(),
                    sm_util_percent: *sm,
                    used_memory_bytes: 512,
                    workload: Some(pod.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        let text = m.render();
        assert!(
            text.contains(
                "gpucost_agent_gpu_utilization_ratio{node=\"n1\",gpu=\"GPU-0\",gpu_model=\"NVIDIA L4\"} 0.75"
            ),
            "{text}"
        );
        assert!(
            text.contains("gpucost_agent_gpu_power_watts{node=\"n1\",gpu=\"GPU-0\",gpu_model=\"NVIDIA L4\"} 70.5"),
            "{text}"
        );
        assert!(text.contains("gpucost_agent_pod_gpu_utilization_ratio{node=\"n1\",namespace=\"ml\",pod=\"train-0\",container=\"main\",gpu=\"GPU-0\"} 0.7"), "{text}");
        assert!(text.contains("gpucost_agent_pod_gpu_memory_used_bytes{node=\"n1\",namespace=\"ml\",pod=\"train-0\",container=\"main\",gpu=\"GPU-0\"} 1024"), "{text}");
        assert!(!text.contains("pid"), "{text}");
        assert!(text.contains("gpucost_agent_intervals_total 1"));
    }
}

//! The same fleet as a Prometheus exporter, the way per-process GPU metrics are collected today (a
//! dcgm-exporter-style exporter per node, scraped by Prometheus): per process its SM and memory
//! utilisation and memory, labelled with node, GPU, pid and pod; per GPU its utilisation, memory, power and
//! energy. `shards` ports each serve every `shards`-th node, so Prometheus scrapes several targets.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fleet::{Node, Shape};

struct Shard {
    shape: Arc<Shape>,
    interval: Duration,
    nodes: Mutex<Vec<Node>>,
}

/// The exposition of `nodes` for the interval under way at `now`.
fn render(shape: &Shape, nodes: &mut [Node], interval: Duration, now: Duration) -> String {
    let k = (now.as_nanos() / interval.as_nanos()) as u64;
    let mut out = String::with_capacity(nodes.len() * (shape.processes_per_node() * 3 + shape.gpus_per_node * 5) * 200);
    let process_metrics = [
        ("gpu_process_sm_utilization_ratio", "gauge", "SM utilisation of the process on the GPU"),
        ("gpu_process_memory_utilization_ratio", "gauge", "Memory-controller utilisation of the process"),
        ("gpu_process_memory_used_bytes", "gauge", "GPU memory the process holds"),
    ];
    let gpu_metrics = [
        ("gpu_utilization_ratio", "gauge", "GPU utilisation"),
        ("gpu_memory_utilization_ratio", "gauge", "Memory-controller utilisation"),
        ("gpu_memory_used_bytes", "gauge", "GPU memory in use"),
        ("gpu_power_watts", "gauge", "Power draw"),
        ("gpu_energy_joules_total", "counter", "Energy used since the driver loaded"),
    ];
    for node in nodes.iter_mut() {
        node.advance_to(shape, k);
    }
    for (m, (name, kind, help)) in process_metrics.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for node in nodes.iter() {
            for pod in node.pods() {
                let id = &pod.identity;
                for g in pod.gpus.clone() {
                    for p in 0..shape.procs_per_gpu {
                        let sm = node.sm_percent(shape, k, g, p) / 100.0;
                        let value = match m {
                            0 => sm,
                            1 => sm / 2.0,
                            _ => ((4 + (p as u64 % 4) * 2) << 30) as f64,
                        };
                        let pid = pod.first_pid + (g * shape.procs_per_gpu + p) as u32;
                        let _ = writeln!(
                            out,
                            "{name}{{cluster=\"{}\",node=\"{}\",gpu=\"{}\",pid=\"{pid}\",namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {value}",
                            shape.cluster, node.name, node.gpus[g], id.namespace, id.pod, id.container
                        );
                    }
                }
            }
        }
    }
    for (m, (name, kind, help)) in gpu_metrics.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for node in nodes.iter() {
            for (g, uuid) in node.gpus.iter().enumerate() {
                let util: f64 =
                    (0..shape.procs_per_gpu).map(|p| node.sm_percent(shape, k, g, p)).sum::<f64>().min(100.0);
                let value = match m {
                    0 => util / 100.0,
                    1 => util / 200.0,
                    2 => (24u64 << 30) as f64,
                    3 => 150.0 + util * 3.0,
                    _ => (150.0 + util * 3.0) * now.as_secs_f64(),
                };
                let _ = writeln!(
                    out,
                    "{name}{{cluster=\"{}\",node=\"{}\",gpu=\"{uuid}\"}} {value}",
                    shape.cluster, node.name
                );
            }
        }
    }
    out
}

/// Serves shard `j` of `shards` on each of `ports` (one port per shard) until the process ends.
pub async fn serve(shape: Shape, interval: Duration, host: &str, first_port: u16, shards: usize) -> anyhow::Result<()> {
    let shape = Arc::new(shape);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let k = (now.as_nanos() / interval.as_nanos()) as u64;
    let mut servers = tokio::task::JoinSet::new();
    for j in 0..shards {
        let nodes = (j..shape.nodes).step_by(shards).map(|i| Node::new(&shape, i, k)).collect();
        let shard = Arc::new(Shard { shape: shape.clone(), interval, nodes: Mutex::new(nodes) });
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shard = shard.clone();
                async move {
                    let body = tokio::task::spawn_blocking(move || {
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                        let mut nodes = shard.nodes.lock().unwrap_or_else(|p| p.into_inner());
                        render(&shard.shape, &mut nodes, shard.interval, now)
                    })
                    .await
                    .unwrap_or_default();
                    ([("content-type", "text/plain; version=0.0.4")], body)
                }
            }),
        );
        let addr = format!("{host}:{}", first_port as usize + j);
        let listener =
            tokio::net::TcpListener::bind(&addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        servers.spawn(async move { axum::serve(listener, app).await });
    }
    while let Some(done) = servers.join_next().await {
        done??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_three_series_per_process_and_five_per_gpu() {
        let shape = Shape {
            nodes: 2,
            gpus_per_node: 8,
            procs_per_gpu: 4,
            pods_per_node: 2,
            churn: 0.0,
            cluster: "c".into(),
            seed: 1,
        };
        let mut nodes: Vec<Node> = (0..2).map(|i| Node::new(&shape, i, 0)).collect();
        let text = render(&shape, &mut nodes, Duration::from_secs(15), Duration::from_secs(30));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 2 * (32 * 3 + 8 * 5));
        assert!(text.contains("gpu_process_sm_utilization_ratio{cluster=\"c\",node=\""));
    }
}

//! `gpucost-agent`: the GPU node agent. See `gpucost-agent --help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use gpucost_agent::identify::dra::{self, SliceCache};
use gpucost_agent::identify::imds;
use gpucost_agent::identify::labels::{CollectorKeys, DEFAULT_ALLOW, LabelAllow};
use gpucost_agent::identify::node::{DEFAULT_NODE_LABELS, NodeObject, apply_labels, apply_provider_id};
use gpucost_agent::identify::pods::PodCache;
use gpucost_agent::identify::{DEFAULT_ENV_KEYS, Identifier, IdentifyConfig};
use gpucost_agent::nvml::NvmlSource;
use gpucost_agent::reading::{CapacityType, NodeInfo};
use gpucost_agent::sampler::{self, Clock, Sampler};
use gpucost_agent::sim::{Fleet, FleetSpec, SimSource};
use gpucost_agent::source::GpuSource;
use gpucost_agent::spool::{Spool, SpoolConfig};
use gpucost_agent::uplink::UplinkConfig;
use gpucost_agent::wire::Framer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceKind {
    /// The node's NVIDIA GPUs through NVML.
    Nvml,
    /// One node of the deterministic simulated fleet.
    Sim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Toggle {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
}

/// GPU node agent: samples per-process GPU use and streams it to the gpucost collector.
#[derive(Debug, Parser)]
#[command(version)]
struct Config {
    /// Where readings come from.
    #[arg(long, env = "GPUCOST_SOURCE", value_enum, default_value = "nvml")]
    source: SourceKind,
    /// The collector's gRPC endpoint.
    #[arg(long, env = "GPUCOST_COLLECTOR", default_value = "http://127.0.0.1:50051")]
    collector: String,
    /// How often to sample the GPUs.
    #[arg(long, env = "GPUCOST_SAMPLE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    sample_interval: Duration,
    /// How often to send a batch (the length of one interval).
    #[arg(long, env = "GPUCOST_REPORT_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    report_interval: Duration,
    /// Sample one report interval, print it and exit (needs --output).
    #[arg(long)]
    once: bool,
    /// Output format for --once.
    #[arg(long, value_enum)]
    output: Option<Output>,
    /// Stable agent id; defaults to the node name.
    #[arg(long, env = "GPUCOST_AGENT_ID")]
    agent_id: Option<String>,
    /// Cluster name, e.g. the EKS cluster.
    #[arg(long, env = "GPUCOST_CLUSTER", default_value = "default")]
    cluster: String,
    /// This node's name (on Kubernetes: spec.nodeName through the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Cloud instance type, e.g. p4d.24xlarge (on EKS: the node.kubernetes.io/instance-type label).
    #[arg(long, env = "GPUCOST_INSTANCE_TYPE", default_value = "")]
    instance_type: String,
    /// on-demand, spot or reserved (default: from the node's labels, else unspecified).
    #[arg(long, env = "GPUCOST_CAPACITY_TYPE", default_value = "unspecified")]
    capacity_type: CapacityType,
    #[arg(long, env = "GPUCOST_REGION", default_value = "")]
    region: String,
    #[arg(long, env = "GPUCOST_ZONE", default_value = "")]
    zone: String,
    /// The NVML library to load.
    #[arg(long, env = "GPUCOST_NVML_LIB", default_value = "libnvidia-ml.so.1")]
    nvml_lib: String,
    /// Root of the host's /proc (the agent runs with hostPID).
    #[arg(long, env = "GPUCOST_PROC_ROOT", default_value = "/proc")]
    proc_root: PathBuf,
    /// The host's passwd file, to name users.
    #[arg(long, env = "GPUCOST_PASSWD", default_value = "/etc/passwd")]
    passwd: PathBuf,
    /// Environment variables read from GPU processes (comma-separated).
    #[arg(long, env = "GPUCOST_ENV_KEYS", value_delimiter = ',', default_values_t = DEFAULT_ENV_KEYS.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    env_keys: Vec<String>,
    /// Watch this node's pods through the Kubernetes API: auto (when running in a cluster or with
    /// KUBECONFIG set), on, or off.
    #[arg(long, env = "GPUCOST_KUBERNETES", value_enum, default_value = "auto")]
    kubernetes: Toggle,
    /// Read the instance id, type, lifecycle and placement from EC2 instance metadata (IMDSv2) when the
    /// flags and node object leave the instance type or id unknown: auto (try, quietly), on (must work), off.
    #[arg(long, env = "GPUCOST_IMDS", value_enum, default_value = "auto")]
    imds: Toggle,
    /// The instance metadata endpoint.
    #[arg(long, env = "GPUCOST_IMDS_ENDPOINT", default_value = "http://169.254.169.254")]
    imds_endpoint: String,
    /// Node labels sent to the collector (exact keys or prefix/* patterns; comma-separated).
    #[arg(long, env = "GPUCOST_NODE_LABEL_ALLOW", value_delimiter = ',', default_values_t = DEFAULT_NODE_LABELS.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    node_label_allow: Vec<String>,
    /// Pod and namespace labels and annotations kept (exact keys, or prefix/* patterns; comma-separated).
    #[arg(long, env = "GPUCOST_LABEL_ALLOW", value_delimiter = ',', default_values_t = DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    label_allow: Vec<String>,
    /// Also keep the pod and namespace label keys the collector asks for (those its catalog's label selectors
    /// and owner rules read; at most 32, keys only): true or false.
    #[arg(long, env = "GPUCOST_COLLECTOR_LABEL_KEYS", default_value_t = true, action = clap::ArgAction::Set)]
    collector_label_keys: bool,
    /// The kubelet's pod-resources socket (GPU allocations); ignored when it does not exist.
    #[arg(long, env = "GPUCOST_POD_RESOURCES_SOCKET", default_value = "/var/lib/kubelet/pod-resources/kubelet.sock")]
    pod_resources_socket: PathBuf,
    /// Device-plugin resources that are GPUs start with this.
    #[arg(long, env = "GPUCOST_GPU_RESOURCE_PREFIX", default_value = "nvidia.com/")]
    gpu_resource_prefix: String,
    /// The DRA driver whose GPUs pods hold through ResourceClaims (resource.k8s.io/v1): its ResourceSlices
    /// for this node are watched to tell which GPU each claimed device is. Empty: no DRA holders.
    #[arg(long, env = "GPUCOST_DRA_DRIVER", default_value = gpucost_agent::identify::dra::NVIDIA_GPU_DRIVER)]
    dra_driver: String,
    /// The ECS agent's introspection API, on ECS container instances (e.g. http://localhost:51678).
    #[arg(long, env = "GPUCOST_ECS_INTROSPECTION")]
    ecs_introspection: Option<String>,
    /// Simulator: report processes without identities, so that they are identified through --proc-root,
    /// the Kubernetes API and the pod-resources socket like on a real node.
    #[arg(long)]
    sim_anonymous: bool,
    /// Keep unacked batches in this directory (one agent per directory), so that a collector outage or an
    /// agent restart loses nothing; without it they are kept in memory only.
    #[arg(long, env = "GPUCOST_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Most bytes the spool keeps (e.g. 256MiB, 1GiB); past it old batches are merged into coarser ones,
    /// then the oldest dropped (counted).
    #[arg(long, env = "GPUCOST_SPOOL_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    spool_max_bytes: u64,
    /// Most batches the spool keeps (17280: three days of 15 s intervals).
    #[arg(long, env = "GPUCOST_MAX_PENDING", default_value_t = 17_280)]
    max_pending: usize,
    /// A batch spooled longer ago than this is dropped (counted).
    #[arg(long, env = "GPUCOST_SPOOL_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    spool_max_age: Duration,
    /// How long to wait for outstanding acks on shutdown.
    #[arg(long, env = "GPUCOST_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Simulator: fleet seed.
    #[arg(long, default_value_t = 1)]
    sim_seed: u64,
    /// Simulator: clusters in the fleet.
    #[arg(long, default_value_t = 3)]
    sim_clusters: u32,
    /// Simulator: nodes in the fleet.
    #[arg(long, default_value_t = 40)]
    sim_nodes: u32,
    /// Simulator: which node of the fleet this agent is.
    #[arg(long, default_value_t = 0)]
    sim_node: u32,
    /// Simulator: run on a virtual clock from this time (RFC 3339, a multiple of the report interval).
    #[arg(long, value_parser = humantime::parse_rfc3339)]
    sim_start: Option<std::time::SystemTime>,
    /// Simulator: stop when the virtual clock reaches this time (RFC 3339), once all is acked; after a
    /// restart with the same --spool-dir the clock goes on from where the last run got to.
    #[arg(long, value_parser = humantime::parse_rfc3339, requires = "sim_start")]
    sim_end: Option<std::time::SystemTime>,
    /// Simulator: real time to wait after each virtual interval.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    sim_pace: Duration,
    /// CA certificate (PEM) the collector's TLS certificate chains to (default: the system's roots).
    #[arg(long, env = "GPUCOST_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --tls-key.
    #[arg(long, env = "GPUCOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for --tls-cert.
    #[arg(long, env = "GPUCOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Allow a plain-text (http://) collector URL: for development only.
    #[arg(long, env = "GPUCOST_INSECURE")]
    insecure: bool,
    /// A file holding the bearer token the collector knows this agent's cluster by (a mounted Secret).
    #[arg(long, env = "GPUCOST_AGENT_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Serve this node's GPU metrics (Prometheus text) at http://<addr>/metrics, e.g. 0.0.0.0:9400 (the port
    /// dcgm-exporter uses). Off when not given.
    #[arg(long, env = "GPUCOST_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Stop after this many intervals, once all are acked.
    #[arg(long)]
    intervals: Option<u64>,
    /// Log format: text, json, or auto (json when stderr is not a terminal).
    #[arg(long, env = "GPUCOST_LOG_FORMAT", default_value = "auto")]
    log_format: String,
    /// A TOML file that sets any flag (keys are the flags' long names; --config-example prints one); flags and
    /// environment variables override it.
    #[arg(long, env = "GPUCOST_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (the file, the flags and the environment) and exit, starting nothing.
    #[arg(long)]
    check_config: bool,
    /// Print a configuration file with every setting and its default, commented out, and exit.
    #[arg(long)]
    config_example: bool,
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        if self.sample_interval < Duration::from_millis(100) {
            bail!("--sample-interval {:?} is too short: at least 100ms", self.sample_interval);
        }
        if self.report_interval < self.sample_interval || self.report_interval > Duration::from_secs(3600) {
            bail!(
                "--report-interval {:?} must be between --sample-interval ({:?}) and 1h",
                self.report_interval,
                self.sample_interval
            );
        }
        if !self.report_interval.as_nanos().is_multiple_of(self.sample_interval.as_nanos()) {
            bail!(
                "--report-interval {:?} must be a multiple of --sample-interval {:?}",
                self.report_interval,
                self.sample_interval
            );
        }
        if self.once && self.output.is_none() {
            bail!("--once needs --output json");
        }
        if self.sim_node >= self.sim_nodes {
            bail!("--sim-node {} is not in a fleet of --sim-nodes {}", self.sim_node, self.sim_nodes);
        }
        if self.sim_start.is_some() && self.source != SourceKind::Sim {
            bail!("--sim-start only applies to --source sim");
        }
        Ok(())
    }

    fn virtual_start(&self) -> anyhow::Result<Option<u64>> {
        let Some(t) = self.sim_start else { return Ok(None) };
        let ns = t.duration_since(std::time::UNIX_EPOCH).context("--sim-start before 1970")?.as_nanos() as u64;
        if !ns.is_multiple_of(self.report_interval.as_nanos() as u64) {
            bail!(
                "--sim-start {} is not a multiple of --report-interval {:?}",
                humantime::format_rfc3339(t),
                self.report_interval
            );
        }
        Ok(Some(ns))
    }
}

/// `256MiB`, `1GiB`, `500MB`, `1048576`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size like 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// TLS for an `https://` collector; a plain-text `http://` one only with `--insecure`.
fn collector_tls(config: &Config) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let url = &config.collector;
    if url.starts_with("http://") {
        anyhow::ensure!(
            config.insecure,
            "--collector {url} is plain text: use https:// (the token must not travel in clear), or --insecure for development"
        );
        tracing::warn!(collector = %url, "--insecure: sending usage in plain text");
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &config.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading --tls-ca {}", ca.display()))?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let cert = std::fs::read(cert).with_context(|| format!("reading --tls-cert {}", cert.display()))?;
        let key = std::fs::read(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}

fn boot_id() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}-{:x}", t, std::process::id())
}

/// The command line over the configuration file it (or GPUCOST_CONFIG) names, if any.
fn parse_config() -> Result<Config, String> {
    use clap::{CommandFactory, FromArgMatches};
    use gpucost_cli::config_file::{self, ConfigFile};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Config::command();
    if let Some(path) = config_file::path_from(&argv, "GPUCOST_CONFIG") {
        let file = ConfigFile::load(&path).map_err(|e| e.to_string())?;
        command = config_file::apply(command, None, &file).map_err(|e| e.to_string())?;
    }
    let matches = command.try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    Config::from_arg_matches(&matches).map_err(|e| e.to_string())
}

fn main() -> std::process::ExitCode {
    let config = match parse_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if config.config_example {
        use clap::CommandFactory;
        print!("{}", gpucost_cli::config_file::example(&Config::command(), None));
        return std::process::ExitCode::SUCCESS;
    }
    if config.check_config {
        return match config.validate().and_then(|()| config.virtual_start().map(|_| ())) {
            Ok(()) => {
                println!("configuration valid");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    gpucost_cli::logs::init(&config.log_format);
    // Two workers whatever the node's size: the agent's work is small, and a thread per core on a
    // 192-core GPU node would cost memory for nothing.
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(config)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let virtual_start = config.virtual_start()?;

    // `--once` opens no stream: no collector to ask.
    let label_keys = (config.collector_label_keys && !config.once).then(CollectorKeys::default);
    let (identifier, node_object) = identifier(&config, label_keys.clone()).await?;
    let node_label_allow = LabelAllow::new(&config.node_label_allow);
    let node_metrics = std::sync::Arc::new(gpucost_agent::node_metrics::NodeMetrics::default());
    let (source, identifier, agent_id): (Box<dyn GpuSource>, Option<Identifier>, String) = match config.source {
        SourceKind::Nvml => {
            let node_name = config.node_name.clone().unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into())
            });
            let node = NodeInfo {
                cluster: config.cluster.clone(),
                node_name: node_name.clone(),
                instance_type: config.instance_type.clone(),
                capacity_type: config.capacity_type,
                region: config.region.clone(),
                zone: config.zone.clone(),
                devices: Vec::new(),
                labels: Default::default(),
                instance_id: String::new(),
            };
            let mut node = node;
            apply_labels(&mut node, &node_object.labels, &node_label_allow);
            apply_provider_id(&mut node, &node_object.provider_id);
            let mut source = NvmlSource::open_when_ready(&config.nvml_lib, node, node_metrics.source.clone()).await?;
            let open = |n: &NodeInfo| n.instance_type.is_empty() || n.instance_id.is_empty();
            if open(source.node()) && config.imds != Toggle::Off {
                let endpoint = config.imds_endpoint.clone();
                match tokio::task::spawn_blocking(move || imds::read(&endpoint, Duration::from_secs(1))).await? {
                    Ok(facts) => imds::apply(source.node_mut(), &facts),
                    Err(e) if config.imds == Toggle::On => return Err(e.into()),
                    Err(e) => tracing::info!(
                        error = %e,
                        "no EC2 instance metadata; what the flags and node object left open (instance type or id) stays unknown"
                    ),
                }
            }
            (Box::new(source), Some(identifier), config.agent_id.clone().unwrap_or(node_name))
        }
        SourceKind::Sim => {
            let spec = FleetSpec { seed: config.sim_seed, clusters: config.sim_clusters, nodes: config.sim_nodes };
            let node = Fleet::generate(spec).nodes.swap_remove(config.sim_node as usize);
            let agent_id = config.agent_id.clone().unwrap_or_else(|| node.agent_id.clone());
            let mut source = SimSource::new(node, config.report_interval.as_nanos() as u64);
            source.set_anonymous(config.sim_anonymous);
            if config.sim_anonymous {
                // Like a real node's agent, learn instance type, capacity, region and zone from the node object.
                let info = source.node_info_mut();
                info.instance_type.clear();
                info.capacity_type = CapacityType::Unspecified;
                info.region.clear();
                info.zone.clear();
                apply_labels(info, &node_object.labels, &node_label_allow);
            }
            (Box::new(source), config.sim_anonymous.then_some(identifier), agent_id)
        }
    };
    // The spool first: on a resumable (virtual) clock, sampling goes on from where the last run got to.
    let (spool, resume) = if config.once {
        (Spool::memory(1), None)
    } else {
        if config.spool_dir.is_none() {
            tracing::warn!("no --spool-dir: unacked batches are kept in memory only and lost if the agent restarts");
        }
        let spool_config = SpoolConfig {
            dir: config.spool_dir.clone(),
            max_bytes: config.spool_max_bytes,
            max_batches: config.max_pending.max(1),
            max_age: config.spool_max_age,
            ..SpoolConfig::default()
        };
        Spool::open(spool_config, node_metrics.spool.clone())?
    };
    let mut intervals = config.intervals;
    let clock = match virtual_start {
        Some(start) => {
            let start_unix_nanos = match resume {
                Some(r) if r > start => {
                    tracing::info!(resume_at = %humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::from_nanos(r)), "simulated clock: going on from where the last run got to");
                    r
                }
                _ => start,
            };
            if let Some(end) = config.sim_end {
                let end = end.duration_since(std::time::UNIX_EPOCH).context("--sim-end before 1970")?.as_nanos() as u64;
                let left = end.saturating_sub(start_unix_nanos) / config.report_interval.as_nanos() as u64;
                intervals = Some(intervals.map_or(left, |n| n.min(left)));
            }
            Clock::Virtual { start_unix_nanos, pace: config.sim_pace }
        }
        None => {
            if let Some(r) = resume {
                let gap = sampler::now_unix_nanos().saturating_sub(r);
                tracing::warn!(
                    gap_seconds = gap / 1_000_000_000,
                    "the last run sampled until it stopped; the GPU time since is not observed"
                );
            }
            Clock::Wall { align: !config.once }
        }
    };
    let mut sampler = Sampler::new(source, identifier, config.sample_interval, config.report_interval, clock);
    tracing::info!(agent_id, devices = sampler.source().node().devices.len(), source = ?config.source, "agent started");

    if config.once {
        let report = sampler.next_interval().await?;
        let out = serde_json::json!({ "agent_id": agent_id, "node": sampler.source().node(), "interval": report });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    let framer = Framer::new(agent_id, boot_id());
    let mut uplink = UplinkConfig::new(config.collector.clone());
    uplink.tls = collector_tls(&config)?;
    uplink.label_keys = label_keys;
    if let Some(path) = &config.token_file {
        let token =
            std::fs::read_to_string(path).with_context(|| format!("reading --token-file {}", path.display()))?;
        anyhow::ensure!(!token.trim().is_empty(), "--token-file {} is empty", path.display());
        uplink.token = Some(token.trim().to_string());
    } else if let Ok(token) = std::env::var("GPUCOST_AGENT_TOKEN") {
        uplink.token = Some(token.trim().to_string());
    }
    // A replay on a virtual clock without a spool can wait for the collector; live sampling never does, and
    // a spool under pressure merges (and, last, drops) as it would live.
    uplink.hold_back = virtual_start.is_some() && config.spool_dir.is_none();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = &config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for /metrics on {addr} (--metrics-addr)"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
        tokio::spawn(gpucost_agent::node_metrics::serve(listener, node_metrics.clone()));
    }
    let run = tokio::spawn(gpucost_agent::stream_node_observed(
        sampler,
        framer,
        uplink,
        spool,
        intervals,
        stop_rx,
        Some(node_metrics),
    ));
    tokio::pin!(run);
    let stats = tokio::select! {
        r = &mut run => r??,
        _ = gpucost_cli::shutdown::signal() => {
            tracing::info!("shutting down: sending the current interval");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(config.drain_timeout, &mut run).await {
                Ok(r) => r??,
                Err(_) if config.spool_dir.is_some() => {
                    tracing::warn!(timeout = ?config.drain_timeout, "the collector did not ack the last batches within --drain-timeout; they stay in the spool and are sent at the next start");
                    return Ok(());
                }
                Err(_) => bail!("collector did not ack the last batches within --drain-timeout {:?}; they are lost (no --spool-dir)", config.drain_timeout),
            }
        }
    };
    tracing::info!(?stats, "agent stopped");
    Ok(())
}

/// The identifier, with the pod watchers started when this is a Kubernetes node (keeping the label keys the
/// collector asks for, when `label_keys`); and the node's own labels and provider id, read from its Node object.
async fn identifier(config: &Config, label_keys: Option<CollectorKeys>) -> anyhow::Result<(Identifier, NodeObject)> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() || std::env::var_os("KUBECONFIG").is_some();
    let pods = match (config.kubernetes, in_cluster) {
        (Toggle::Off, _) | (Toggle::Auto, false) => None,
        _ => {
            let node =
                config.node_name.clone().context("--node-name (NODE_NAME) is needed to watch this node's pods")?;
            let client = kube::Client::try_default()
                .await
                .context("cannot configure the Kubernetes client (in-cluster service account or KUBECONFIG)")?;
            let node_object = match gpucost_agent::identify::node::fetch(client.clone(), &node).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, %node, "cannot read this node's object; instance type, id and capacity come from flags and instance metadata only");
                    NodeObject::default()
                }
            };
            let cache = PodCache::default();
            let allow = LabelAllow::new(&config.label_allow);
            // Without `label_keys`, the watchers get keys nobody changes: the flags alone apply.
            let keys = label_keys.clone().unwrap_or_default();
            tokio::spawn(gpucost_agent::identify::pods::watch::pods(
                client.clone(),
                node.clone(),
                cache.clone(),
                allow.clone(),
                keys.clone(),
            ));
            tokio::spawn(gpucost_agent::identify::pods::watch::namespaces(client.clone(), cache.clone(), allow, keys));
            let dra = (!config.dra_driver.is_empty()).then(|| {
                let slices = SliceCache::default();
                tokio::spawn(dra::watch::resource_slices(
                    client.clone(),
                    node.clone(),
                    config.dra_driver.clone(),
                    slices.clone(),
                ));
                let claims: Box<dyn dra::ClaimReader> = Box::new(dra::watch::KubeClaims(client.clone()));
                dra::Dra::new(config.dra_driver.clone(), slices, Some(claims))
            });
            // Attributing before the first list would name running pods by UID only.
            let slices_listed = async {
                match &dra {
                    Some(d) => d.slices().wait_listed(Duration::from_secs(30)).await,
                    None => true,
                }
            };
            let (pods_ready, slices_ready) = tokio::join!(cache.wait_ready(Duration::from_secs(30)), slices_listed);
            if !pods_ready || !slices_ready {
                tracing::warn!(
                    pods_ready,
                    slices_ready,
                    "pods, namespaces and DRA ResourceSlices not all listed within 30 s; attributing with what is known so far"
                );
            }
            Some((cache, node_object, dra))
        }
    };
    let (pods, node_object, dra) = match pods {
        Some((cache, object, dra)) => (Some(cache), object, dra),
        None => (None, NodeObject::default(), None),
    };
    let socket = config.pod_resources_socket.exists().then(|| config.pod_resources_socket.clone());
    let identify = IdentifyConfig {
        proc_root: config.proc_root.clone(),
        passwd: config.passwd.exists().then(|| config.passwd.clone()),
        env_keys: config.env_keys.clone(),
        pod_resources_socket: socket,
        gpu_resource_prefix: config.gpu_resource_prefix.clone(),
        ecs_introspection: config.ecs_introspection.clone(),
    };
    let watching = pods.is_some();
    let identifier = Identifier::new(identify, pods);
    let identifier = match dra {
        Some(dra) => identifier.with_dra(dra),
        None => identifier,
    };
    let identifier = match label_keys {
        Some(keys) if watching => identifier.with_collector_keys(keys),
        _ => identifier,
    };
    Ok((identifier, node_object))
}

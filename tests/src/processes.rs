//! Our own processes: the built binaries, the collector and the agent started on loopback ports and killed
//! when dropped, batches sent to a collector over gRPC, and what it stored read back over HTTP.

use super::*;

/// Path of a workspace binary, next to the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins), as scripts/test does",
        path.display()
    );
    path
}

/// Appends to `path`, so a restarted process keeps the earlier log.
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// Kills the child when dropped, so a failing test leaves no process behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running collector (`serve`) on loopback.
pub struct Collector {
    pub proc: Proc,
    pub grpc_port: u16,
    pub http_port: u16,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl Collector {
    /// Starts `gpucost-collector serve` on `db` and waits until it is ready.
    pub fn start(db: &Path) -> Self {
        Self::start_on(db, free_port(), free_port())
    }

    pub fn start_on(db: &Path, grpc_port: u16, http_port: u16) -> Self {
        Self::start_with(db, grpc_port, http_port, &[], &[])
    }

    /// Starts `serve` with extra arguments and environment variables.
    pub fn start_with(db: &Path, grpc_port: u16, http_port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_logged(db, &db.with_extension("collector.log"), grpc_port, http_port, args, env)
    }

    /// A collector on `db` (a file, or a `postgres://` URL) logging to `log`.
    pub fn start_logged(
        db: &Path,
        log: &Path,
        grpc_port: u16,
        http_port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let child = Command::new(bin("gpucost-collector"))
            .envs(env.iter().copied())
            .args(["--log-format", "json", "serve"])
            .args(args)
            // Tests run without tokens unless they bring an auth file, and replay history faster than a live
            // agent may send unless they test that limit.
            .args(if args.contains(&"--auth") { &[][..] } else { &["--insecure"][..] })
            .args(if args.contains(&"--max-agent-batches-per-minute") {
                &[][..]
            } else {
                &["--max-agent-batches-per-minute", "0"][..]
            })
            .arg("--grpc")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--db")
            .arg(db)
            .stdout(Stdio::null())
            .stderr(log_file(log))
            .spawn()
            .expect("start gpucost-collector");
        let mut c = Self { proc: Proc(child), grpc_port, http_port, db: db.to_path_buf(), log: log.to_path_buf() };
        c.wait_ready();
        c
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.proc.0.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("collector exited ({status}) before it became ready; its log:\n{log}");
            }
            if agent.get(&self.http("/readyz")).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("collector did not become ready on port {} within 60 s", self.http_port);
    }

    /// `GET path` → (status, JSON body).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.call(path);
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.into_body().read_json().expect("JSON body");
        (status, body)
    }

    /// `GET path`, any status.
    fn call(&self, path: &str) -> ureq::http::Response<ureq::Body> {
        ureq::get(&self.http(path))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("HTTP request to the collector")
    }

    /// `GET path` → (status, text body).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.call(path);
        let status = resp.status().as_u16();
        (status, resp.into_body().read_to_string().expect("text body"))
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        self.db.clone()
    }
}

/// A running agent; its log goes to a file so that a chatty agent never blocks on a full pipe.
pub struct Agent {
    pub proc: Proc,
    log: PathBuf,
}

/// Starts `gpucost-agent` with `args`, logging (JSON) to `log`.
pub fn agent(args: &[String], log: &Path) -> Agent {
    agent_with_env(args, &[], log)
}

/// Starts `gpucost-agent` with `args` and extra environment variables, logging (JSON) to `log`.
pub fn agent_with_env(args: &[String], env: &[(&str, &Path)], log: &Path) -> Agent {
    let file = std::fs::File::create(log).expect("agent log file");
    // Tests talk plain text unless they bring TLS.
    let plain = args.iter().any(|a| a.starts_with("http://")) && !args.iter().any(|a| a == "--insecure");
    let child = Command::new(bin("gpucost-agent"))
        .args(["--log-format", "json"])
        .args(args)
        .args(if plain { &["--insecure"][..] } else { &[][..] })
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start gpucost-agent");
    Agent { proc: Proc(child), log: log.to_path_buf() }
}

impl Agent {
    /// An agent started some other way (e.g. inside a namespace), logging to `log`.
    pub fn from_child(child: Child, log: &Path) -> Self {
        Agent { proc: Proc(child), log: log.to_path_buf() }
    }

    /// Waits for the agent to exit; returns whether it succeeded, and its log.
    pub fn wait(mut self, limit: Duration) -> (bool, String) {
        let deadline = Instant::now() + limit;
        loop {
            match self.proc.0.try_wait().expect("agent status") {
                Some(status) => return (status.success(), std::fs::read_to_string(&self.log).unwrap_or_default()),
                None if Instant::now() > deadline => {
                    panic!(
                        "agent did not finish within {limit:?}; log:\n{}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    )
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// What the collector's API says it stored over [from_s, to_s): per GPU and per (GPU, workload), in
/// the simulator's `Truth` shape so the two can be compared exactly.
pub fn stored(c: &Collector, from_s: u64, to_s: u64) -> gpucost_agent::sim::Truth {
    let ns = |v: &serde_json::Value, f: &str| v[f].as_u64().unwrap_or_else(|| panic!("{f} missing in {v}"));
    let window = format!("from={from_s}&to={to_s}");
    let mut t = gpucost_agent::sim::Truth::default();
    let (status, by_gpu) = c.get(&format!("/api/v1/usage?{window}&group_by=gpu"));
    assert_eq!(status, 200, "{by_gpu}");
    for r in by_gpu["rows"].as_array().expect("rows") {
        let g = t.gpus.entry(r["gpu"].as_str().expect("gpu").to_string()).or_default();
        g.observed_ns = ns(r, "observed_ns");
        g.held_ns = ns(r, "held_ns");
        g.used_ns = ns(r, "used_ns");
    }
    let (status, by_workload) = c.get(&format!("/api/v1/usage?{window}&group_by=gpu,workload"));
    assert_eq!(status, 200, "{by_workload}");
    for r in by_workload["rows"].as_array().expect("rows") {
        let key = (r["gpu"].as_str().expect("gpu").to_string(), r["workload"].as_str().expect("workload").to_string());
        let w = t.workloads.entry(key).or_default();
        w.held_ns = ns(r, "held_ns");
        w.used_ns = ns(r, "used_ns");
    }
    t
}

/// Asserts the ledger holds exactly the simulator's truth, GPU by GPU and workload by workload.
pub fn assert_matches_truth(stored: &gpucost_agent::sim::Truth, truth: &gpucost_agent::sim::Truth) {
    assert_eq!(stored.gpus.len(), truth.gpus.len(), "GPUs in the ledger vs the fleet");
    for (uuid, want) in &truth.gpus {
        assert_eq!(stored.gpus.get(uuid), Some(want), "GPU {uuid}");
    }
    let keys = |t: &gpucost_agent::sim::Truth| t.workloads.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(stored), keys(truth), "the same (GPU, workload) pairs");
    for (k, want) in &truth.workloads {
        assert_eq!(stored.workloads[k], *want, "{k:?}");
    }
    assert!(truth.workloads.values().any(|w| w.used_ns > 0), "the replay should have used some GPU time");
}

/// Sends `batches` on one Ingest stream to the collector at `url` and returns the acks (panics if the
/// stream fails).
pub fn send_batches(url: &str, batches: Vec<gpucost_proto::v1::UsageBatch>) -> Vec<gpucost_proto::v1::Ack> {
    try_send_batches(url, None, batches).unwrap_or_else(|s| panic!("ack: {s:?}"))
}

/// Sends `batches` on one stream with `token` as the bearer token; the acks, or the status that ended it.
pub fn try_send_batches(
    url: &str,
    token: Option<&str>,
    batches: Vec<gpucost_proto::v1::UsageBatch>,
) -> Result<Vec<gpucost_proto::v1::Ack>, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
        let mut client = gpucost_proto::v1::ingest_client::IngestClient::new(channel);
        let n = batches.len();
        let mut request = tonic::Request::new(tokio_stream::iter(batches));
        if let Some(t) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii token"));
        }
        let mut stream = client.report(request).await?.into_inner();
        let mut acks = Vec::new();
        while acks.len() < n {
            match stream.message().await? {
                Some(a) => acks.push(a),
                None => break,
            }
        }
        Ok(acks)
    })
}

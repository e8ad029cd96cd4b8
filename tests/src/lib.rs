//! Helpers for the end-to-end tests: the real `gpucost-collector` and `gpucost-agent` binaries run as
//! separate processes, on loopback only, and are killed when a test ends.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod pki;
pub mod postgres;
pub mod prometheus;

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
fn log_file(path: &Path) -> std::fs::File {
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

/// (API group, resource, verb) of every rule of the agent chart's ClusterRole, as helm renders it.
pub fn agent_cluster_role_grants(helm: &Path) -> BTreeSet<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(helm)
        .args(["template", "gpucost-agent", "charts/gpucost-agent", "--namespace", "gpucost"])
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("gpucost-rbac-helm/config"))
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("gpucost-rbac-helm/cache"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("gpucost-rbac-helm/data"))
        .current_dir(root)
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut grants = BTreeSet::new();
    for doc in text.split("\n---\n") {
        let doc: serde_json::Value = serde_norway::from_str(doc).expect("a YAML document");
        if doc["kind"] != "ClusterRole" {
            continue;
        }
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
        };
        for rule in doc["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

pub mod browser;
pub mod nvml_rig;
pub mod standins;

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

/// moto's AWS emulator in server mode, on a loopback port; killed when dropped.
pub struct Moto {
    pub proc: Proc,
    pub port: u16,
    python: PathBuf,
}

/// Where `scripts/test` installed a peer: `$env`, else `~/.cache/gpucost/<cached>`. `None` when `<that>/<marker>`
/// does not exist — which fails the test run when `CI=true`: under CI a missing peer is an error, never a skip.
pub fn installed_peer(name: &str, env: &str, cached: &str, marker: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/gpucost").join(cached)
    });
    let probe = if marker.is_empty() { path.clone() } else { path.join(marker) };
    if !probe.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed at {} (scripts/test installs it)",
            path.display()
        );
        eprintln!("{name} is not installed at {}: run scripts/test once to install it; skipping", path.display());
        return None;
    }
    Some(path)
}

impl Moto {
    /// Starts `moto_server` from the venv `scripts/test` installs (`GPUCOST_MOTO_SERVER`, else
    /// `~/.cache/gpucost/venv/bin/moto_server`). `None` when it is not installed — which fails the test
    /// run when `CI=true`: under CI a missing peer is an error, never a skip.
    pub fn start() -> Option<Self> {
        Self::start_with(None, &[])
    }

    /// moto_server started by `launcher` (a Python script run by the venv's interpreter, taking moto_server's
    /// arguments) when given, with `env` (e.g. `MOTO_RECORDER_FILEPATH`).
    pub fn start_with(launcher: Option<&Path>, env: &[(&str, &str)]) -> Option<Self> {
        let server = installed_peer("moto", "GPUCOST_MOTO_SERVER", "venv/bin/moto_server", "")?;
        let python = server.with_file_name("python");
        let mut command = match launcher {
            Some(script) => {
                let mut c = Command::new(&python);
                c.arg(script);
                c
            }
            None => Command::new(&server),
        };
        let port = free_port();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self { proc: Proc(child), port, python };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/moto-api/", moto.url())).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 script against this moto (`ENDPOINT`, `kw` for clients and `OUT`, a file the script
    /// may write, are defined for it); panics with its output if it fails.
    pub fn boto3_with_out(&self, out: &Path, script: &str) {
        let preamble = format!(
            "import boto3, json\nENDPOINT = {:?}\nOUT = {:?}\nkw = dict(endpoint_url=ENDPOINT, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            self.url(),
            out.display().to_string()
        );
        let out = Command::new(&self.python).arg("-c").arg(format!("{preamble}{script}")).output().expect("run python");
        assert!(
            out.status.success(),
            "boto3 script failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A real MLflow tracking server (PyPI `mlflow`, in the venv `scripts/test` installs) on a loopback port,
/// with a SQLite backend in `dir`; killed when dropped.
pub struct Mlflow {
    pub proc: Proc,
    pub port: u16,
    /// The admin's basic-auth password when the server runs MLflow's `basic-auth` app.
    admin_password: Option<String>,
}

impl Drop for Mlflow {
    /// Kills MLflow's whole process group: killing `mlflow` alone leaves its server and job consumers running.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.proc.0.id())]).status();
    }
}

impl Mlflow {
    pub const ADMIN: &'static str = "admin";

    /// `None` when MLflow is not installed — a failure when `CI=true`.
    pub fn start(dir: &Path) -> Option<Self> {
        Self::start_inner(dir, None)
    }

    /// MLflow with its `basic-auth` app: every call needs the admin's (or another user's) password.
    pub fn start_with_basic_auth(dir: &Path, admin_password: &str) -> Option<Self> {
        Self::start_inner(dir, Some(admin_password.to_string()))
    }

    fn start_inner(dir: &Path, admin_password: Option<String>) -> Option<Self> {
        let bin = installed_peer("MLflow", "GPUCOST_MLFLOW", "mlflow-venv/bin/mlflow", "")?;
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.arg("server");
        if let Some(password) = &admin_password {
            let ini = dir.join("basic_auth.ini");
            std::fs::write(
                &ini,
                format!(
                    "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = {}\nadmin_password = {password}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\nauth_cache_ttl_seconds = 60\n",
                    dir.join("basic_auth.db").display(),
                    Self::ADMIN
                ),
            )
            .unwrap();
            cmd.args(["--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "gpucost-test-secret");
        }
        // `mlflow server` starts uvicorn and job consumers as its children: they get their own process group,
        // which `Drop` kills whole.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.join("artifacts"))
            .stdout(log_file(&dir.join("mlflow.log")))
            .stderr(log_file(&dir.join("mlflow.log")))
            .spawn()
            .expect("start mlflow server");
        let m = Self { proc: Proc(child), port, admin_password };
        let deadline = Instant::now() + Duration::from_secs(120);
        // Any HTTP answer means it serves.
        let answers = || match ureq::get(&format!("{}/health", m.url())).call() {
            Ok(r) => r.status() == 200,
            Err(ureq::Error::StatusCode(401)) => true,
            Err(_) => false,
        };
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "MLflow did not answer /health within 120 s; see {}",
                dir.join("mlflow.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        Some(m)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin's `Authorization` header value, when the server has auth.
    fn authorization(&self) -> Option<String> {
        let password = self.admin_password.as_ref()?;
        Some(gpucost_collector::enrich::mlflow::basic_auth(Self::ADMIN, password))
    }

    /// POST to the REST API 2.0 (`call` like `runs/create`); returns the JSON answer.
    pub fn post(&self, call: &str, body: serde_json::Value) -> serde_json::Value {
        let mut req = ureq::post(&format!("{}/api/2.0/mlflow/{call}", self.url()));
        if let Some(auth) = self.authorization() {
            req = req.header("Authorization", &auth);
        }
        let mut resp = req
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("MLflow {call}: {e}"));
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
        assert_eq!(status, 200, "MLflow {call}: {answer}");
        answer
    }

    /// GET from the REST API 2.0.
    pub fn get(&self, call: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let mut req = ureq::get(&format!("{}/api/2.0/mlflow/{call}", self.url()));
        if let Some(auth) = self.authorization() {
            req = req.header("Authorization", &auth);
        }
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        req.call().unwrap_or_else(|e| panic!("MLflow {call}: {e}")).into_body().read_json().expect("JSON")
    }
}

/// A real Backstage catalog backend (npm `@backstage/backend-defaults` + `@backstage/plugin-catalog-backend`,
/// installed by `scripts/test` under `~/.cache/gpucost/backstage`) on a loopback port, with an in-memory
/// database, a static access token, and the given catalog files as locations; killed when dropped.
pub struct Backstage {
    pub proc: Proc,
    pub port: u16,
    run_dir: PathBuf,
}

impl Backstage {
    pub const TOKEN: &'static str = "gpucost-test-token";

    /// `None` when the backend is not installed — a failure when `CI=true`. Returns once Backstage serves
    /// `expected` groups, users, systems and components in all.
    pub fn start(log_dir: &Path, catalog_files: &[PathBuf], expected: usize) -> Option<Self> {
        let home = installed_peer(
            "Backstage",
            "GPUCOST_BACKSTAGE_DIR",
            "backstage",
            "node_modules/@backstage/backend-defaults",
        )?;
        let port = free_port();
        // Inside the install folder, so that node finds its node_modules.
        let run_dir = home.join(format!("run-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&run_dir).expect("Backstage run folder");
        std::fs::write(run_dir.join("index.js"), include_str!("../backstage/index.js")).expect("index.js");
        let locations: String =
            catalog_files.iter().map(|f| format!("    - {{ type: file, target: {} }}\n", f.display())).collect();
        let config = format!(
            "backend:\n  baseUrl: http://127.0.0.1:{port}\n  listen: {{ host: 127.0.0.1, port: {port} }}\n  database: {{ client: better-sqlite3, connection: ':memory:' }}\n  auth:\n    externalAccess:\n      - type: static\n        options: {{ token: {}, subject: gpucost-tests }}\ncatalog:\n  rules: [{{ allow: [Component, System, API, Resource, Location, Group, User, Domain] }}]\n  locations:\n{locations}",
            Self::TOKEN
        );
        std::fs::write(run_dir.join("app-config.yaml"), config).expect("app-config.yaml");
        let child = Command::new("node")
            .args(["index.js", "--config", "app-config.yaml"])
            .current_dir(&run_dir)
            .stdout(log_file(&log_dir.join("backstage.log")))
            .stderr(log_file(&log_dir.join("backstage.log")))
            .spawn()
            .expect("start node");
        let b = Self { proc: Proc(child), port, run_dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        // Backstage ingests its locations in the background: ready once every entity of the files is in.
        let count = |kind: &str| {
            ureq::get(&format!("{}/api/catalog/entities/by-query", b.url()))
                .query("filter", format!("kind={kind}"))
                .query("limit", "1000")
                .header("Authorization", &format!("Bearer {}", Self::TOKEN))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_json::<serde_json::Value>().ok())
                .and_then(|v| v["items"].as_array().map(Vec::len))
                .unwrap_or(0)
        };
        loop {
            if ["group", "user", "system", "component"].iter().map(|k| count(k)).sum::<usize>() >= expected {
                return Some(b);
            }
            assert!(
                Instant::now() < deadline,
                "Backstage served no components within 90 s; see {}",
                log_dir.join("backstage.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Backstage {
    fn drop(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, unpacked by `scripts/test`) on a
/// loopback port, clustering off, routing everything to a null receiver; killed when dropped.
pub struct Alertmanager {
    pub proc: Proc,
    pub port: u16,
}

impl Alertmanager {
    /// `None` when it is not installed — a failure when `CI=true`.
    pub fn start(dir: &Path) -> Option<Self> {
        let bin =
            installed_peer("Alertmanager", "GPUCOST_ALERTMANAGER", "alertmanager/usr/bin/prometheus-alertmanager", "")?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n").unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("alertmanager-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(log_file(&dir.join("alertmanager.log")))
            .stderr(log_file(&dir.join("alertmanager.log")))
            .spawn()
            .expect("start alertmanager");
        let am = Self { proc: Proc(child), port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ureq::get(&format!("{}/-/ready", am.url())).call().is_ok_and(|r| r.status() == 200) {
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 30 s; see {}",
                dir.join("alertmanager.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(am)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The alerts Alertmanager holds now (active, silenced, inhibited or unprocessed; resolved ones drop out).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        ureq::get(&format!("{}/api/v2/alerts", self.url()))
            .call()
            .expect("GET /api/v2/alerts")
            .into_body()
            .read_json::<Vec<serde_json::Value>>()
            .expect("alerts JSON")
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
}

/// A webhook receiver on a loopback port: answers the first `fail_first` requests with 500 and the rest
/// with 200, and keeps every request. Stops when dropped.
pub struct Receiver {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = std::collections::HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; len.min(1 << 20)];
                let _ = reader.read_exact(&mut body);
                let mut log = log.lock().unwrap();
                let status = if log.len() < fail_first { 500 } else { 200 };
                log.push(Received { headers, body: String::from_utf8_lossy(&body).to_string(), status });
                drop(log);
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes(),
                );
            }
        });
        Self { port, received, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

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
    let mut rows = gpucost_collector::report::chargeback::csv_rows(text).into_iter();
    let header = rows.next().expect("a header");
    rows.map(|fields| {
        assert_eq!(fields.len(), header.len(), "{fields:?}");
        header.iter().cloned().zip(fields).collect()
    })
    .collect()
}

/// Validates a FOCUS file with the FinOps Foundation's focus-validator (`tests/focus/validate.sh`, in the
/// venv `scripts/test` installs) and the applicability criteria gpucost's export satisfies; panics with the
/// validator's report when a rule fails. Skips (a failure under `CI=true`) when it is not installed.
pub fn assert_focus_valid(file: &Path) {
    let Some(venv) = installed_peer("focus-validator", "GPUCOST_FOCUS_VENV", "focus-venv", "bin/focus-validator")
    else {
        return;
    };
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("focus/validate.sh"))
        .arg(file)
        .env("GPUCOST_FOCUS_VENV", &venv)
        .env(
            "FOCUS_CRITERIA",
            "ACCOUNT_NAMING_SUPPORTED,AVAILABILITY_ZONE_SUPPORTED,MULTIPLE_PRICING_CATEGORIES_SUPPORTED,\
             MULTIPLE_SUB_ACCOUNT_TYPES_SUPPORTED,MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED,NEGOTIATED_PRICING_SUPPORTED,\
             PUBLIC_PRICE_LIST_SUPPORTED,USAGE_MEASUREMENT_SUPPORTED,UNIT_PRICING_SUPPORTED,SUB_ACCOUNT_SUPPORTED,\
             BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED,RESOURCE_TYPE_ASSIGNMENT_SUPPORTED,\
             PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED,REGION_SUPPORTED,TAGGING_SUPPORTED",
        )
        .output()
        .expect("run focus-validator");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "focus-validator:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("FOCUS VALIDATION PASSED"), "{report}");
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

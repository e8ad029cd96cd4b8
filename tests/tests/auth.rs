//! Let no one in: agents need a token, and a token writes only its own cluster; the API and the dashboard
//! need a token, and changing budgets or closing periods needs an admin one; nothing runs open unless
//! `--insecure` says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gpucost_collector::auth::hash_token;
use gpucost_e2e::{Collector, bin, free_port, g5_batch, try_send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;
const AGENT_PROD: &str = "agent-token-for-prod-0001";
const AGENT_STAGING: &str = "agent-token-for-staging-01";
const READER: &str = "read-token-finance-000001";
const ADMIN: &str = "admin-token-platform-0001";

fn auth_file(dir: &Path) -> PathBuf {
    let path = dir.join("auth.toml");
    std::fs::write(
        &path,
        format!(
            "[[agent]]\ncluster = \"prod\"\nsha256 = \"{}\"\n\n[[agent]]\ncluster = \"staging\"\nsha256 = \"{}\"\n\n\
             [[api]]\nname = \"finance\"\nscope = \"read\"\nsha256 = \"{}\"\n\n[[api]]\nname = \"platform\"\nscope = \"admin\"\nsha256 = \"{}\"\n",
            hash_token(AGENT_PROD),
            hash_token(AGENT_STAGING),
            hash_token(READER),
            hash_token(ADMIN)
        ),
    )
    .unwrap();
    path
}

fn request(c: &Collector, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = c.http(path);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = match method {
        "PUT" => {
            let mut r = agent.put(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body.unwrap_or("{}").to_string())
        }
        _ => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
    }
    .unwrap();
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn agents_and_api_clients_need_tokens_and_a_token_writes_only_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path());
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--auth", auth.to_str().unwrap(), "--grpc-plaintext"],
        &[],
    );
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let batch = |node: &str| g5_batch(node, 1, now - 60 * NS, now, vec![(0, 50.0, pb::WorkloadIdentity::default())]);
    let mut staging = batch("s1");
    staging.node.as_mut().unwrap().cluster = "staging".into();

    // Ingest: no token, a wrong token, another cluster's token are refused; nothing is stored.
    let e = try_send_batches(&c.grpc_url(), None, vec![batch("n1")]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = try_send_batches(&c.grpc_url(), Some("not-a-known-token-000"), vec![batch("n1")]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = try_send_batches(&c.grpc_url(), Some(AGENT_PROD), vec![staging.clone()]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("writes cluster \"prod\"; it cannot write usage for cluster \"staging\""), "{e:?}");
    let (_, usage) = request(&c, "GET", "/api/v1/usage?group_by=cluster", Some(READER), None);
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(usage["rows"].as_array().unwrap().len(), 0, "nothing stored: {usage}");

    // Each token writes its own cluster.
    assert_eq!(try_send_batches(&c.grpc_url(), Some(AGENT_PROD), vec![batch("n1")]).unwrap().len(), 1);
    assert_eq!(try_send_batches(&c.grpc_url(), Some(AGENT_STAGING), vec![staging]).unwrap().len(), 1);

    // API and dashboard: no token 401 (with a JSON error), read for reading, admin for changing.
    for path in ["/", "/api/v1/costs", "/metrics", "/api/v1/fleet"] {
        let (status, body) = request(&c, "GET", path, None, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
    }
    assert_eq!(request(&c, "GET", "/api/v1/costs", Some("wrong-token-000000000"), None).0, 401);
    assert_eq!(request(&c, "GET", "/healthz", None, None).0, 200);
    assert_eq!(request(&c, "GET", "/api/v1/openapi.json", None, None).0, 200, "the description is public");
    assert_eq!(request(&c, "GET", "/", Some(READER), None).0, 200);
    let (status, body) = request(&c, "GET", "/api/v1/usage?group_by=cluster", Some(READER), None);
    assert_eq!(status, 200);
    assert!(body.contains("\"staging\"") && body.contains("\"prod\""), "{body}");
    let budget = r#"{"scope": {"team": "vision"}, "amount_usd": 100}"#;
    let (status, body) = request(&c, "PUT", "/api/v1/budgets/b", Some(READER), Some(budget));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read scope; this needs admin"), "{body}");
    assert_eq!(request(&c, "PUT", "/api/v1/budgets/b", Some(ADMIN), Some(budget)).0, 201);
}

#[test]
fn a_real_agent_streams_with_its_token_file_and_an_unprotected_collector_will_not_start() {
    let dir = tempfile::tempdir().unwrap();
    // The simulator's first node is in cluster prod-us-east-1.
    let auth = auth_file(dir.path());
    let text = std::fs::read_to_string(&auth).unwrap().replace("cluster = \"prod\"", "cluster = \"prod-us-east-1\"");
    std::fs::write(&auth, text).unwrap();
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--auth", auth.to_str().unwrap(), "--grpc-plaintext"],
        &[],
    );
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{AGENT_PROD}\n")).unwrap();
    let args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        &c.grpc_url(),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--sim-pace",
        "10ms",
        "--intervals",
        "4",
        "--token-file",
        token.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, log) = gpucost_e2e::agent(&args, &dir.path().join("agent.log")).wait(Duration::from_secs(60));
    assert!(ok, "the agent with its token: {log}");
    let (_, usage) =
        request(&c, "GET", "/api/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z", Some(READER), None);
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert!(usage["totals"]["observed_ns"].as_u64().unwrap() > 0, "{usage}");

    // Without tokens or --insecure, serve refuses to start and says what to do.
    let out = std::process::Command::new(bin("gpucost-collector"))
        .args([
            "serve",
            "--db",
            dir.path().join("m.db").to_str().unwrap(),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--auth <file> with [[agent]] and [[api]] tokens") && stderr.contains("or --insecure"),
        "{stderr}"
    );
    // Tokens, but gRPC neither under TLS nor declared behind a TLS proxy: refused too.
    let out = std::process::Command::new(bin("gpucost-collector"))
        .args(["serve", "--auth", auth.to_str().unwrap(), "--db", dir.path().join("n.db").to_str().unwrap()])
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gRPC without TLS: give --tls-cert and --tls-key"), "{stderr}");
}

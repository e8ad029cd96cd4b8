//! Transport security: agents reach the collector over TLS (rustls) with mutual TLS and a cluster token;
//! a plain-text or certificate-less agent is refused; a renewed certificate is picked up without a restart.
//! Certificates come from the real `openssl` command line.

use std::path::Path;
use std::time::{Duration, Instant};

use gpucost_collector::auth::hash_token;
use gpucost_e2e::pki::{CLIENT, SERVER};
use gpucost_e2e::{Collector, free_port};

const TOKEN: &str = "agent-token-for-prod-0001";
const READER: &str = "read-token-finance-000001";

/// A CA `name-ca` and, signed by it, a certificate `name-server` for 127.0.0.1 and `name-client`.
fn pki(dir: &Path, name: &str) {
    let (server, client) = (format!("{name}-server"), format!("{name}-client"));
    gpucost_e2e::pki::pki(dir, &format!("{name}-ca"), &[(&server, SERVER), (&client, CLIENT)]);
}

fn observed_ns(c: &Collector) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .get(&c.http("/api/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z"))
        .header("Authorization", &format!("Bearer {READER}"))
        .call()
        .unwrap();
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    v["totals"]["observed_ns"].as_u64().unwrap_or(0)
}

fn agent(dir: &Path, url: &str, node: u32, extra: &[&str]) -> gpucost_e2e::Agent {
    let mut args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        url,
        "--sim-node",
        &node.to_string(),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--sim-pace",
        "20ms",
        "--intervals",
        "3",
        "--token-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.join("token").display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    gpucost_e2e::agent(&args, &dir.join(format!("agent-{node}.log")))
}

#[test]
fn agents_need_tls_a_client_certificate_and_a_token_and_a_renewed_certificate_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d, "one");
    pki(d, "two");
    std::fs::copy(d.join("one-server.pem"), d.join("server.pem")).unwrap();
    std::fs::copy(d.join("one-server.key"), d.join("server.key")).unwrap();
    std::fs::write(d.join("token"), TOKEN).unwrap();
    // The simulator's first nodes are in cluster prod-us-east-1.
    std::fs::write(
        d.join("auth.toml"),
        format!(
            "[[agent]]\ncluster = \"prod-us-east-1\"\nsha256 = \"{}\"\n[[api]]\nname = \"r\"\nscope = \"read\"\nsha256 = \"{}\"\n",
            hash_token(TOKEN),
            hash_token(READER)
        ),
    )
    .unwrap();
    let grpc = free_port();
    let s = |p: &str| d.join(p).display().to_string();
    let c = Collector::start_with(
        &d.join("l.db"),
        grpc,
        free_port(),
        &[
            "--auth",
            &s("auth.toml"),
            "--tls-cert",
            &s("server.pem"),
            "--tls-key",
            &s("server.key"),
            "--tls-client-ca",
            &s("one-ca.pem"),
        ],
        &[],
    );
    let https = format!("https://127.0.0.1:{grpc}");
    let one = ["--tls-ca", &s("one-ca.pem"), "--tls-cert", &s("one-client.pem"), "--tls-key", &s("one-client.key")];

    // Plain text, and TLS without a client certificate, are refused: nothing lands.
    let plain = agent(d, &format!("http://127.0.0.1:{grpc}"), 0, &[]);
    let anonymous = agent(d, &https, 0, &["--tls-ca", &s("one-ca.pem")]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(observed_ns(&c), 0);
    drop((plain, anonymous));
    let log = std::fs::read_to_string(c.db.with_extension("collector.log")).unwrap();
    assert!(log.contains("TLS handshake failed"), "{log}");

    // Mutual TLS and the token: stored.
    let (ok, log) = agent(d, &https, 0, &one).wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    let first = observed_ns(&c);
    assert!(first > 0);

    // A renewed server certificate (from another CA) is served without a restart.
    std::fs::copy(d.join("two-server.pem"), d.join("server.pem")).unwrap();
    std::fs::copy(d.join("two-server.key"), d.join("server.key")).unwrap();
    let two = ["--tls-ca", &s("two-ca.pem"), "--tls-cert", &s("one-client.pem"), "--tls-key", &s("one-client.key")];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut node = 1;
    loop {
        // Each try is a new node, so what it sends is new GPU time.
        let a = agent(d, &https, node, &two);
        std::thread::sleep(Duration::from_secs(3));
        drop(a);
        if observed_ns(&c) > first {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up within 40 s");
        node += 1;
    }
    let log = std::fs::read_to_string(c.db.with_extension("collector.log")).unwrap();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

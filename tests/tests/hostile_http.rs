//! Hostile and careless input on the HTTP and operator side (issue 19 item 5): each probe that found a hole, as a
//! test against a real collector on loopback. Queries past the label and filter limits and times past 2262 are a
//! 400 naming the limit; budget names no URL can reach are refused; the bearer scheme is taken in any case on
//! both ports; a body over the limit is a JSON 413; made-up ALB key ids cost few key fetches and never name the
//! key server; a second collector on one SQLite file is refused; a client certificate must be for clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gpucost_collector::auth::hash_token;
use gpucost_e2e::{Collector, bin, free_port, g5_batch};
use gpucost_proto::v1 as pb;

const AGENT: &str = "agent-token-for-prod-0001";
const READER: &str = "read-token-finance-000001";
const ADMIN: &str = "admin-token-platform-0001";
const NS: u64 = 1_000_000_000;

/// An auth file: an agent token of `cluster`, a read and an admin API token.
fn auth_file(dir: &Path, cluster: &str) -> PathBuf {
    let path = dir.join("auth.toml");
    std::fs::write(
        &path,
        format!(
            "[[agent]]\ncluster = \"{cluster}\"\nsha256 = \"{}\"\n\n[[api]]\nname = \"finance\"\nscope = \"read\"\nsha256 = \"{}\"\n\n\
             [[api]]\nname = \"platform\"\nscope = \"admin\"\nsha256 = \"{}\"\n",
            hash_token(AGENT),
            hash_token(READER),
            hash_token(ADMIN)
        ),
    )
    .unwrap();
    path
}

fn collector(dir: &Path, extra: &[&str]) -> Collector {
    let auth = auth_file(dir, "prod");
    let mut args = vec!["--auth", auth.to_str().unwrap(), "--grpc-plaintext"];
    args.extend_from_slice(extra);
    Collector::start_with(&dir.join("l.db"), free_port(), free_port(), &args, &[])
}

/// One HTTP/1.1 request written by hand (no client normalises its path): status, content type, body.
fn raw(c: &Collector, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", c.http_port)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before it has read a large body: the body is written while the answer is read.
    let mut w = s.try_clone().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (mut content_type, mut length, mut chunked) = (String::new(), None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = v.trim().to_string(),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    match (length, chunked) {
        (Some(n), _) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        (None, true) => loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        },
        (None, false) => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    let _ = writer.join();
    (code, content_type, String::from_utf8_lossy(&body).into_owned())
}

fn get(c: &Collector, path: &str) -> (u16, String) {
    let (code, _, body) = raw(c, "GET", path, &[("Authorization", &format!("Bearer {READER}"))], b"");
    (code, body)
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no error: {body}")).to_string()
}

#[test]
fn a_query_past_the_label_or_filter_limits_is_a_400_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    // 62 label joins took SQLite past its 64 tables (a 503 with its own words).
    let labels: Vec<String> = (0..62).map(|i| format!("label:k{i}")).collect();
    let (code, body) = get(&c, &format!("/api/v1/usage?group_by={}", labels.join(",")));
    assert_eq!(code, 400, "{body}");
    assert!(
        error_of(&body).contains("read 62 labels (label:<key>, model, model_version, run, experiment); at most 16"),
        "{body}"
    );
    let (code, body) = get(&c, &format!("/api/v1/costs?group_by={}", labels[..17].join(",")));
    assert_eq!(code, 400, "{body}");
    // 2 000 filter terms made an expression tree too large for it.
    let terms = vec!["namespace=ml"; 2000].join(",");
    let (code, body) = get(&c, &format!("/api/v1/costs?filter={terms}"));
    assert_eq!(code, 400, "{body}");
    assert!(error_of(&body).contains("filter: more than 32 terms"), "{body}");
    // Within the limits, an answer.
    assert_eq!(get(&c, &format!("/api/v1/costs?group_by={}&filter=namespace=ml", labels[..16].join(","))).0, 200);
}

#[test]
fn times_near_the_end_of_64_bits_are_refused_rather_than_wrapped_to_1970() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    for query in [
        "from=18446744073&to=18446744073709551615",
        "to=18446744073",
        "from=2300-01-01T00:00:00Z&to=2301-01-01T00:00:00Z",
    ] {
        for api in ["usage", "costs"] {
            let (code, body) = get(&c, &format!("/api/v1/{api}?{query}"));
            assert_eq!(code, 400, "{api}?{query}: {body}");
            assert!(
                error_of(&body).contains("too far in the future; the latest time is 2262-01-01T00:00:00Z"),
                "{body}"
            );
        }
    }
    let (code, body) = get(&c, "/api/v1/chargeback?from=2026-01-01T00:00:00Z&to=18446744073");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn budget_names_no_url_can_reach_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    let budget = br#"{"scope": {"team": "vision"}, "amount_usd": 100}"#;
    let admin = format!("Bearer {ADMIN}");
    let headers = [("Authorization", admin.as_str()), ("Content-Type", "application/json")];
    for name in ["%2E", "%2E%2E", ".%2E"] {
        let (code, _, body) = raw(&c, "PUT", &format!("/api/v1/budgets/{name}"), &headers, budget);
        assert_eq!(code, 400, "{name}: {body}");
        assert!(error_of(&body).contains("is a path's dot segment, which no URL can name"), "{body}");
    }
    // Dots within a name are fine, and the budget is reachable by its URL.
    assert_eq!(raw(&c, "PUT", "/api/v1/budgets/team..vision", &headers, budget).0, 201);
    assert_eq!(get(&c, "/api/v1/budgets/team..vision").0, 200);
}

/// One Report stream with `authorization: <header>`: the acks, or the status that ended it.
fn report(url: &str, header: &str, batches: Vec<pb::UsageBatch>) -> Result<Vec<pb::Ack>, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap();
        let mut client = pb::ingest_client::IngestClient::new(channel);
        let n = batches.len();
        let mut request = tonic::Request::new(tokio_stream::iter(batches));
        request.metadata_mut().insert("authorization", header.parse().unwrap());
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

#[test]
fn the_bearer_scheme_is_taken_in_any_case_over_http_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    let now = gpucost_types::clock::now_ns() / NS * NS;
    for (i, scheme) in ["BEARER", "bearer", "BeArEr"].into_iter().enumerate() {
        let header = format!("{scheme} {READER}");
        let (code, _, body) = raw(&c, "GET", "/api/v1/usage", &[("Authorization", &header)], b"");
        assert_eq!(code, 200, "{scheme}: {body}");
        let start = now - (10 - i as u64) * 60 * NS;
        let batch = g5_batch("n1", i as u64 + 1, start, start + 60 * NS, vec![]);
        let acks = report(&c.grpc_url(), &format!("{scheme} {AGENT}"), vec![batch])
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
        assert_eq!(acks[0].status, pb::AckStatus::Stored as i32, "{scheme}");
    }
    let (code, _, body) = raw(&c, "GET", "/api/v1/usage", &[("Authorization", &format!("Basic {READER}"))], b"");
    assert_eq!(code, 401, "another scheme is still no bearer token: {body}");
}

#[test]
fn a_body_over_the_limit_is_a_413_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &[]);
    let admin = format!("Bearer {ADMIN}");
    let big = vec![b' '; 3 << 20];
    let (code, content_type, body) =
        raw(&c, "PUT", "/api/v1/budgets/big", &[("Authorization", &admin), ("Content-Type", "application/json")], &big);
    assert_eq!(code, 413, "{body}");
    assert!(content_type.starts_with("application/json"), "{content_type}: {body}");
    assert!(error_of(&body).contains("length limit exceeded"), "{body}");
    // And a query string axum cannot read: a 400 in the same shape.
    let (code, content_type, body) =
        raw(&c, "GET", "/api/v1/usage?from=%FF", &[("Authorization", &format!("Bearer {READER}"))], b"");
    assert_eq!((code, content_type.starts_with("application/json")), (400, true), "{body}");
    error_of(&body);
}

/// A key server that knows no key and counts what it is asked.
fn counting_key_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let mut line = String::new();
            let _ = BufReader::new(stream.try_clone().unwrap()).read_line(&mut line);
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
        }
    });
    (port, asked)
}

#[test]
fn made_up_alb_key_ids_cost_few_key_fetches_and_never_name_the_key_server() {
    let dir = tempfile::tempdir().unwrap();
    let (port, asked) = counting_key_server();
    let keys = format!("http://127.0.0.1:{port}");
    // No --alb-arn: any signer is taken, so the key id is the only thing that reaches the key server.
    let c = collector(dir.path(), &["--alb-oidc-keys", &keys]);
    let jwt = |kid: &str| {
        let header = URL_SAFE_NO_PAD.encode(serde_json::json!({ "alg": "ES256", "kid": kid }).to_string());
        format!("{header}.{}.{}", URL_SAFE_NO_PAD.encode("{}"), URL_SAFE_NO_PAD.encode([7u8; 64]))
    };
    for i in 0..40 {
        // Made-up key ids, each sent twice.
        let (code, _, body) =
            raw(&c, "GET", "/api/v1/usage", &[("x-amzn-oidc-data", &jwt(&format!("made-up-{}", i / 2)))], b"");
        assert_eq!(code, 401, "{body}");
        let e = error_of(&body);
        assert!(e.contains("is not one of the ALB's keys"), "{e}");
        assert!(!e.contains(&port.to_string()) && !e.contains("127.0.0.1"), "the key server is named: {e}");
    }
    let fetches = asked.load(Ordering::SeqCst);
    assert!(fetches <= 10, "{fetches} key fetches for 20 made-up key ids sent 40 times");
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("could not fetch an ALB public key"), "the operator still sees why: {log}");
}

#[test]
fn a_second_collector_on_the_same_sqlite_file_is_refused_naming_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let first = collector(dir.path(), &[]);
    let log = dir.path().join("second.log");
    let mut second = Command::new(bin("gpucost-collector"))
        .args(["serve", "--insecure", "--grpc", &format!("127.0.0.1:{}", free_port())])
        .args(["--http", &format!("127.0.0.1:{}", free_port()), "--db"])
        .arg(&first.db)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second collector on {} kept running", first.db.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("an SQLite ledger takes one collector at a time"), "{said}");
    assert!(said.contains("share a PostgreSQL ledger (--db postgres://"), "{said}");
    assert_eq!(get(&first, "/api/v1/usage").0, 200, "the first serves on");
}

/// A simulated agent (cluster prod-us-east-1) over mutual TLS with certificate `cert`.
fn tls_agent(dir: &Path, grpc: u16, cert: &str) -> gpucost_e2e::Agent {
    let s = |p: &str| dir.join(p).display().to_string();
    let args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        &format!("https://127.0.0.1:{grpc}"),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--sim-pace",
        "20ms",
        "--intervals",
        "2",
        "--token-file",
        &s("token"),
        "--tls-ca",
        &s("ca.pem"),
        "--tls-cert",
        &s(&format!("{cert}.pem")),
        "--tls-key",
        &s(&format!("{cert}.key")),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    gpucost_e2e::agent(&args, &dir.join(format!("agent-{cert}.log")))
}

#[test]
fn under_mutual_tls_a_certificate_without_the_client_auth_usage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // "any": a certificate that names no usage (which webpki takes for any); "server": the collector's own.
    gpucost_e2e::pki::pki(
        d,
        "ca",
        &[
            ("server", "subjectAltName=IP:127.0.0.1\n"),
            ("any", "subjectAltName=IP:127.0.0.1\n"),
            ("client", gpucost_e2e::pki::CLIENT),
        ],
    );
    std::fs::write(d.join("token"), AGENT).unwrap();
    let auth = auth_file(d, "prod-us-east-1");
    let grpc = free_port();
    let s = |p: &str| d.join(p).display().to_string();
    let c = Collector::start_with(
        &d.join("l.db"),
        grpc,
        free_port(),
        &[
            "--auth",
            auth.to_str().unwrap(),
            "--tls-cert",
            &s("server.pem"),
            "--tls-key",
            &s("server.key"),
            "--tls-client-ca",
            &s("ca.pem"),
        ],
        &[],
    );
    let refusals = || {
        let log = std::fs::read_to_string(&c.log).unwrap();
        log.lines()
            .filter(|l| l.contains("TLS handshake failed") && l.contains("no clientAuth extended key usage"))
            .count()
    };
    let observed = || {
        let (_, body) = get(&c, "/api/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["totals"]["observed_ns"].as_u64().unwrap()
    };
    for cert in ["any", "server"] {
        let before = refusals();
        let agent = tls_agent(d, grpc, cert);
        // Wait for the refusal the collector logs (never for a time): it names the missing usage.
        let deadline = Instant::now() + Duration::from_secs(30);
        while refusals() == before {
            assert!(
                Instant::now() < deadline,
                "{cert}: no refusal within 30 s: {}\n{}",
                std::fs::read_to_string(&c.log).unwrap(),
                std::fs::read_to_string(d.join(format!("agent-{cert}.log"))).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(agent);
        assert_eq!(observed(), 0, "{cert}: nothing stored");
    }
    let (ok, log) = tls_agent(d, grpc, "client").wait(Duration::from_secs(60));
    assert!(ok, "a client certificate is taken: {log}");
    assert!(observed() > 0);
}

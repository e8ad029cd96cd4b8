//! People signed in by an AWS ALB's OIDC: the `x-amzn-oidc-data` JWT is verified (ES256) against the key the
//! ALB publishes, here a local key server; the signer and the expiry are checked; listed users administer.
//! The key and the signatures come from the real `openssl`, independent of the collector's verifier.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use gpucost_collector::auth::hash_token;
use gpucost_e2e::{Collector, free_port};

const ALB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gpucost/50dc6c495c0c9188";

fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An ECDSA signature in DER (what openssl writes) as JWS's fixed r || s.
fn fixed(der: &[u8]) -> Vec<u8> {
    let int = |at: usize| {
        assert_eq!(der[at], 2, "an INTEGER");
        let len = der[at + 1] as usize;
        let v = &der[at + 2..at + 2 + len];
        let v = &v[v.len().saturating_sub(32)..];
        let mut out = vec![0u8; 32 - v.len()];
        out.extend_from_slice(v);
        (out, at + 2 + len)
    };
    assert_eq!(der[0], 0x30);
    let (r, next) = int(2);
    let (s, _) = int(next);
    [r, s].concat()
}

/// A JWT as the ALB writes it (base64url with padding), signed with `key`.
fn jwt(dir: &Path, signer: &str, email: &str, exp: u64) -> String {
    let header = URL_SAFE
        .encode(serde_json::json!({ "alg": "ES256", "kid": "key-1", "signer": signer, "exp": exp }).to_string());
    let claims = URL_SAFE.encode(serde_json::json!({ "sub": "1234", "email": email, "exp": exp }).to_string());
    let signed = format!("{header}.{claims}");
    let der = openssl(dir, &["dgst", "-sha256", "-sign", "alb.key"], Some(signed.as_bytes()));
    format!("{signed}.{}", URL_SAFE.encode(fixed(&der)))
}

/// Serves the PEM at `/key-1` on a loopback port, as the ALB's key endpoint does.
fn key_server(pem: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let (status, body) = if line.starts_with("GET /key-1 ") {
                ("200 OK", pem.clone())
            } else {
                ("404 Not Found", b"no".to_vec())
            };
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
    });
    port
}

fn call(c: &Collector, method: &str, path: &str, oidc: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = if method == "PUT" {
        let mut r = agent.put(&c.http(path)).header("Content-Type", "application/json");
        if let Some(t) = oidc {
            r = r.header("x-amzn-oidc-data", t);
        }
        r.send(r#"{"scope": {"team": "vision"}, "amount_usd": 10}"#.to_string())
    } else {
        let mut r = agent.get(&c.http(path));
        if let Some(t) = oidc {
            r = r.header("x-amzn-oidc-data", t);
        }
        r.call()
    }
    .unwrap();
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn people_signed_in_by_the_alb_read_and_listed_ones_administer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "alb.key"], None);
    let pem = openssl(d, &["ec", "-in", "alb.key", "-pubout"], None);
    let keys = key_server(pem);
    std::fs::write(
        d.join("auth.toml"),
        format!("[[agent]]\ncluster = \"prod\"\nsha256 = \"{}\"\n", hash_token("agent-token-for-prod-0001")),
    )
    .unwrap();
    let args = [
        "--auth",
        &d.join("auth.toml").display().to_string(),
        "--grpc-plaintext",
        "--alb-oidc-keys",
        &format!("http://127.0.0.1:{keys}"),
        "--alb-arn",
        ALB,
        "--alb-oidc-admins",
        "admin@example.com",
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Collector::start_with(&d.join("l.db"), free_port(), free_port(), &args, &[]);
    let later = gpucost_types::clock::now_ns() / 1_000_000_000 + 600;

    let alice = jwt(d, ALB, "alice@example.com", later);
    assert_eq!(call(&c, "GET", "/", Some(&alice)).0, 200, "the dashboard");
    assert_eq!(call(&c, "GET", "/api/v1/costs", Some(&alice)).0, 200);
    let (status, body) = call(&c, "PUT", "/api/v1/budgets/b", Some(&alice));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("alice@example.com may read; this needs admin"), "{body}");
    assert_eq!(call(&c, "PUT", "/api/v1/budgets/b", Some(&jwt(d, ALB, "admin@example.com", later))).0, 201);

    // Refused: nothing, a tampered claim, another ALB, an expired one.
    assert_eq!(call(&c, "GET", "/api/v1/costs", None).0, 401);
    let mut parts: Vec<String> = alice.split('.').map(String::from).collect();
    parts[1] =
        URL_SAFE.encode(serde_json::json!({ "sub": "1234", "email": "admin@example.com", "exp": later }).to_string());
    let (status, body) = call(&c, "PUT", "/api/v1/budgets/b", Some(&parts.join(".")));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not verify"), "{body}");
    let (status, body) = call(
        &c,
        "GET",
        "/api/v1/costs",
        Some(&jwt(d, "arn:aws:elasticloadbalancing:other", "alice@example.com", later)),
    );
    assert_eq!(status, 401);
    assert!(body.contains("is not this collector's ALB"), "{body}");
    let (status, body) = call(&c, "GET", "/api/v1/costs", Some(&jwt(d, ALB, "alice@example.com", later - 1200)));
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");
}

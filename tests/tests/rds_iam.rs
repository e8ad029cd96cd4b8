//! RDS IAM database authentication (issue 10): the token the collector makes is byte for byte the one the
//! AWS SDK makes (botocore's `generate_db_auth_token`, from the venv `scripts/test` installs, at the same
//! instant and with the same credentials), and a URL that cannot work is refused with a clear error.
//! No RDS is reachable here, so the server's side of the check is not exercised (docs/deploy-aws.md).

use std::process::Command;

use gpucost_e2e::installed_peer;
use gpucost_ledger::sql::postgres::PgDb;
use gpucost_ledger::sql::rds_iam::{Credentials, auth_token};

/// botocore's token, its clock held at `unix_s`.
fn botocore_token(
    python: &std::path::Path,
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    c: &Credentials,
    unix_s: u64,
) -> String {
    let script = r#"
import datetime, sys
import botocore.auth, botocore.session
host, port, user, region, key, secret, token, at = sys.argv[1:]
botocore.auth.get_current_datetime = lambda: datetime.datetime.fromtimestamp(int(at), datetime.timezone.utc).replace(tzinfo=None)
s = botocore.session.get_session()
s.set_credentials(key, secret, token or None)
print(s.create_client("rds", region_name=region).generate_db_auth_token(host, int(port), user))
"#;
    let out = Command::new(python)
        .args(["-c", script, host, &port.to_string(), user, region, &c.access_key_id, &c.secret_access_key])
        .arg(c.session_token.clone().unwrap_or_default())
        .arg(unix_s.to_string())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run python");
    assert!(out.status.success(), "botocore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_rds_iam_token_is_byte_for_byte_the_one_the_aws_sdk_makes() {
    let Some(python) = installed_peer("botocore", "GPUCOST_VENV_PYTHON", "venv/bin/python", "") else { return };
    let cases = [
        ("mydb.abc123.eu-west-1.rds.amazonaws.com", 5432, "gpucost_app", "eu-west-1", None, 1_795_955_445),
        (
            "ledger.cluster-xyz.us-east-2.rds.amazonaws.com",
            6543,
            "app+ro",
            "us-east-2",
            Some("FQoGZXIvYXdzE/a+b=="),
            1_830_000_001,
        ),
    ];
    for (host, port, user, region, session, at) in cases {
        let c = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: session.map(str::to_string),
        };
        let ours = auth_token(host, port, user, region, &c, at);
        let sdk = botocore_token(&python, host, port, user, region, &c, at);
        assert_eq!(ours, sdk, "{host}");
        // And it depends on the secret: another secret, another signature.
        let other = Credentials { secret_access_key: "another".into(), ..c };
        assert_ne!(auth_token(host, port, user, region, &other, at), sdk);
    }
}

#[test]
fn an_rds_iam_url_without_tls_or_with_a_password_is_refused_with_what_to_change() {
    let plain =
        PgDb::connect("postgres://gpucost_app@127.0.0.1:1/gpucost?auth=rds-iam&region=eu-west-1").err().unwrap();
    assert!(plain.to_string().contains("auth=rds-iam needs TLS"), "{plain}");
    let with_password =
        PgDb::connect("postgres://gpucost_app:secret@127.0.0.1:1/gpucost?auth=rds-iam&sslmode=require").err().unwrap();
    let text = with_password.to_string();
    assert!(text.contains("takes no password"), "{text}");
    assert!(!text.contains("secret"), "the password is not repeated: {text}");
    let unknown = PgDb::connect("postgres://u@127.0.0.1:1/db?auth=kerberos").err().unwrap();
    assert!(unknown.to_string().contains("auth=kerberos is not one of password, rds-iam"), "{unknown}");
}

/// A PAM service file for the test, removed when dropped.
struct PamService(std::path::PathBuf);

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// End to end: a collector whose URL says `auth=rds-iam` logs in to a PostgreSQL that, like RDS, checks
/// the password as an IAM token (here through PAM: `pam_exec` runs `tests/fixtures/rds/verify_token.py`,
/// SigV4 written anew with Python's standard library, against the one key it knows). Every connection
/// the collector opens gets in with a fresh token; a collector with the wrong secret is kept out.
#[test]
fn a_collector_logs_in_with_rds_iam_tokens_over_tls_and_a_wrong_key_is_kept_out() {
    use gpucost_e2e::postgres::Postgres;
    use gpucost_e2e::{Collector, free_port};
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: this test adds a PAM service (root)");
        eprintln!("not root: cannot add a PAM service; skipping");
        return;
    }
    let service = format!("gpucost-test-rds-iam-{}", std::process::id());
    let Some(pg) = Postgres::start_tls_with_hba(&format!("hostssl all iam_app 127.0.0.1/32 pam pamservice={service}"))
    else {
        return;
    };
    let ca = pg.ca.clone().expect("a CA");
    let admin =
        PgDb::connect(&format!("{}?sslmode=verify-full&sslrootcert={}", pg.url(), ca.display())).expect("admin");
    use gpucost_ledger::sql::Db;
    use gpucost_ledger::sql_params;
    admin.run("CREATE ROLE iam_app LOGIN", sql_params![]).unwrap();
    admin.run("CREATE DATABASE iamledger OWNER iam_app", sql_params![]).unwrap();

    // The verifier and its log where the server's user can reach them.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify_token.py");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/rds/verify_token.py"), &script).unwrap();
    let log = dir.path().join("pam.log");
    std::fs::write(&log, "").unwrap();
    for (path, mode) in [(dir.path(), "755"), (script.as_path(), "755"), (log.as_path(), "666")] {
        assert!(Command::new("chmod").arg(mode).arg(path).status().unwrap().success());
    }
    let (key_id, secret) = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let pam = PamService(std::path::PathBuf::from(format!("/etc/pam.d/{service}")));
    std::fs::write(
        &pam.0,
        format!(
            "auth required pam_exec.so expose_authtok quiet /usr/bin/python3 {} 127.0.0.1:{} eu-west-1 {key_id} {secret} {}\n\
             account required pam_permit.so\n",
            script.display(),
            pg.port,
            log.display()
        ),
    )
    .unwrap();

    let url = format!(
        "postgres://iam_app@127.0.0.1:{}/iamledger?sslmode=verify-full&sslrootcert={}&auth=rds-iam&region=eu-west-1",
        pg.port,
        ca.display()
    );
    let env = |secret: &'static str| {
        vec![
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
    };
    let clog = dir.path().join("collector.log");
    let c = Collector::start_logged(std::path::Path::new(&url), &clog, free_port(), free_port(), &[], &env(secret));
    let (status, body) = c.get("/api/v1/costs?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z");
    assert_eq!(status, 200, "{body}");
    drop(c);
    let decisions = std::fs::read_to_string(&log).unwrap();
    eprintln!("PAM decisions:\n{decisions}");
    let accepted = decisions.lines().filter(|l| *l == "iam_app accepted").count();
    assert!(accepted >= 2, "the writer and a reader each logged in with a token: {decisions}");
    assert!(!decisions.contains("refused"), "{decisions}");

    // The wrong secret: the collector cannot open its ledger, and says why.
    let out = Command::new(gpucost_e2e::bin("gpucost-collector"))
        .envs(env("not-the-secret"))
        .args(["serve", "--insecure", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PAM authentication failed for user \"iam_app\""), "{stderr}");
    assert!(!stderr.contains("X-Amz-Signature"), "the token is not logged: {stderr}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("iam_app refused: bad signature"));
}

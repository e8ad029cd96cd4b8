//! The collector's configuration file, with the real binary: a file can say what the flags say, flags and
//! environment variables override it, and a bad file (a misspelt key, a bad value, settings that cannot
//! serve together) is refused naming the file and the key before any port is bound or the ledger is made.
//! `config check` says the same without starting; `config example` prints a file with every setting.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gpucost_e2e::{bin, free_port};

fn collector(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("gpucost-collector"));
    cmd.args(args).envs(env.iter().copied()).env_remove("GPUCOST_CONFIG");
    // Fails, rather than hangs, should a refused configuration start serving after all.
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Nothing listens on `port`.
fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_key_before_a_port_is_bound_or_the_ledger_made() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let db = dir.path().join("ledger.db");
    // Tokens, so that the missing TLS is what is refused.
    let auth = dir.path().join("auth.toml");
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    std::fs::write(
        &auth,
        format!(
            "[[agent]]\ncluster = \"prod\"\nsha256 = \"{hash}\"\n[[api]]\nname = \"ci\"\nscope = \"read\"\nsha256 = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let base =
        format!("grpc = \"127.0.0.1:{grpc}\"\nhttp = \"127.0.0.1:{http}\"\ndb = {:?}\n", db.display().to_string());
    let cases = [
        (
            "misspelt.toml",
            format!("{base}insecure = true\nraw_retension = \"7d\"\n"),
            "misspelt.toml: unknown key `raw-retension` for `gpucost-collector serve` (did you mean `raw-retention`?)",
        ),
        ("bad-value.toml", format!("{base}insecure = true\nbucket = \"an hour\"\n"), "bad-value.toml: key `bucket`:"),
        (
            "no-tls.toml",
            format!("{base}auth = {:?}\n", auth.display().to_string()),
            "gRPC without TLS: give --tls-cert and --tls-key",
        ),
        ("bucket.toml", format!("{base}insecure = true\nbucket = \"7m\"\n"), "--bucket 420s must divide a day evenly"),
    ];
    for (name, text, expected) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = collector(&["--config", file.to_str().unwrap(), "serve"], &[]);
        let text = said(&out);
        assert!(!out.status.success(), "{name}: {text}");
        assert!(text.contains(expected), "{name}: expected {expected:?} in:\n{text}");
        assert!(free(grpc) && free(http), "{name}: a port was bound");
        assert!(!db.exists(), "{name}: the ledger was made");
        // `config check` refuses it the same way, starting nothing.
        let check = collector(&["config", "check", file.to_str().unwrap()], &[]);
        assert!(!check.status.success() && said(&check).contains(expected), "config check {name}: {}", said(&check));
    }
}

#[test]
fn a_file_sets_the_flags_and_the_environment_and_command_line_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, file_http, env_http) = (free_port(), free_port(), free_port());
    let db = dir.path().join("ledger.db");
    let file = dir.path().join("collector.toml");
    std::fs::write(
        &file,
        format!(
            "grpc = \"127.0.0.1:{grpc}\"\nhttp = \"127.0.0.1:{file_http}\"\ndb = {:?}\ninsecure = true\n\
             owner_rules = [\"namespace-owner\", \"unix-user\"]\nbucket = \"15m\"\nlog-format = \"json\"\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let check = collector(&["config", "check", file.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", said(&check));
    assert!(said(&check).contains("valid for `gpucost-collector serve` (7 settings)"), "{}", said(&check));

    // GPUCOST_HTTP_ADDR beats the file's `http`.
    let http_env = format!("127.0.0.1:{env_http}");
    let mut child = Command::new(bin("gpucost-collector"))
        .args(["--config", file.to_str().unwrap(), "serve"])
        .env("GPUCOST_HTTP_ADDR", &http_env)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        if let Ok(r) = ureq::get(&format!("http://{http_env}/readyz")).call() {
            break r.status().as_u16();
        }
        assert!(Instant::now() < deadline, "the collector did not answer on {http_env}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answered, 200);
    assert!(free(file_http), "the file's http address was overridden");
    assert!(!free(grpc), "the file's grpc address is used");
    child.kill().unwrap();
    child.wait().unwrap();
    // The file's bucket made the ledger.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let bucket: String =
        conn.query_row("SELECT value FROM settings WHERE name = 'bucket_ns'", [], |r| r.get(0)).unwrap();
    assert_eq!(bucket, (15 * 60 * 1_000_000_000u64).to_string());
}

#[test]
fn the_example_file_names_every_flag_of_serve_and_is_valid_toml() {
    let out = collector(&["config", "example"], &[]);
    assert!(out.status.success(), "{}", said(&out));
    let example = String::from_utf8(out.stdout).unwrap();
    let help = said(&collector(&["serve", "--help"], &[]));
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .filter(|w| !w.is_empty() && !matches!(*w, "help" | "version" | "config"))
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    for flag in &flags {
        assert!(example.contains(&format!("# {flag} = ")), "`{flag}` is not in the example:\n{example}");
    }
    // Uncommented, its settings are a TOML file the collector reads back (with TLS off for a check).
    let settings: String = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| flags.iter().any(|f| l.starts_with(&format!("{f} = "))) && !l.ends_with("= \"\""))
        .map(|l| if l == "insecure = false" { "insecure = true\n".to_string() } else { format!("{l}\n") })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.toml");
    std::fs::write(&file, &settings).unwrap();
    let check = collector(&["config", "check", file.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}\n{settings}", said(&check));
}

fn agent(args: &[&str]) -> Output {
    Command::new(bin("gpucost-agent")).args(args).env_remove("GPUCOST_CONFIG").output().unwrap()
}

#[test]
fn the_agent_reads_the_same_kind_of_file_and_checks_it_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write(
        "agent.toml",
        "source = \"sim\"\ncollector = \"http://127.0.0.1:1\"\ninsecure = true\nreport_interval = \"30s\"\n\
         env-keys = [\"MLFLOW_RUN_ID\", \"TEAM\"]\n",
    );
    let out = agent(&["--config", &good, "--check-config"]);
    assert!(out.status.success() && said(&out).contains("configuration valid"), "{}", said(&out));
    // A value the file allows but the agent refuses, overridden by the command line.
    let short = write("short.toml", "source = \"sim\"\ninsecure = true\nsample-interval = \"10ms\"\n");
    let out = agent(&["--config", &short, "--check-config"]);
    assert!(!out.status.success() && said(&out).contains("--sample-interval 10ms is too short"), "{}", said(&out));
    let out = agent(&["--config", &short, "--check-config", "--sample-interval", "1s"]);
    assert!(out.status.success(), "the command line overrides the file: {}", said(&out));

    let misspelt = write("misspelt.toml", "colector = \"http://127.0.0.1:1\"\n");
    let out = agent(&["--config", &misspelt, "--check-config"]);
    let expected = format!("{misspelt}: unknown key `colector` for `gpucost-agent` (did you mean `collector`?)");
    assert!(!out.status.success() && said(&out).contains(&expected), "{}", said(&out));

    let out = agent(&["--config-example"]);
    let example = String::from_utf8_lossy(&out.stdout).to_string();
    for key in ["source", "collector", "nvml-lib", "dra-driver", "spool-dir", "label-allow", "log-format"] {
        assert!(example.contains(&format!("# {key} = ")), "{key} missing:\n{example}");
    }
    assert!(!example.contains("# check-config = "), "{example}");
}

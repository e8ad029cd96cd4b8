//! Every command and example in the README, run as written: each `curl` against a running demo (the README's
//! host and port swapped for the test's), and each `gpucost-collector` command line on a ledger with October
//! and November data, its placeholders filled in (`<file>` the ledger, `<date>` a date, `<folder>` the example
//! catalog), its optional `[…]` flags left out, and each alternative of `a|b|c` run in turn.

use std::path::Path;
use std::time::Duration;

use gpucost_e2e::browser::Demo;
use gpucost_e2e::{Collector, bin, detector_pod, g5_batch, send_batches};

const NS: u64 = 1_000_000_000;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md")
}

/// The README's inline code spans (which may wrap a line) and the lines of its fenced blocks.
fn code(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push(line.split(" #").next().unwrap_or(line).trim().to_string());
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    out.extend(prose.split('`').skip(1).step_by(2).map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")));
    out
}

#[test]
fn every_curl_example_in_the_readme_answers_200_from_the_demo() {
    let curls: Vec<String> = code(&readme())
        .into_iter()
        .filter_map(|c| c.strip_prefix("curl '").and_then(|u| u.strip_suffix('\'')).map(str::to_string))
        .collect();
    assert!(curls.len() >= 6, "the README's curl examples: {curls:?}");
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &["--backfill", "2d", "--nodes", "4"], Duration::from_secs(600));
    for url in &curls {
        let rest = url.strip_prefix("http://127.0.0.1:8080").unwrap_or_else(|| panic!("{url}: not the demo's address"));
        let ours = format!("http://127.0.0.1:{}{rest}", demo.http_port);
        let resp = ureq::get(&ours).config().http_status_as_error(false).build().call().expect(url);
        let status = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "{url} answered {status}: {body}");
        assert!(!body.trim().is_empty(), "{url}: an empty answer");
    }
}

/// A command line with its placeholders filled in and its optional flags left out; one per alternative.
fn fill(line: &str, db: &Path, catalog: &Path) -> Vec<Vec<String>> {
    let mut words: Vec<String> = Vec::new();
    let mut optional = 0;
    for w in line.split_whitespace().skip(1) {
        if w.starts_with('[') {
            optional += 1;
        }
        if optional == 0 {
            words.push(w.to_string());
        }
        if w.ends_with(']') {
            optional -= 1;
        }
    }
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for (i, w) in words.iter().enumerate() {
        let previous = if i > 0 { words[i - 1].as_str() } else { "" };
        let filled = match (w.as_str(), previous) {
            ("<file>", "--db") => vec![db.display().to_string()],
            ("<date>", _) => vec!["2026-11-01T00:00:00Z".to_string()],
            ("<folder>", _) => vec![catalog.display().to_string()],
            (w, _) if w.starts_with('<') => panic!("{line}: no value for the placeholder {w}"),
            (w, _) => w.split('|').map(str::to_string).collect(),
        };
        runs = runs
            .into_iter()
            .flat_map(|run| {
                filled.iter().map(move |f| {
                    let mut r = run.clone();
                    r.push(f.clone());
                    r
                })
            })
            .collect();
    }
    runs
}

#[test]
fn every_gpucost_collector_command_in_the_readme_runs_as_written() {
    let lines: Vec<String> =
        code(&readme()).into_iter().filter(|c| c.starts_with("gpucost-collector ") && c.contains(" --db ")).collect();
    let subcommands: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    for expected in ["reprice", "reattribute", "report", "close-period"] {
        assert!(subcommands.contains(&expected), "the README shows {expected}: {lines:?}");
    }

    // A ledger with an hour of October and an hour of November.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    {
        let c = Collector::start(&db);
        // An hour of a g5.12xlarge whose four GPUs answered NVML all along, one running a pod at 80 %.
        let hour = |seq, start_s: u64| {
            let mut b =
                g5_batch("n1", seq, start_s * NS, (start_s + 3600) * NS, vec![(0, 80.0, detector_pod("detector-0"))]);
            let devices = &b.node.as_ref().unwrap().devices;
            b.gpus = devices
                .iter()
                .map(|d| gpucost_proto::v1::GpuUsage {
                    uuid: d.uuid.clone(),
                    utilization_percent: if d.index == 0 { 80.0 } else { 0.0 },
                    sample_count: 3600,
                    ..Default::default()
                })
                .collect();
            b
        };
        // 2026-10-15T00:00:00Z and 2026-11-02T00:00:00Z.
        assert_eq!(send_batches(&c.grpc_url(), vec![hour(1, 1_792_022_400), hour(2, 1_793_577_600)]).len(), 2);
    }
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let mut ran = 0;
    for line in &lines {
        for args in fill(line, &db, &catalog) {
            let out = std::process::Command::new(bin("gpucost-collector")).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "gpucost-collector {}: {}\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 6, "{ran} command lines run");

    // And the token hashing, fed a token on stdin.
    let hash = code(&readme()).into_iter().find(|c| c.starts_with("gpucost-collector hash-token"));
    assert!(hash.is_some(), "the README shows hash-token");
    let mut child = std::process::Command::new(bin("gpucost-collector"))
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"a-token-of-32-characters-or-more\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && printed.len() == 64, "{printed}");
}

#[test]
fn filling_a_command_line_leaves_out_optional_flags_and_runs_each_alternative() {
    let (db, catalog) = (Path::new("l.db"), Path::new("cat"));
    let runs = fill("gpucost-collector report chargeback --db <file> --format csv|json [--out <file>]", db, catalog);
    let joined: Vec<String> = runs.iter().map(|r| r.join(" ")).collect();
    assert_eq!(joined, ["report chargeback --db l.db --format csv", "report chargeback --db l.db --format json"]);
}

#[test]
fn the_readmes_configuration_file_is_one_the_collector_accepts() {
    let text = readme();
    let block = text
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README shows a configuration file");
    // Its files, in a folder of the test's: the auth tokens and a prices file.
    let dir = tempfile::tempdir().unwrap();
    let folder = format!("{}/", dir.path().display());
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    std::fs::write(
        dir.path().join("auth.toml"),
        format!("[[agent]]\ncluster = \"prod\"\nsha256 = \"{hash}\"\n[[api]]\nname = \"ci\"\nscope = \"read\"\nsha256 = \"{hash}\"\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("prices.toml"), "").unwrap();
    gpucost_e2e::pki::pki(dir.path(), "ca", &[("tls", "subjectAltName=DNS:localhost\n")]);
    std::fs::rename(dir.path().join("tls.pem"), dir.path().join("tls.crt")).unwrap();
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, block.replace("/etc/gpucost/", &folder)).unwrap();
    let out = std::process::Command::new(bin("gpucost-collector"))
        .args(["config", "check", file.to_str().unwrap()])
        .env_remove("GPUCOST_CONFIG")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("valid for `gpucost-collector serve`"), "{said}\n{block}");
}

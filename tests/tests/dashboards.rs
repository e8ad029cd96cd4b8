//! The Grafana dashboards (`dashboards/`) and the Prometheus alert rules (`deploy/prometheus/`): the dashboards
//! satisfy Grafana's own schema (`@grafana/schema`, type-checked by TypeScript), the rules pass `promtool`'s check
//! and unit tests, and every dashboard query returns data from a real Prometheus scraping the demo collector.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpucost_e2e::prometheus::{self, Dashboard, Prometheus, repo_root, substitute};
use gpucost_e2e::{Moto, Proc, bin, free_port, installed_peer};

/// A folder inside the `@grafana/schema` install (so that node and tsc find its `node_modules`), removed when
/// dropped.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// tsc's output with, under each `gen/<file>.ts(<line>,<col>): error`, the offending source line and the panel whose
/// literal holds it (check.mjs writes a `// <dashboard>: panel <id> "<title>"` comment above each panel's literal;
/// lines above the first are in the whole-dashboard literal).
fn name_panels(tsc_output: &str, run_dir: &Path) -> String {
    let mut out = String::new();
    for line in tsc_output.lines() {
        out.push_str(line);
        out.push('\n');
        let Some((file, rest)) = line.split_once(".ts(") else { continue };
        let Some(n) = rest.split(',').next().and_then(|n| n.parse::<usize>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(run_dir.join(format!("{file}.ts"))) else { continue };
        let lines: Vec<&str> = text.lines().take(n).collect();
        let source = lines.last().map_or("", |l| l.trim());
        let panel = lines.iter().rev().find(|l| l.starts_with("// ") && l.contains(": panel ")).map(|l| &l[3..]);
        out.push_str(&format!(
            "    > {source}\n    in {}\n",
            panel.unwrap_or("the whole-dashboard literal (templating, links, panels as a list, ...)")
        ));
    }
    out
}

#[test]
fn dashboards_satisfy_grafanas_schema_and_use_the_datasource_variable() {
    let Some(home) = installed_peer(
        "@grafana/schema and TypeScript",
        "GPUCOST_GRAFANA_SCHEMA_DIR",
        "grafana-schema",
        "node_modules/@grafana/schema",
    ) else {
        return;
    };
    let src = repo_root().join("tests/grafana");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let run = RunDir(home.join(format!("run-{}-{nanos}", std::process::id())));
    std::fs::create_dir_all(&run.0).expect("run folder");
    for f in ["schema.ts", "check.mjs", "tsconfig.json"] {
        std::fs::copy(src.join(f), run.0.join(f)).unwrap_or_else(|e| panic!("{}: {e}", src.join(f).display()));
    }

    // The lint (datasource variable everywhere, an expr in every query, ...), which also writes the literals.
    let lint = Command::new("node")
        .arg("check.mjs")
        .arg(repo_root().join("dashboards"))
        .arg("gen")
        .current_dir(&run.0)
        .output()
        .expect("run node");
    let lint_text = format!("{}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
    assert!(lint.status.success(), "tests/grafana/check.mjs:\n{lint_text}");

    // Grafana's types.
    let tsc = Command::new("node")
        .arg(home.join("node_modules/typescript/bin/tsc"))
        .args(["-p", "tsconfig.json", "--pretty", "false"])
        .current_dir(&run.0)
        .output()
        .expect("run tsc");
    let tsc_text = format!("{}{}", String::from_utf8_lossy(&tsc.stdout), String::from_utf8_lossy(&tsc.stderr));
    assert!(
        tsc.status.success(),
        "the dashboards do not satisfy @grafana/schema (tests/grafana/schema.ts):\n{}",
        name_panels(&tsc_text, &run.0)
    );
    let generated = std::fs::read_dir(run.0.join("gen")).expect("gen folder").count();
    assert_eq!(generated, Dashboard::all().len(), "one type-checked module per dashboard");
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = prometheus::promtool() else {
        return;
    };
    let dir = repo_root().join("deploy/prometheus");
    for args in [["check", "rules", "gpucost-rules.yml"], ["test", "rules", "gpucost-rules.test.yml"]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert the rules file defines is exercised by the unit tests.
    let rules = std::fs::read_to_string(dir.join("gpucost-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("gpucost-rules.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "gpucost-rules.test.yml does not test {alert}");
    }
}

/// `gpucost-collector demo` on loopback with a small fleet, discovering from the AWS emulator at `aws` (so that
/// the sync metrics exist), its stdout in `dir/demo.out`; returns once it streams live (the backfill is stored).
fn start_demo(dir: &Path, aws: &str) -> (Proc, u16) {
    let (http, grpc) = (free_port(), free_port());
    let out = dir.join("demo.out");
    let child = Command::new(bin("gpucost-collector"))
        .envs([
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .args(["--log-format", "json", "demo", "--backfill", "1d", "--nodes", "4", "--clusters", "2"])
        .args(["--report-interval", "5s", "--sample-interval", "1s", "--budget-eval-interval", "5s"])
        .args(["--aws-discovery", "--aws-endpoint-url", aws])
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--grpc")
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--data-dir")
        .arg(dir.join("demo-data"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("demo stdout file"))
        .stderr(std::fs::File::create(dir.join("demo.log")).expect("demo log file"))
        .spawn()
        .expect("start gpucost-collector demo");
    let mut demo = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(Some(status)) = demo.0.try_wait() {
            panic!(
                "the demo exited ({status}); stdout:\n{}\nlog:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(dir.join("demo.log")).unwrap_or_default()
            );
        }
        if std::fs::read_to_string(&out).unwrap_or_default().contains("streaming live") {
            return (demo, http);
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not finish its backfill within 180 s; stdout:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_dashboard_query_returns_data_from_prometheus_scraping_the_demo() {
    if prometheus::install_dir().is_none() {
        return;
    }
    let Some(moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (_demo, http) = start_demo(dir.path(), &moto.url());
    let backfilled = started.elapsed();

    let rules = repo_root().join("deploy/prometheus/gpucost-rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: gpucost-collector\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n",
        rules.display()
    );
    let prom = Prometheus::start(dir.path(), &config).expect("installed: checked above");
    // A few scrapes, so that rate() over 1m has samples; and a live report or two (every 5 s) in between.
    prom.wait_for(r#"count_over_time(up{job="gpucost-collector"}[1m]) >= 8"#, Duration::from_secs(90));
    let up = prom.query(r#"up{job="gpucost-collector"}"#).unwrap();
    assert_eq!(
        up[0]["value"][1],
        "1",
        "Prometheus cannot scrape the collector: {up:?}; targets: {:?}",
        prom.api("targets", &[])
    );

    // Every panel query, with every label variable on "All"; those without data retried for 20 s, in case a series
    // appears only after a later live report or budget evaluation.
    let dashboards = Dashboard::all();
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    for d in &dashboards {
        let vars = d.label_variables();
        for q in d.queries() {
            match substitute(&q.expr, &vars) {
                Ok(expr) => pending.push((q, expr)),
                Err(e) => failures.push(format!("{q}\n    {e}")),
            }
        }
    }
    let total = pending.len();
    assert!(total > 0, "no queries in the dashboards");
    let scraping = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first_try = None;
    let mut last: Vec<(String, String)>;
    loop {
        last = Vec::new();
        pending.retain(|(q, expr)| match prom.query(expr) {
            Ok(result) if !result.is_empty() => false,
            Ok(_) => {
                last.push((format!("{q}"), format!("returned no data: {expr}")));
                true
            }
            Err(e) => {
                last.push((format!("{q}"), format!("failed: {e}: {expr}")));
                true
            }
        });
        first_try.get_or_insert(total - pending.len());
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    failures.extend(last.iter().map(|(q, why)| format!("{q}\n    {why}")));

    // The template variables' dropdowns.
    for d in &dashboards {
        for (name, selector, label) in d.label_values_queries() {
            let selector = substitute(&selector, &d.label_variables()).unwrap_or_else(|e| panic!("{}: {e}", d.file));
            match prom.api(&format!("label/{label}/values"), &[("match[]", &selector)]) {
                Ok(values) if values.as_array().is_some_and(|v| !v.is_empty()) => {}
                answer => failures.push(format!(
                    "{}: variable {name}: label_values({selector}, {label}) has no values: {answer:?}",
                    d.file
                )),
            }
        }
    }

    // The metrics the failing queries read that Prometheus has no series of at all.
    let mut missing: Vec<String> = Vec::new();
    for (q, _) in &pending {
        for name in prometheus::metric_names(&q.expr) {
            if !missing.contains(&name)
                && prom.query(&format!("count({{__name__=\"{name}\"}})")).map(|r| r.is_empty()).unwrap_or(true)
            {
                missing.push(name);
            }
        }
    }

    // The alert rules load and evaluate against the real series without errors.
    let groups = prom.api("rules", &[]).expect("GET /api/v1/rules");
    let mut rules_seen = 0;
    for g in groups["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            rules_seen += 1;
            if r["health"] == "err" {
                failures.push(format!("rule {} ({}): {}", r["name"], r["query"], r["lastError"]));
            }
        }
    }
    assert!(rules_seen >= 5, "Prometheus loaded {rules_seen} rules from {}: {groups}", rules.display());

    eprintln!(
        "demo backfilled after {:.1} s, Prometheus had scraped it 8 times after {:.1} s; {} of {total} dashboard queries \
         returned data at the first try, {} in the end; {:.1} s in all",
        backfilled.as_secs_f64(),
        scraping.as_secs_f64(),
        first_try.unwrap_or(0),
        total - pending.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} dashboard queries (and variables/rules) failed against Prometheus scraping the demo collector.\nMetrics with no series at all: {}\n\n{}",
        failures.len(),
        if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
        failures.join("\n")
    );
}

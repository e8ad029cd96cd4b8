//! A real Prometheus server and `promtool` (Debian's `prometheus` package, unpacked by `scripts/test` into
//! `~/.cache/gpucost/prometheus`), and the Grafana dashboards' queries: what `tests/tests/dashboards.rs` runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Proc, free_port, installed_peer};

/// The unpacked package (`usr/bin/prometheus`, `usr/bin/promtool`, `usr/share/prometheus/web`): `$GPUCOST_PROMETHEUS_DIR`,
/// else `~/.cache/gpucost/prometheus`. `None` when it is not installed — a failure when `CI=true`.
pub fn install_dir() -> Option<PathBuf> {
    installed_peer("Prometheus", "GPUCOST_PROMETHEUS_DIR", "prometheus", "usr/bin/prometheus")
}

/// `promtool` from the unpacked package; `None` when it is not installed — a failure when `CI=true`.
pub fn promtool() -> Option<PathBuf> {
    Some(install_dir()?.join("usr/bin/promtool"))
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the repository").to_path_buf()
}

/// A Prometheus server on a loopback port, with its storage and log in a test's folder; killed when dropped.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (a prometheus.yml's text) and waits until it is ready. `None` when it is not
    /// installed — a failure when `CI=true`.
    pub fn start(dir: &Path, config: &str) -> Option<Self> {
        let home = install_dir()?;
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("prometheus.yml");
        let log = dir.join("prometheus.log");
        let log_file = || std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("prometheus log");
        let port = free_port();
        let child = Command::new(home.join("usr/bin/prometheus"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's build reads its web UI from /usr/share/prometheus/web by default: use the unpacked copy.
            .arg(format!("--web.local-assets={}", home.join("usr/share/prometheus/web").display()))
            .arg(format!("--web.console.templates={}", home.join("etc/prometheus/consoles").display()))
            .arg(format!("--web.console.libraries={}", home.join("etc/prometheus/console_libraries").display()))
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file())
            .spawn()
            .expect("start prometheus");
        let mut p = Self { proc: Proc(child), port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = p.proc.0.try_wait() {
                panic!("prometheus exited ({status}) before it became ready; its log:\n{}", p.log_text());
            }
            if ureq::get(&format!("{}/-/ready", p.url())).call().is_ok_and(|r| r.status() == 200) {
                return Some(p);
            }
            assert!(Instant::now() < deadline, "Prometheus not ready within 60 s; its log:\n{}", p.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params` → the answer's `data`, or Prometheus' error (`errorType: error`).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let mut req = ureq::get(&format!("{}/api/v1/{path}", self.url()))
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let resp = req.call().map_err(|e| format!("GET /api/v1/{path}: {e}"))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value =
            resp.into_body().read_json().map_err(|e| format!("GET /api/v1/{path}: HTTP {status}, not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("HTTP {status}, {}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query (now) → its result: a vector's samples, or a scalar as a one-element list.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(match &data["result"] {
            serde_json::Value::Array(samples) => samples.clone(),
            serde_json::Value::Null => vec![],
            scalar => vec![scalar.clone()],
        })
    }

    /// Waits until the instant query `expr` returns something, for at most `limit`.
    pub fn wait_for(&self, expr: &str, limit: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            match self.query(expr) {
                Ok(result) if !result.is_empty() => return result,
                answer => assert!(
                    Instant::now() < deadline,
                    "Prometheus: `{expr}` returned nothing within {limit:?} (last answer {answer:?}); targets: {}",
                    self.api("targets", &[]).map(|t| t.to_string()).unwrap_or_else(|e| e)
                ),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// One query of one panel of one dashboard.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    /// The expression as the dashboard holds it, with `$variables`.
    pub expr: String,
}

impl std::fmt::Display for PanelQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: panel \"{}\", query {}: {}", self.dashboard, self.panel, self.ref_id, self.expr)
    }
}

/// A dashboard JSON file in `dashboards/`.
pub struct Dashboard {
    pub file: String,
    pub json: serde_json::Value,
}

impl Dashboard {
    /// Every `dashboards/*.json`, by file name.
    pub fn all() -> Vec<Self> {
        let dir = repo_root().join("dashboards");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dashboards entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no dashboards in {}", dir.display());
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).expect("dashboard file");
                let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                Self { file: path.file_name().unwrap().to_string_lossy().into_owned(), json }
            })
            .collect()
    }

    /// Every panel, those inside collapsed rows too.
    pub fn panels(&self) -> Vec<&serde_json::Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().into_iter().flatten() {
            out.push(p);
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out
    }

    /// Every panel query with an `expr`.
    pub fn queries(&self) -> Vec<PanelQuery> {
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(PanelQuery {
                        dashboard: self.file.clone(),
                        panel: format!("{} (id {})", p["title"].as_str().unwrap_or(""), p["id"]),
                        ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                        expr: expr.to_string(),
                    });
                }
            }
        }
        out
    }

    /// The template variables that choose label values (`query`, `custom`, `textbox`, ...), by name: everything
    /// but the data source and built-ins.
    pub fn label_variables(&self) -> Vec<String> {
        self.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] != "datasource" && v["type"] != "interval" && v["type"] != "constant")
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The `label_values(selector, label)` queries of the query variables: (name, selector, label).
    pub fn label_values_queries(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for v in self.json["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let query = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default().trim();
            let name = v["name"].as_str().unwrap_or("?").to_string();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{}: variable {name}: not label_values(...): {query}", self.file));
            let (selector, label) = inner.rsplit_once(',').unwrap_or(("", inner));
            out.push((name, selector.trim().to_string(), label.trim().to_string()));
        }
        out
    }
}

/// `expr` as Grafana would send it with every label variable on "All" (`.*`, only valid after `=~`/`!~`),
/// `$__rate_interval` 1m and `$__range` 1h; `Err` naming a variable used any other way, or left over.
pub fn substitute(expr: &str, label_variables: &[String]) -> Result<String, String> {
    let builtins = [
        ("__rate_interval", "1m"),
        ("__interval_ms", "15000"),
        ("__interval", "15s"),
        ("__range_s", "3600"),
        ("__range_ms", "3600000"),
        ("__range", "1h"),
    ];
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            // ${var:format}: the format does not matter for "All".
            (braced[..end].split(':').next().unwrap_or(""), end + 2)
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if let Some((_, value)) = builtins.iter().find(|(b, _)| *b == name) {
            out.push_str(value);
        } else if label_variables.iter().any(|v| v == name) {
            if !(out.ends_with("=~\"") || out.ends_with("!~\"")) {
                return Err(format!("${name} is not used as a regex matcher (label=~\"${name}\"): {expr}"));
            }
            out.push_str(".*");
        } else {
            return Err(format!("${name} is neither a template variable of the dashboard nor a built-in: {expr}"));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `gpucost_*` metric names an expression reads (histogram suffixes kept).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("gpucost_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let after = &tail[end..];
        // A metric is followed by a selector, a range, an operator or the end; a label is followed by `=`.
        if !after.trim_start().starts_with(['=', '!']) && !names.contains(&name) {
            names.push(name);
        }
        rest = &tail[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_variables_and_builtins() {
        let vars = vec!["cluster".to_string(), "team".to_string()];
        assert_eq!(
            substitute(r#"sum(rate(x{cluster=~"$cluster", team=~"${team}"}[$__rate_interval])) + y[$__range]"#, &vars)
                .unwrap(),
            r#"sum(rate(x{cluster=~".*", team=~".*"}[1m])) + y[1h]"#
        );
        assert!(substitute(r#"x{cluster="$cluster"}"#, &vars).unwrap_err().contains("regex matcher"));
        assert!(substitute(r#"x{node=~"$node"}"#, &vars).unwrap_err().contains("$node"));
    }

    #[test]
    fn finds_metric_names_not_labels() {
        assert_eq!(
            metric_names(r#"sum(gpucost_a_total{gpucost_label="x"}) / gpucost_b_bucket"#),
            vec!["gpucost_a_total".to_string(), "gpucost_b_bucket".to_string()]
        );
    }
}

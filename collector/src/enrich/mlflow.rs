//! MLflow: checks the runs, experiments, registered models and model versions workloads name against the
//! tracking server, and writes their GPU cost back onto them as tags (`gpucost.cost_usd`,
//! `gpucost.idle_cost_usd`, `gpucost.gpu_hours`, `gpucost.gpu_seconds`), so ML engineers see it next to the
//! run and the model version. A model version also gets the cost of the run that trained it
//! (`gpucost.training_cost_usd`, `gpucost.training_gpu_hours`, `gpucost.training_gpu_seconds`), found with
//! `model-versions/search` by `run_id`. Writes are idempotent (the same tags with the current values) and
//! skipped when nothing changed since the last write.
//!
//! Every figure is written from the ledger's integers, so that finance can add tags up: dollars to the
//! micro-dollar (exact), seconds to the nanosecond (exact: the runs' `gpu_seconds` sum to the API's
//! `held_ns`), hours to nine decimals (3.6 µs, rounded; a sum of n tags is within n × 0.5e-9 h of the API's).
//!
//! REST API 2.0 (`/api/2.0/mlflow/…`), as served by MLflow 2.x and 3.x: `runs/get`, `experiments/get`,
//! `registered-models/get`, `model-versions/get`, `model-versions/search` (GET); `runs/set-tag`,
//! `experiments/set-experiment-tag`, `registered-models/set-tag`, `model-versions/set-tag` (POST, JSON).
//! Basic auth (the OSS `basic-auth` app, `MLFLOW_TRACKING_USERNAME/PASSWORD`) or a bearer token
//! (`MLFLOW_TRACKING_TOKEN`, as managed MLflow servers take).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

#[derive(Debug, thiserror::Error)]
#[error("MLflow at {base}: {call}: {reason}")]
pub struct MlflowError {
    pub base: String,
    pub call: String,
    pub reason: String,
    /// MLflow could not be reached (connection refused, timeout): the rest of a pass is skipped.
    pub unreachable: bool,
}

pub struct MlflowClient {
    base: String,
    auth: Option<Auth>,
    agent: ureq::Agent,
}

/// Tags as gpucost writes them: key and value.
pub type Tags = Vec<(&'static str, String)>;

/// The tags gpucost writes on a run, an experiment, a registered model or a model version.
pub fn cost_tags(total_micros: u128, idle_micros: u128, held_ns: u128) -> Tags {
    vec![
        ("gpucost.cost_usd", gpucost_types::money::usd(total_micros)),
        ("gpucost.idle_cost_usd", gpucost_types::money::usd(idle_micros)),
        ("gpucost.gpu_hours", gpu_hours(held_ns)),
        ("gpucost.gpu_seconds", gpu_seconds(held_ns)),
    ]
}

/// The tags a model version gets from the run that trained it.
pub fn training_tags(run: &str, total_micros: u128, held_ns: u128) -> Tags {
    vec![
        ("gpucost.training_cost_usd", gpucost_types::money::usd(total_micros)),
        ("gpucost.training_gpu_hours", gpu_hours(held_ns)),
        ("gpucost.training_gpu_seconds", gpu_seconds(held_ns)),
        ("gpucost.training_run_id", run.to_string()),
    ]
}

/// Nanoseconds in a billionth of an hour.
const NS_PER_NANO_HOUR: u128 = 3_600;

/// GPU-hours to nine decimals, rounded half up from the integer nanoseconds (no float on the way).
fn gpu_hours(held_ns: u128) -> String {
    let nano_hours = (held_ns + NS_PER_NANO_HOUR / 2) / NS_PER_NANO_HOUR;
    format!("{}.{:09}", nano_hours / 1_000_000_000, nano_hours % 1_000_000_000)
}

/// GPU-seconds to the nanosecond: exact.
fn gpu_seconds(held_ns: u128) -> String {
    format!("{}.{:09}", held_ns / 1_000_000_000, held_ns % 1_000_000_000)
}

/// At most this many pages of one search are read.
const MAX_PAGES: usize = 100;

impl MlflowClient {
    pub fn new(base: &str, auth: Option<Auth>, timeout: Duration) -> Self {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        Self { base: base.trim_end_matches('/').to_string(), auth, agent }
    }

    fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            None => req,
            Some(Auth::Bearer(t)) => req.header("Authorization", &format!("Bearer {t}")),
            Some(Auth::Basic { user, password }) => req.header("Authorization", &basic_auth(user, password)),
        }
    }

    fn err(&self, call: &str, reason: impl Into<String>, unreachable: bool) -> MlflowError {
        MlflowError { base: self.base.clone(), call: call.to_string(), reason: reason.into(), unreachable }
    }

    /// The error for a non-200 answer; MLflow's `{error_code, message}` when it sent one.
    fn status_err(&self, call: &str, status: u16, body: &Value) -> MlflowError {
        let message = body["message"].as_str().or(body["error_code"].as_str()).unwrap_or("(no message)");
        let hint = match status {
            401 => " (check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)",
            403 => " (the MLflow user lacks permission on this resource)",
            _ => "",
        };
        self.err(call, format!("HTTP {status}: {message}{hint}"), false)
    }

    /// GET; `Ok(None)` when MLflow answers that the resource does not exist.
    fn get(&self, call: &str, query: &[(&str, &str)]) -> Result<Option<Value>, MlflowError> {
        let mut req = self.authorize(self.agent.get(&format!("{}/api/2.0/mlflow/{call}", self.base)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| self.err(call, e.to_string(), true))?;
        let status = resp.status().as_u16();
        let body: Value = match resp.body_mut().read_json() {
            Ok(v) => v,
            Err(_) if status != 200 => Value::Null,
            Err(e) => return Err(self.err(call, format!("answer is not JSON: {e}"), false)),
        };
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ if body["error_code"] == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            _ => Err(self.status_err(call, status, &body)),
        }
    }

    fn post(&self, call: &str, body: Value) -> Result<(), MlflowError> {
        let req = self
            .authorize(self.agent.post(&format!("{}/api/2.0/mlflow/{call}", self.base)))
            .header("Content-Type", "application/json");
        let mut resp = req.send(body.to_string()).map_err(|e| self.err(call, e.to_string(), true))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        Err(self.status_err(call, status, &body))
    }

    /// The run's experiment id, or `None` when MLflow has no such run.
    pub fn run_experiment(&self, run_id: &str) -> Result<Option<String>, MlflowError> {
        Ok(self
            .get("runs/get", &[("run_id", run_id)])?
            .map(|v| v["run"]["info"]["experiment_id"].as_str().unwrap_or_default().to_string()))
    }

    pub fn experiment_exists(&self, id: &str) -> Result<bool, MlflowError> {
        Ok(self.get("experiments/get", &[("experiment_id", id)])?.is_some())
    }

    pub fn registered_model_exists(&self, name: &str) -> Result<bool, MlflowError> {
        Ok(self.get("registered-models/get", &[("name", name)])?.is_some())
    }

    pub fn model_version_exists(&self, name: &str, version: &str) -> Result<bool, MlflowError> {
        Ok(self.get("model-versions/get", &[("name", name), ("version", version)])?.is_some())
    }

    /// The model versions (name, version) a run produced: `model-versions/search` with `run_id='…'`, all
    /// pages (at most [`MAX_PAGES`]).
    pub fn versions_of_run(&self, run_id: &str) -> Result<Vec<(String, String)>, MlflowError> {
        let filter = format!("run_id='{}'", run_id.replace('\'', ""));
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("filter", filter.as_str())];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let Some(page) = self.get("model-versions/search", &query)? else { break };
            for v in page["model_versions"].as_array().into_iter().flatten() {
                if let (Some(name), Some(version)) = (v["name"].as_str(), v["version"].as_str()) {
                    out.push((name.to_string(), version.to_string()));
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    pub fn set_run_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("runs/set-tag", json!({ "run_id": run_id, "key": key, "value": value }))
    }

    pub fn set_experiment_tag(&self, id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("experiments/set-experiment-tag", json!({ "experiment_id": id, "key": key, "value": value }))
    }

    pub fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("registered-models/set-tag", json!({ "name": name, "key": key, "value": value }))
    }

    pub fn set_model_version_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("model-versions/set-tag", json!({ "name": name, "version": version, "key": key, "value": value }))
    }
}

/// The `Authorization` header value of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(&format!("{user}:{password}")))
}

/// Standard base64, for basic auth.
fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What one write-back pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Targets whose tags were written (changed since the last pass).
    pub written: usize,
    /// Targets MLflow refused (logged each); they are tried again next pass.
    pub failed: usize,
}

/// Cost totals of one target, in micro-dollars and nanoseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Total {
    total: u128,
    idle: u128,
    held_ns: u128,
}

impl Total {
    fn add(&mut self, row: &gpucost_ledger::CostRow) {
        self.total += row.used + row.idle;
        self.idle += row.idle;
        self.held_ns += row.held_ns;
    }
}

/// One write-back pass: the total cost of every run, experiment, registered model and model version the
/// ledger knows, written onto the ones MLflow has. A target MLflow refuses is logged and skipped; the pass
/// stops early only when MLflow cannot be reached. `Err` when the ledger cannot be read or MLflow is down.
pub fn write_back(
    ledger: &dyn gpucost_ledger::Ledger,
    client: &MlflowClient,
    state: &mut WriteBack,
) -> Result<PassSummary, String> {
    use gpucost_ledger::{CostQuery, Dimension};
    use gpucost_types::policy::Policy;
    let all = |group_by: Vec<Dimension>| {
        let to = gpucost_types::clock::now_ns() / ledger.bucket_ns() * ledger.bucket_ns() + ledger.bucket_ns();
        ledger
            .costs(&CostQuery { from_ns: 0, to_ns: to, group_by, filters: vec![], policy: Policy::Hybrid })
            .map(|r| r.rows)
            .map_err(|e| format!("reading the ledger: {e}"))
    };
    let mut pass = Pass { state, summary: PassSummary::default() };

    // Runs, and through them their experiments and the model versions they trained.
    let mut experiments: BTreeMap<String, Total> = BTreeMap::new();
    let mut runs: BTreeMap<String, Total> = BTreeMap::new();
    for row in all(vec![Dimension::Run, Dimension::Experiment])? {
        let (run, labelled) = (&row.group[0], &row.group[1]);
        if run.is_empty() {
            if !labelled.is_empty() {
                experiments.entry(labelled.clone()).or_default().add(&row);
            }
            continue;
        }
        runs.entry(run.clone()).or_default().add(&row);
        // MLflow's word on the run's experiment wins over the workload's MLFLOW_EXPERIMENT_ID.
        let key = format!("run:{run}");
        match pass.state.run_experiment(&key, || client.run_experiment(run)).map_err(|e| e.to_string())? {
            Some(exp) => {
                if !labelled.is_empty() && *labelled != exp {
                    tracing::warn!(run, labelled, mlflow = exp, "workload names another experiment than MLflow");
                }
                experiments.entry(if exp.is_empty() { labelled.clone() } else { exp }).or_default().add(&row);
            }
            None if !labelled.is_empty() => experiments.entry(labelled.clone()).or_default().add(&row),
            None => {}
        }
    }
    for (run, t) in &runs {
        if pass.state.runs.get(&format!("run:{run}")).is_some_and(Option::is_some) {
            pass.write(&format!("run:{run}"), cost_tags(t.total, t.idle, t.held_ns), |k, v| {
                client.set_run_tag(run, k, v)
            })?;
            match client.versions_of_run(run) {
                Ok(versions) => {
                    for (model, version) in versions {
                        pass.write(
                            &format!("trained:{model}/{version}"),
                            training_tags(run, t.total, t.held_ns),
                            |k, v| client.set_model_version_tag(&model, &version, k, v),
                        )?;
                    }
                }
                Err(e) => pass.refused(e)?,
            }
        }
    }
    for (exp, t) in &experiments {
        let key = format!("experiment:{exp}");
        if pass.exists(&key, || client.experiment_exists(exp))? {
            pass.write(&key, cost_tags(t.total, t.idle, t.held_ns), |k, v| client.set_experiment_tag(exp, k, v))?;
        }
    }

    // Registered models (every version's serving cost together) and their versions.
    let mut models: BTreeMap<String, Total> = BTreeMap::new();
    for row in all(vec![Dimension::Model, Dimension::ModelVersion])? {
        let (model, version) = (&row.group[0], &row.group[1]);
        if model.is_empty() {
            continue;
        }
        models.entry(model.clone()).or_default().add(&row);
        let key = format!("version:{model}/{version}");
        if version.is_empty() || !pass.exists(&key, || client.model_version_exists(model, version))? {
            continue;
        }
        let tags = cost_tags(row.used + row.idle, row.idle, row.held_ns);
        pass.write(&key, tags, |k, v| client.set_model_version_tag(model, version, k, v))?;
    }
    for (model, t) in &models {
        let key = format!("model:{model}");
        if pass.exists(&key, || client.registered_model_exists(model))? {
            let tags = cost_tags(t.total, t.idle, t.held_ns);
            pass.write(&key, tags, |k, v| client.set_registered_model_tag(model, k, v))?;
        }
    }
    Ok(pass.summary)
}

/// One pass in progress: MLflow refusals are counted and logged; MLflow being down ends the pass.
struct Pass<'a> {
    state: &'a mut WriteBack,
    summary: PassSummary,
}

impl Pass<'_> {
    fn refused(&mut self, e: MlflowError) -> Result<(), String> {
        if e.unreachable {
            return Err(e.to_string());
        }
        tracing::warn!(error = %e, "MLflow refused a cost write-back; trying again next pass");
        self.summary.failed += 1;
        Ok(())
    }

    fn exists(&mut self, key: &str, ask: impl FnOnce() -> Result<bool, MlflowError>) -> Result<bool, String> {
        match self.state.exists(key, ask) {
            Ok(known) => Ok(known),
            Err(e) => self.refused(e).map(|()| false),
        }
    }

    fn write(
        &mut self,
        key: &str,
        tags: Tags,
        set: impl Fn(&str, &str) -> Result<(), MlflowError>,
    ) -> Result<(), String> {
        match self.state.write(key, tags, set) {
            Ok(wrote) => {
                self.summary.written += usize::from(wrote);
                Ok(())
            }
            Err(e) => self.refused(e),
        }
    }
}

/// What was last written per target, so an unchanged cost is not written again, and what MLflow has.
#[derive(Default)]
pub struct WriteBack {
    written: HashMap<String, Tags>,
    /// Targets MLflow knows (checked once); the ones it did not are checked again next pass.
    known: std::collections::HashSet<String>,
    /// Runs MLflow knows, with their experiment id (`None`: not in MLflow when last asked).
    runs: HashMap<String, Option<String>>,
}

impl WriteBack {
    /// Whether MLflow has `target`, asking it only until it has said yes.
    fn exists(&mut self, target: &str, ask: impl FnOnce() -> Result<bool, MlflowError>) -> Result<bool, MlflowError> {
        if self.known.contains(target) {
            return Ok(true);
        }
        let known = ask()?;
        if known {
            self.known.insert(target.to_string());
        } else {
            tracing::debug!(target, "not in MLflow; no cost written");
        }
        Ok(known)
    }

    /// The experiment of a run MLflow has, asking until it has said yes; `None` when it has no such run.
    fn run_experiment(
        &mut self,
        key: &str,
        ask: impl FnOnce() -> Result<Option<String>, MlflowError>,
    ) -> Result<Option<String>, MlflowError> {
        if let Some(Some(exp)) = self.runs.get(key) {
            return Ok(Some(exp.clone()));
        }
        let found = match ask() {
            Ok(found) => found,
            Err(e) if !e.unreachable => {
                tracing::warn!(error = %e, run = key, "cannot check the run in MLflow");
                None
            }
            Err(e) => return Err(e),
        };
        self.runs.insert(key.to_string(), found.clone());
        Ok(found)
    }

    /// Writes the tags of `target` if they changed; returns whether it wrote.
    pub fn write(
        &mut self,
        target: &str,
        tags: Tags,
        set: impl Fn(&str, &str) -> Result<(), MlflowError>,
    ) -> Result<bool, MlflowError> {
        if self.written.get(target) == Some(&tags) {
            return Ok(false);
        }
        for (k, v) in &tags {
            set(k, v)?;
        }
        self.written.insert(target.to_string(), tags);
        Ok(true)
    }
}

/// The MLflow tracking server GPU cost is written back to, and how often.
#[derive(Debug, Clone)]
pub struct MlflowConfig {
    pub url: String,
    pub auth: Option<Auth>,
    pub every: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_dollars_idle_dollars_gpu_hours_and_exact_gpu_seconds() {
        let t = cost_tags(12_345_678, 2_000_000, 5_400_000_000_000);
        assert_eq!(t[0], ("gpucost.cost_usd", "12.345678".to_string()));
        assert_eq!(t[1], ("gpucost.idle_cost_usd", "2.000000".to_string()));
        assert_eq!(t[2], ("gpucost.gpu_hours", "1.500000000".to_string()));
        assert_eq!(t[3], ("gpucost.gpu_seconds", "5400.000000000".to_string()));
        // 285.12 s held: 0.0792 h, which four decimals wrote; the nine keep what four lost.
        let odd = cost_tags(0, 0, 285_123_456_789);
        assert_eq!((odd[2].1.as_str(), odd[3].1.as_str()), ("0.079200960", "285.123456789"));
        assert_eq!(gpu_hours(1_799), "0.000000000");
        assert_eq!(gpu_hours(1_800), "0.000000001", "half a billionth of an hour rounds up");
        let trained = training_tags("r1", 1, 7_200_000_000_001);
        assert_eq!(trained[1], ("gpucost.training_gpu_hours", "2.000000000".to_string()));
        assert_eq!(trained[2], ("gpucost.training_gpu_seconds", "7200.000000001".to_string()));
    }

    /// A tag's decimal as an integer count of its last place.
    fn units(tag: &str) -> u128 {
        tag.replace('.', "").parse().unwrap()
    }

    #[test]
    fn the_runs_tags_add_up_to_the_held_time_the_api_gives() {
        // Runs holding odd amounts of GPU time (a 15-second interval's shares, and whole hours).
        let runs: Vec<u128> =
            (1..=1_000u128).map(|i| i * 3_600_000_000_000 / 7 + i * 15_000_000_000 / 11 + i).collect();
        let held: u128 = runs.iter().sum();
        let seconds: u128 = runs.iter().map(|&ns| units(&gpu_seconds(ns))).sum();
        assert_eq!(seconds, held, "the seconds add up to the nanosecond");
        // Each tag is within half a billionth of an hour of its run's time, so n tags within n halves of the
        // API's hours.
        let hours: f64 = runs.iter().map(|&ns| gpu_hours(ns).parse::<f64>().unwrap()).sum();
        let api_hours = held as f64 / 3.6e12;
        let bound = runs.len() as f64 * 0.5e-9 + 1e-9;
        assert!((hours - api_hours).abs() <= bound, "{hours} h in tags vs {api_hours} h held");
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(base64("a"), "YQ==");
    }

    #[test]
    fn an_unchanged_cost_is_not_written_again() {
        let mut wb = WriteBack::default();
        let writes = std::cell::Cell::new(0);
        let set = |_: &str, _: &str| {
            writes.set(writes.get() + 1);
            Ok(())
        };
        assert!(wb.write("run-1", cost_tags(1, 0, 0), set).unwrap());
        assert!(!wb.write("run-1", cost_tags(1, 0, 0), set).unwrap());
        assert!(wb.write("run-1", cost_tags(2, 0, 0), set).unwrap());
        assert_eq!(writes.get(), 8, "four tags, written twice");
    }

    /// Serves one HTTP request on a loopback port with `answer`, and hands back what the client sent.
    fn one_request(status: &str, answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_string();
        let seen = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap();
            let body = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            s.write_all(body.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (url, seen)
    }

    #[test]
    fn a_bearer_token_is_sent_as_managed_mlflow_servers_expect() {
        let (url, seen) = one_request("200 OK", r#"{"run":{"info":{"experiment_id":"7"}}}"#);
        let client = MlflowClient::new(&url, Some(Auth::Bearer("tok-123".into())), Duration::from_secs(5));
        assert_eq!(client.run_experiment("abc").unwrap().as_deref(), Some("7"));
        let request = seen.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /api/2.0/mlflow/runs/get?run_id=abc "), "{request}");
        assert!(request.contains("authorization: bearer tok-123\r\n"), "{request}");
    }

    #[test]
    fn a_refusal_says_which_call_and_why_and_is_not_mistaken_for_an_outage() {
        let (url, _seen) =
            one_request("403 Forbidden", r#"{"error_code":"PERMISSION_DENIED","message":"Permission denied for run"}"#);
        let client = MlflowClient::new(&url, None, Duration::from_secs(5));
        let e = client.set_run_tag("abc", "k", "v").unwrap_err();
        assert!(!e.unreachable);
        let text = e.to_string();
        assert!(text.contains("runs/set-tag") && text.contains("HTTP 403: Permission denied for run"), "{text}");
        let down = MlflowClient::new("http://127.0.0.1:1", None, Duration::from_secs(5));
        assert!(down.run_experiment("abc").unwrap_err().unreachable);
    }
}

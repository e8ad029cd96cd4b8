//! MLflow: checks that the runs and model versions workloads name exist, and writes their GPU cost back
//! onto them as tags (`gpucost.cost_usd`, `gpucost.gpu_hours`, `gpucost.idle_cost_usd`), so ML engineers see
//! it next to the run and the model version. Writes are idempotent (the same tags with the current values)
//! and skipped when nothing changed since the last write.
//!
//! REST API 2.0 (`/api/2.0/mlflow/…`), as served by MLflow 2.x and 3.x: `runs/get`, `model-versions/get`
//! (GET); `runs/set-tag`, `model-versions/set-tag` (POST, JSON). Basic or bearer auth.

use std::collections::HashMap;
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
}

pub struct MlflowClient {
    base: String,
    auth: Option<Auth>,
    agent: ureq::Agent,
}

/// The tags gpucost writes on a run or a model version.
pub fn cost_tags(total_micros: u128, idle_micros: u128, held_ns: u128) -> [(&'static str, String); 3] {
    [
        ("gpucost.cost_usd", crate::cost::price::usd(total_micros)),
        ("gpucost.idle_cost_usd", crate::cost::price::usd(idle_micros)),
        ("gpucost.gpu_hours", format!("{:.4}", held_ns as f64 / 3.6e12)),
    ]
}

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
            Some(Auth::Basic { user, password }) => {
                req.header("Authorization", &format!("Basic {}", base64(&format!("{user}:{password}"))))
            }
        }
    }

    fn err(&self, call: &str, reason: impl Into<String>) -> MlflowError {
        MlflowError { base: self.base.clone(), call: call.to_string(), reason: reason.into() }
    }

    /// GET; `Ok(None)` when MLflow answers that the resource does not exist.
    fn get(&self, call: &str, query: &[(&str, &str)]) -> Result<Option<Value>, MlflowError> {
        let mut req = self.authorize(self.agent.get(&format!("{}/api/2.0/mlflow/{call}", self.base)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| self.err(call, e.to_string()))?;
        let status = resp.status().as_u16();
        let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ if body["error_code"] == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            _ => Err(self.err(call, format!("HTTP {status}: {}", body["message"].as_str().unwrap_or("(no message)")))),
        }
    }

    fn post(&self, call: &str, body: Value) -> Result<(), MlflowError> {
        let req = self
            .authorize(self.agent.post(&format!("{}/api/2.0/mlflow/{call}", self.base)))
            .header("Content-Type", "application/json");
        let mut resp = req.send(body.to_string()).map_err(|e| self.err(call, e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        Err(self.err(call, format!("HTTP {status}: {}", body["message"].as_str().unwrap_or("(no message)"))))
    }

    pub fn run_exists(&self, run_id: &str) -> Result<bool, MlflowError> {
        Ok(self.get("runs/get", &[("run_id", run_id)])?.is_some())
    }

    pub fn model_version_exists(&self, name: &str, version: &str) -> Result<bool, MlflowError> {
        Ok(self.get("model-versions/get", &[("name", name), ("version", version)])?.is_some())
    }

    pub fn set_run_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("runs/set-tag", json!({ "run_id": run_id, "key": key, "value": value }))
    }

    pub fn set_model_version_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("model-versions/set-tag", json!({ "name": name, "version": version, "key": key, "value": value }))
    }
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

/// One write-back pass: the total cost of every run and model version the ledger knows, written onto the
/// ones MLflow has. Returns how many targets were written.
pub fn write_back(
    ledger: &dyn crate::ledger::Ledger,
    client: &MlflowClient,
    state: &mut WriteBack,
) -> Result<usize, String> {
    use crate::cost::split::Policy;
    use crate::ledger::{CostQuery, Dimension};
    let all = |group_by: Vec<Dimension>| {
        let to = crate::now_ns() / ledger.bucket_ns() * ledger.bucket_ns() + ledger.bucket_ns();
        ledger
            .costs(&CostQuery { from_ns: 0, to_ns: to, group_by, filters: vec![], policy: Policy::Hybrid })
            .map_err(|e| e.to_string())
    };
    let mut written = 0;
    for row in all(vec![Dimension::Run])?.rows {
        let run = &row.group[0];
        if run.is_empty() || !state.exists(run, || client.run_exists(run)) {
            continue;
        }
        let tags = cost_tags(row.used + row.idle, row.idle, row.held_ns);
        written +=
            usize::from(state.write(run, tags, |k, v| client.set_run_tag(run, k, v)).map_err(|e| e.to_string())?);
    }
    for row in all(vec![Dimension::Model, Dimension::ModelVersion])?.rows {
        let (model, version) = (&row.group[0], &row.group[1]);
        let target = format!("{model}/{version}");
        if model.is_empty()
            || version.is_empty()
            || !state.exists(&target, || client.model_version_exists(model, version))
        {
            continue;
        }
        let tags = cost_tags(row.used + row.idle, row.idle, row.held_ns);
        written += usize::from(
            state
                .write(&target, tags, |k, v| client.set_model_version_tag(model, version, k, v))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(written)
}

/// What was last written per target, so an unchanged cost is not written again.
#[derive(Default)]
pub struct WriteBack {
    written: HashMap<String, [(&'static str, String); 3]>,
    /// Targets MLflow knows (checked once), and the ones it did not (checked again next pass).
    known: std::collections::HashSet<String>,
}

impl WriteBack {
    /// Whether MLflow has `target`, asking it only until it has said yes.
    fn exists(&mut self, target: &str, ask: impl FnOnce() -> Result<bool, MlflowError>) -> bool {
        if self.known.contains(target) {
            return true;
        }
        match ask() {
            Ok(true) => {
                self.known.insert(target.to_string());
                true
            }
            Ok(false) => {
                tracing::debug!(target, "not in MLflow; no cost written");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, target, "cannot check MLflow");
                false
            }
        }
    }

    /// Writes the tags of `target` (a run id, or `model/version`) if they changed; returns whether it wrote.
    pub fn write(
        &mut self,
        target: &str,
        tags: [(&'static str, String); 3],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_dollars_idle_dollars_and_gpu_hours() {
        let t = cost_tags(12_345_678, 2_000_000, 5_400_000_000_000);
        assert_eq!(t[0], ("gpucost.cost_usd", "12.345678".to_string()));
        assert_eq!(t[1], ("gpucost.idle_cost_usd", "2.000000".to_string()));
        assert_eq!(t[2], ("gpucost.gpu_hours", "1.5000".to_string()));
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
        assert_eq!(writes.get(), 6);
    }
}

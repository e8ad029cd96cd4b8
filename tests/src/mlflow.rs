//! A real MLflow tracking server on a loopback port.

use super::*;

/// A real MLflow tracking server (PyPI `mlflow`, in the venv `scripts/test` installs) on a loopback port,
/// with a SQLite backend in `dir`; killed when dropped.
pub struct Mlflow {
    pub proc: Proc,
    pub port: u16,
    /// The admin's basic-auth password when the server runs MLflow's `basic-auth` app.
    admin_password: Option<String>,
}

impl Drop for Mlflow {
    /// Kills MLflow's whole process group: killing `mlflow` alone leaves its server and job consumers running.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.proc.0.id())]).status();
    }
}

impl Mlflow {
    pub const ADMIN: &'static str = "admin";

    /// `None` when MLflow is not installed — a failure when `CI=true`.
    pub fn start(dir: &Path) -> Option<Self> {
        Self::start_inner(dir, None)
    }

    /// MLflow with its `basic-auth` app: every call needs the admin's (or another user's) password.
    pub fn start_with_basic_auth(dir: &Path, admin_password: &str) -> Option<Self> {
        Self::start_inner(dir, Some(admin_password.to_string()))
    }

    fn start_inner(dir: &Path, admin_password: Option<String>) -> Option<Self> {
        let bin = installed_peer("MLflow", "GPUCOST_MLFLOW", "mlflow-venv/bin/mlflow", "")?;
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.arg("server");
        if let Some(password) = &admin_password {
            let ini = dir.join("basic_auth.ini");
            std::fs::write(
                &ini,
                format!(
                    "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = {}\nadmin_password = {password}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\nauth_cache_ttl_seconds = 60\n",
                    dir.join("basic_auth.db").display(),
                    Self::ADMIN
                ),
            )
            .unwrap();
            cmd.args(["--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "gpucost-test-secret");
        }
        // `mlflow server` starts uvicorn and job consumers as its children: they get their own process group,
        // which `Drop` kills whole.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.join("artifacts"))
            .stdout(log_file(&dir.join("mlflow.log")))
            .stderr(log_file(&dir.join("mlflow.log")))
            .spawn()
            .expect("start mlflow server");
        let m = Self { proc: Proc(child), port, admin_password };
        let deadline = Instant::now() + Duration::from_secs(120);
        // Any HTTP answer means it serves.
        let answers = || match ureq::get(&format!("{}/health", m.url())).call() {
            Ok(r) => r.status() == 200,
            Err(ureq::Error::StatusCode(401)) => true,
            Err(_) => false,
        };
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "MLflow did not answer /health within 120 s; see {}",
                dir.join("mlflow.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        Some(m)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin's `Authorization` header value, when the server has auth.
    fn authorization(&self) -> Option<String> {
        let password = self.admin_password.as_ref()?;
        Some(gpucost_collector::enrich::mlflow::basic_auth(Self::ADMIN, password))
    }

    /// POST to the REST API 2.0 (`call` like `runs/create`); returns the JSON answer.
    pub fn post(&self, call: &str, body: serde_json::Value) -> serde_json::Value {
        let mut req = ureq::post(&format!("{}/api/2.0/mlflow/{call}", self.url()));
        if let Some(auth) = self.authorization() {
            req = req.header("Authorization", &auth);
        }
        let mut resp = req
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("MLflow {call}: {e}"));
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
        assert_eq!(status, 200, "MLflow {call}: {answer}");
        answer
    }

    /// GET from the REST API 2.0.
    pub fn get(&self, call: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let mut req = ureq::get(&format!("{}/api/2.0/mlflow/{call}", self.url()));
        if let Some(auth) = self.authorization() {
            req = req.header("Authorization", &auth);
        }
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        req.call().unwrap_or_else(|e| panic!("MLflow {call}: {e}")).into_body().read_json().expect("JSON")
    }
}

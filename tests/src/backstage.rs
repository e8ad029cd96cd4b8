//! A real Backstage catalog backend on a loopback port.

use super::*;

/// A real Backstage catalog backend (npm `@backstage/backend-defaults` + `@backstage/plugin-catalog-backend`,
/// installed by `scripts/test` under `~/.cache/gpucost/backstage`) on a loopback port, with an in-memory
/// database, a static access token, and the given catalog files as locations; killed when dropped.
pub struct Backstage {
    pub proc: Proc,
    pub port: u16,
    run_dir: PathBuf,
}

impl Backstage {
    pub const TOKEN: &'static str = "gpucost-test-token";

    /// `None` when the backend is not installed — a failure when `CI=true`. Returns once Backstage serves
    /// `expected` groups, users, systems and components in all.
    pub fn start(log_dir: &Path, catalog_files: &[PathBuf], expected: usize) -> Option<Self> {
        let home = installed_peer(
            "Backstage",
            "GPUCOST_BACKSTAGE_DIR",
            "backstage",
            "node_modules/@backstage/backend-defaults",
        )?;
        let port = free_port();
        // Inside the install folder, so that node finds its node_modules.
        let run_dir = home.join(format!("run-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&run_dir).expect("Backstage run folder");
        std::fs::write(run_dir.join("index.js"), include_str!("../backstage/index.js")).expect("index.js");
        let locations: String =
            catalog_files.iter().map(|f| format!("    - {{ type: file, target: {} }}\n", f.display())).collect();
        let config = format!(
            "backend:\n  baseUrl: http://127.0.0.1:{port}\n  listen: {{ host: 127.0.0.1, port: {port} }}\n  database: {{ client: better-sqlite3, connection: ':memory:' }}\n  auth:\n    externalAccess:\n      - type: static\n        options: {{ token: {}, subject: gpucost-tests }}\ncatalog:\n  rules: [{{ allow: [Component, System, API, Resource, Location, Group, User, Domain] }}]\n  locations:\n{locations}",
            Self::TOKEN
        );
        std::fs::write(run_dir.join("app-config.yaml"), config).expect("app-config.yaml");
        let child = Command::new("node")
            .args(["index.js", "--config", "app-config.yaml"])
            .current_dir(&run_dir)
            .stdout(log_file(&log_dir.join("backstage.log")))
            .stderr(log_file(&log_dir.join("backstage.log")))
            .spawn()
            .expect("start node");
        let b = Self { proc: Proc(child), port, run_dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        // Backstage ingests its locations in the background: ready once every entity of the files is in.
        let count = |kind: &str| {
            ureq::get(&format!("{}/api/catalog/entities/by-query", b.url()))
                .query("filter", format!("kind={kind}"))
                .query("limit", "1000")
                .header("Authorization", &format!("Bearer {}", Self::TOKEN))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_json::<serde_json::Value>().ok())
                .and_then(|v| v["items"].as_array().map(Vec::len))
                .unwrap_or(0)
        };
        loop {
            if ["group", "user", "system", "component"].iter().map(|k| count(k)).sum::<usize>() >= expected {
                return Some(b);
            }
            assert!(
                Instant::now() < deadline,
                "Backstage served no components within 90 s; see {}",
                log_dir.join("backstage.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Backstage {
    fn drop(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

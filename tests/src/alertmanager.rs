//! A real Prometheus Alertmanager on a loopback port.

use super::*;

/// A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, unpacked by `scripts/test`) on a
/// loopback port, clustering off, routing everything to a null receiver; killed when dropped.
pub struct Alertmanager {
    pub proc: Proc,
    pub port: u16,
}

impl Alertmanager {
    /// `None` when it is not installed — a failure when `CI=true`.
    pub fn start(dir: &Path) -> Option<Self> {
        let bin =
            installed_peer("Alertmanager", "GPUCOST_ALERTMANAGER", "alertmanager/usr/bin/prometheus-alertmanager", "")?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n").unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("alertmanager-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(log_file(&dir.join("alertmanager.log")))
            .stderr(log_file(&dir.join("alertmanager.log")))
            .spawn()
            .expect("start alertmanager");
        let am = Self { proc: Proc(child), port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ureq::get(&format!("{}/-/ready", am.url())).call().is_ok_and(|r| r.status() == 200) {
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 30 s; see {}",
                dir.join("alertmanager.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(am)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The alerts Alertmanager holds now (active, silenced, inhibited or unprocessed; resolved ones drop out).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        ureq::get(&format!("{}/api/v2/alerts", self.url()))
            .call()
            .expect("GET /api/v2/alerts")
            .into_body()
            .read_json::<Vec<serde_json::Value>>()
            .expect("alerts JSON")
    }
}

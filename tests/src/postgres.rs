//! A real PostgreSQL server for the tests: `initdb` into a temporary folder, `postgres` on a free port of
//! 127.0.0.1 (no Unix socket outside that folder), stopped and removed when dropped. `scripts/test`
//! installs Debian's `postgresql` package; under `CI=true` a missing server is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the server's programs: the newest `/usr/lib/postgresql/<major>/bin`, or
/// `GPUCOST_PG_BIN`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GPUCOST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    majors.sort();
    majors.pop().map(|(_, p)| p)
}

pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    /// With TLS: the CA that signed the server's certificate (PEM).
    pub ca: Option<PathBuf>,
}

impl Postgres {
    /// Starts a fresh server with a `gpucost` database owned by user `gpucost` (password `gpucost`).
    /// `None` when PostgreSQL is not installed (a failure under CI).
    pub fn start() -> Option<Self> {
        Self::start_with(false, "")
    }

    /// A server that takes TCP connections over TLS only (`hostssl` in pg_hba.conf), with a certificate for
    /// 127.0.0.1 from a CA of the test's own (`ca`).
    pub fn start_tls() -> Option<Self> {
        Self::start_with(true, "")
    }

    /// A TLS-only server whose pg_hba.conf begins with `hba_lines` (the first line that matches a
    /// connection decides how it authenticates).
    pub fn start_tls_with_hba(hba_lines: &str) -> Option<Self> {
        Self::start_with(true, hba_lines)
    }

    fn start_with(tls: bool, hba_lines: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: PostgreSQL is not installed (scripts/test installs Debian's postgresql)"
            );
            eprintln!("PostgreSQL is not installed; skipping");
            return None;
        };
        let dir = tempfile::tempdir().expect("temporary folder");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, "gpucost\n").expect("password file");
        // Debian's server refuses to run as root; run it as the folder's owner when root.
        let as_user = |program: &Path| {
            let mut c = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            c.stdout(Stdio::null());
            c
        };
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the PostgreSQL folder to the postgres user");
        }
        let out = as_user(&bin.join("initdb"))
            .args(["--auth=scram-sha-256", "--username=gpucost", "--encoding=UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut ca = None;
        let mut tls_args: Vec<String> = Vec::new();
        if tls {
            let d = dir.path();
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl").args(args).current_dir(d).output().expect("openssl");
                assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gpucost-test-ca",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]);
            std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ]);
            if is_root() {
                let _ = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(d.join("server.key"))
                    .arg(d.join("server.pem"))
                    .status();
            }
            let _ = Command::new("chmod").arg("600").arg(d.join("server.key")).status();
            let hba = data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            let only_tls: String = text
                .lines()
                .map(|l| if l.starts_with("host ") { l.replacen("host ", "hostssl ", 1) } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&hba, format!("{hba_lines}\n{only_tls}\n")).expect("pg_hba.conf");
            tls_args = vec![
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", d.join("server.pem").display()),
                "-c".into(),
                format!("ssl_key_file={}", d.join("server.key").display()),
            ];
            ca = Some(d.join("ca.pem"));
        }
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        if is_root() {
            let _ = Command::new("chown").args(["postgres:postgres"]).arg(dir.path().join("postgres.log")).status();
        }
        let child = as_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=50"])
            .arg("-c")
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(&tls_args)
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut pg = Self { child, _dir: dir, port, ca };
        pg.wait_ready(&bin);
        let out = Command::new(bin.join("psql"))
            .env("PGPASSWORD", "gpucost")
            .env("PGSSLMODE", if tls { "require" } else { "prefer" })
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "gpucost",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE DATABASE gpucost",
            ])
            .arg("-p")
            .arg(port.to_string())
            .output()
            .expect("psql");
        assert!(out.status.success(), "CREATE DATABASE: {}", String::from_utf8_lossy(&out.stderr));
        Some(pg)
    }

    fn wait_ready(&mut self, bin: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited ({status}); see its log in {}", self._dir.path().display());
            }
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not accept connections within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `postgres://gpucost:gpucost@127.0.0.1:<port>/gpucost`
    pub fn url(&self) -> String {
        format!("postgres://gpucost:gpucost@127.0.0.1:{}/gpucost", self.port)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM: a smart shutdown; then make sure.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
